"""The end-of-call record: turns in spoken order, cut at what the caller heard, usage summed. Pure."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass

from relay import call_record, stream_token
from relay import openai_protocol as oai
from relay import twilio_protocol as tw
from relay.assistant import Assistant, Tool
from relay.bridge import CallBridge
from relay.call_record import CallRecord
from relay.call_settings import BridgeSettings, persona
from relay.limits import Limits
from relay.log import CallLog
from relay.replay_guard import ReplayGuard
from tests.helpers import Clock

SECRET = "s" * 40
CALL = "CA" + "1" * 32
STREAM = "MZ" + "2" * 32
CALLER, CALLED = "+15550001111", "+15550002222"


def record() -> CallRecord:
    return CallRecord(CALL, STREAM, CALLER, CALLED, 1_800_000_000.0, "gpt-realtime", "marin", "gpt-4o-mini-transcribe")


def audio(rec: CallRecord, item_id: str, size: int, at_ms: float) -> None:
    """An assistant item's audio arriving, as the bridge records it (first delta, then every byte)."""
    if item_id not in rec.audio_bytes:
        rec.assistant_item(item_id, at_ms)
    rec.audio_bytes[item_id] = rec.audio_bytes.get(item_id, 0) + size


def test_turns_come_out_in_the_order_they_were_spoken_whenever_their_text_arrives() -> None:
    rec = record()
    audio(rec, "item_a1", 800, 10.0)
    rec.assistant_said("item_a1", "Hello, how can I help?", 200.0)
    rec.caller_started("item_c1", 1500.0)
    audio(rec, "item_a2", 1600, 2600.0)
    rec.assistant_said("item_a2", "It shipped yesterday.", 2700.0)
    rec.caller_said("item_c1", " Where is my order? ", 3100.0)  # transcribed after the answer began
    assert rec.transcript() == [
        {"role": "assistant", "text": "Hello, how can I help?", "at_ms": 10.0},
        {"role": "caller", "text": "Where is my order?", "at_ms": 1500.0},
        {"role": "assistant", "text": "It shipped yesterday.", "at_ms": 2600.0},
    ]


def test_an_interrupted_turn_keeps_the_words_the_caller_heard() -> None:
    rec = record()
    text = "Your order number four two shipped yesterday and should arrive on Friday afternoon."
    audio(rec, "item_a", 8000 * 4, 0.0)  # 4 s generated
    rec.assistant_said("item_a", text, 500.0)  # words known before the caller interrupts
    rec.assistant_cut("item_a", 1000)  # 1 s heard
    (turn,) = rec.transcript()
    assert turn["interrupted"] is True and turn["heard_ms"] == 1000
    # A quarter of the audio heard: about a quarter of the words, ended at a word boundary.
    assert turn["text"] == "Your order number" and text[len(turn["text"])] == " "


def test_a_turn_cut_before_its_words_arrive_is_cut_when_they_do() -> None:
    rec = record()
    audio(rec, "item_a", 8000, 0.0)
    rec.assistant_cut("item_a", 500)
    rec.assistant_said("item_a", "one two three four", 900.0)
    assert rec.transcript()[0]["text"] == "one two"


def test_nothing_heard_is_an_empty_interrupted_turn() -> None:
    rec = record()
    audio(rec, "item_a", 8000, 0.0)
    rec.assistant_said("item_a", "one two three four", 10.0)
    rec.assistant_cut("item_a", 0)
    assert rec.transcript() == [{"role": "assistant", "text": "", "at_ms": 0.0, "interrupted": True,
                                 "heard_ms": 0}]


def test_usage_is_summed_with_its_details() -> None:
    rec = record()
    rec.responded({"total_tokens": 10, "input_tokens": 4, "output_tokens": 6,
                   "input_token_details": {"audio_tokens": 3, "cached_tokens_details": {"audio_tokens": 1}}})
    rec.responded({"total_tokens": 5, "input_tokens": 2, "output_tokens": 3,
                   "input_token_details": {"audio_tokens": 2, "cached_tokens_details": {"audio_tokens": 2}},
                   "output_token_details": {"audio_tokens": 3}})
    assert rec.usage == {"total_tokens": 15, "input_tokens": 6, "output_tokens": 9,
                         "input_token_details": {"audio_tokens": 5, "cached_tokens_details": {"audio_tokens": 3}},
                         "output_token_details": {"audio_tokens": 3}}


def test_a_record_is_bounded_however_long_the_call() -> None:
    rec = record()
    for n in range(call_record.MAX_TURNS + 50):
        rec.caller_said(f"item_{n}", "x" * (call_record.MAX_TEXT + 100), float(n))
    transcript = rec.transcript()
    assert len(transcript) == call_record.MAX_TURNS and rec.dropped_turns == 50
    assert all(len(turn["text"]) == call_record.MAX_TEXT for turn in transcript)


def test_the_report_has_every_field_the_receiver_expects() -> None:
    rec = record()
    report = rec.report(ended_wall=1_800_000_042.5, end_reason="caller_hangup", first_audio_ms=312.0, barge_ins=1,
                        tool_calls=[{"name": "lookup_order", "ok": True, "ms": 80, "outcome": "ok", "at_ms": 950.0}],
                        transfer=None)
    assert report == {
        "call_sid": CALL, "stream_sid": STREAM, "from": CALLER, "to": CALLED,
        "started_at": "2027-01-15T08:00:00.000Z", "ended_at": "2027-01-15T08:00:42.500Z", "duration_s": 42.5,
        "end_reason": "caller_hangup", "first_audio_ms": 312.0, "barge_ins": 1, "transcript": [],
        "tool_calls": [{"name": "lookup_order", "ok": True, "ms": 80, "at_ms": 950.0}], "transfer": None,
        "usage": {"input_tokens": 0, "output_tokens": 0}, "model": "gpt-realtime", "voice": "marin",
    }
    json.dumps(report)  # it must be JSON as it is


# -- fed by the bridge ------------------------------------------------------------------------


@dataclass
class Result:
    ok: bool
    output: str
    outcome: str = "ok"
    duration_ms: float = 80.0


def test_a_call_through_the_bridge_leaves_its_record() -> None:
    clock = Clock()
    tool = Tool("lookup_order", "Look up an order.", "https://tools.example.com/orders")
    assistant = Assistant(instructions="Help.", greeting="Hi.", voice="cedar", tools=(tool,),
                          transfer_destinations=(("sales", "+15550100001"),))
    settings = BridgeSettings(stream_token_secret=SECRET, personas={"": persona(assistant)}, start_timeout_s=5,
                              session_timeout_s=8, max_call_s=600, model="gpt-realtime",
                              transcription_model="gpt-4o-mini-transcribe")
    bridge = CallBridge(settings, Limits(), monotonic=clock.monotonic, wall=clock.wall, replay_guard=ReplayGuard(),
                        log=CallLog(logging.getLogger("test"), "t"))
    assert bridge.report() is None  # nothing verified yet: no record
    params = stream_token.mint_parameters(SECRET, CALL, clock.wall(), 30, caller_number=CALLER, called_number=CALLED)
    params.update({stream_token.CALLER_PARAMETER: CALLER, stream_token.CALLED_PARAMETER: CALLED})
    bridge.on_twilio(tw.Start.of(STREAM, CALL, params, "AC" + "3" * 32))
    bridge.upstream_open()
    bridge.on_openai(oai.SessionUpdated.of("audio/pcmu", "audio/pcmu"))

    def delta(item: str, n: int) -> None:
        bridge.on_openai(oai.AudioDelta(item_id=item, delta=base64.b64encode(bytes(n)).decode(), response_id="r"))

    def event(document: dict[str, object]) -> None:
        bridge.on_openai(oai.parse(json.dumps(document)))

    clock.now += 0.3
    delta("item_g", 16000)  # a 2 s greeting
    event({"type": "response.output_audio_transcript.done", "item_id": "item_g",
           "transcript": "Hi there, this is Acme."})
    clock.now += 0.5
    bridge.on_openai(oai.SpeechStarted("item_c", 0))  # the caller talks over it after 0 ms heard
    event({"type": "response.done", "response": {"id": "r", "status": "cancelled",
                                                 "usage": {"input_tokens": 10, "output_tokens": 20}}})
    event({"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_c",
           "transcript": "Order forty two please", "usage": {"type": "tokens", "input_tokens": 7}})
    bridge.on_openai(oai.FunctionCallDone(call_id="call_1", name="lookup_order", arguments="{}"))
    bridge.tool_done("call_1", Result(True, "{}"))
    for digit in "42#":
        bridge.on_twilio(tw.parse(json.dumps({"event": "dtmf", "streamSid": STREAM, "dtmf": {"digit": digit}})))
    clock.now += 1.0
    bridge.on_twilio(tw.Stop.of(STREAM, CALL))

    report = bridge.report()
    assert report is not None
    assert (report["from"], report["to"], report["end_reason"], report["voice"]) == (CALLER, CALLED, "caller_hangup",
                                                                                     "cedar")
    assert report["duration_s"] == 1.8 and report["barge_ins"] == 1 and report["first_audio_ms"] == 300.0
    assert report["transcript"] == [
        {"role": "assistant", "text": "", "at_ms": 300.0, "interrupted": True, "heard_ms": 0},
        {"role": "caller", "text": "Order forty two please", "at_ms": 800.0},
        {"role": "caller", "text": "4 2 #", "at_ms": 800.0, "keypad": True},
    ]
    # Placed among the turns: asked for 800 ms after the stream's start.
    assert report["tool_calls"] == [{"name": "lookup_order", "ok": True, "ms": 80, "at_ms": 800.0}]
    assert report["usage"] == {"input_tokens": 10, "output_tokens": 20, "transcription": {"input_tokens": 7}}
