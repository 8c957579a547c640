"""OpenAI Realtime (GA) events: parse vectors, and every builder checked against the
openai SDK's GA models with no unknown fields (the SDK tolerates extras, so a beta-shaped
field would otherwise slip through)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from relay import openai_protocol as oai
from relay.assistant import Assistant, Tool
from relay.config import VOICES
from relay.errors import OpenAIProtocolError
from tests.helpers import assert_ga_client_event

VECTORS = sorted((Path(__file__).parent.parent / "fixtures" / "openai").glob("*.json"))


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_wire_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    raw = vector["raw"] if "raw" in vector else json.dumps(vector["message"])
    if "error" in vector:
        with pytest.raises(OpenAIProtocolError, match=vector["error"]):
            oai.parse(raw)
        return
    event = oai.parse(raw)
    expect = dict(vector["expect"])
    assert type(event).__name__ == expect.pop("kind")
    fatal = expect.pop("fatal", None)
    assert {name: getattr(event, name) for name in expect} == expect
    if fatal is not None:
        assert event.fatal is fatal  # type: ignore[union-attr]


def test_valid_vectors_are_real_ga_server_events() -> None:
    from openai.types.realtime import RealtimeServerEvent

    adapter = TypeAdapter(RealtimeServerEvent)
    for path in VECTORS:
        vector = json.loads(path.read_text())
        if "message" in vector and "error" not in vector and "event_id" in vector["message"]:
            if vector["message"]["type"] in ("session.created", "session.updated", "response.created",
                                             "response.done"):
                continue  # abbreviated session/response objects in these vectors
            adapter.validate_python(vector["message"])


@pytest.mark.parametrize("voice", [*VOICES, "voice_custom123"])
def test_session_update_is_ga_and_pcmu_both_ways(voice: str) -> None:
    event = json.loads(oai.session_update(voice=voice, instructions="Be brief."))
    assert_ga_client_event(event)
    session = event["session"]
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["audio"]["input"]["turn_detection"]["interrupt_response"] is True


def test_session_update_has_no_beta_field() -> None:
    session = json.loads(oai.session_update(voice="marin", instructions="x"))["session"]
    for beta in ("input_audio_format", "output_audio_format", "modalities", "voice", "turn_detection",
                 "temperature", "max_response_output_tokens"):
        assert beta not in session


@pytest.mark.parametrize(
    "text",
    [
        oai.append_audio("/////w=="),
        oai.response_create(),
        oai.response_create("Say hi."),
        oai.greeting("Hello, you've reached Liveline."),
        oai.truncate("item_abc", 1480),
        oai.function_call_output("call_abc", '{"status": "shipped"}'),
        oai.function_call_output("call_abc", '{"error": "lookup_order timed out"}'),
        oai.user_text("The caller pressed 4 2 #"),
    ],
)
def test_every_builder_is_a_valid_ga_client_event(text: str) -> None:
    assert_ga_client_event(json.loads(text))


def test_append_carries_the_payload_untouched() -> None:
    payload = "no+JhoaJjpzS" * 18
    assert json.loads(oai.append_audio(payload)) == {"type": "input_audio_buffer.append", "audio": payload}


def test_truncate_fields() -> None:
    assert json.loads(oai.truncate("item_1", 250)) == {
        "type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0, "audio_end_ms": 250}


def test_greeting_carries_the_configured_text() -> None:
    event = json.loads(oai.greeting("Welcome to Acme."))
    assert "Welcome to Acme." in event["response"]["instructions"]


def test_session_updated_with_other_formats_is_reported() -> None:
    event = oai.parse(json.dumps({"type": "session.updated", "session": {
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}}}))
    assert event == oai.SessionUpdated.of("audio/pcm", "")


# -- tools, transcription and the items the relay adds (issues 16 and 17) ------------------------

ACTING = Assistant(
    instructions="Be Acme.", greeting="Hi.", voice="marin",
    tools=(Tool("lookup_order", "Look up an order.", "https://tools.example.com",
                '{"type":"object","required":["order_id"],"properties":{"order_id":{"type":"string"}}}'),),
    transfer_destinations=(("sales", "+15550100001"), ("front desk", "sip:desk@pbx.example.com")),
)


def test_session_update_with_tools_and_transcription_is_ga() -> None:
    event = json.loads(oai.session_update(voice="marin", instructions="x", tools=ACTING.session_tools(),
                                          transcription_model="gpt-4o-mini-transcribe"))
    assert_ga_client_event(event)
    session = event["session"]
    assert [tool["name"] for tool in session["tools"]] == ["lookup_order", "end_call", "transfer_call"]
    assert all(tool["type"] == "function" for tool in session["tools"])
    assert session["tool_choice"] == "auto"
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}


def test_session_update_without_tools_or_transcription_sends_neither() -> None:
    session = json.loads(oai.session_update(voice="marin", instructions="x"))["session"]
    assert "tools" not in session and "tool_choice" not in session
    assert "transcription" not in session["audio"]["input"]
    assert "transcription" not in json.loads(oai.session_update(voice="marin", instructions="x",
                                                                transcription_model=""))["session"]["audio"]["input"]


def test_function_call_output_fields() -> None:
    assert json.loads(oai.function_call_output("call_1", '{"ok":true}')) == {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"ok":true}'}}


def test_user_text_fields() -> None:
    assert json.loads(oai.user_text('Pressed "4"')) == {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": 'Pressed "4"'}]}}
