"""The stand-in model's scenarios, driven by hand over a real WebSocket (the relay's part played
by websocket-client): a tool call after the caller's first words, its answer, end_call or
transfer_call, the caller's words transcribed when asked, the assistant's words with its audio,
and every event it sends a GA server event of the openai SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import gevent
import pytest
import websocket

from scripts import audio
from scripts.fakes.openai import SCENARIOS, Lines, Script, Speech, StandinModel, named
from tests.conftest import API_KEY, ROOT, free_port, stop_process, wait_http
from tests.helpers import assert_ga_server_event, get, wait_until

TRANSCRIBE = {"model": "gpt-4o-mini-transcribe"}
SHORT = Lines(Speech(b"\x10" * 800, "One moment."), Speech(b"\x11" * 800, "Found it."),
              Speech(b"\x12" * 800, "Sorry."), Speech(b"\x13" * 800, "Goodbye."),
              Speech(b"\x14" * 800, "Putting you through."), Speech(b"\x15" * 800, "Could not transfer."))
SILENCE = audio.frames(audio.silence(700))  # ends a turn (the VAD waits for 500 ms)


class Relayish:
    """The relay's side of one Realtime socket, written by hand."""

    def __init__(self, standin: StandinModel) -> None:
        self.ws = websocket.create_connection(standin.url + "?model=gpt-realtime", timeout=5,
                                              header=[f"Authorization: Bearer {API_KEY}"])
        self.events: list[dict[str, Any]] = []
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        while True:
            try:
                text = self.ws.recv()
            except (OSError, websocket.WebSocketException):
                return
            if not text:
                return
            self.events.append(json.loads(text))

    def send(self, **event: Any) -> None:
        self.ws.send(json.dumps(event))

    def configure(self, transcription: dict[str, str] | None = TRANSCRIBE) -> None:
        audio_input: dict[str, Any] = {"format": {"type": "audio/pcmu"},
                                       "turn_detection": {"type": "server_vad", "interrupt_response": True}}
        if transcription is not None:
            audio_input["transcription"] = transcription
        self.send(type="session.update", session={"type": "realtime", "audio": {
            "input": audio_input, "output": {"format": {"type": "audio/pcmu"}}}})
        self.wait_for("session.updated")

    def say(self, clip: bytes) -> None:
        """The caller speaks ``clip`` then falls silent (frames sent at once)."""
        for frame in [*audio.frames(clip), *SILENCE]:
            self.send(type="input_audio_buffer.append", audio=audio.b64(frame))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    def wait_for(self, kind: str, count: int = 1, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        assert wait_until(lambda: len(self.of(kind)) >= count, timeout_s), \
            f"{count} {kind} expected; got {[e.get('type') for e in self.events]}"
        return self.of(kind)

    def words(self) -> list[str]:
        """The assistant's words, item by item."""
        return [e["transcript"] for e in self.of("response.output_audio_transcript.done")]

    def close(self) -> None:
        self.ws.close()
        self._reader.join(2)


@pytest.fixture
def relayish(standin: StandinModel) -> Iterator[Callable[[], Relayish]]:
    opened: list[Relayish] = []

    def open_one() -> Relayish:
        opened.append(Relayish(standin))
        return opened[-1]

    yield open_one
    for one in opened:
        one.close()


def caller_clip() -> bytes:
    return audio.read_wav_ulaw(audio.CALLER_WAV)


def test_a_tool_call_after_the_first_words_then_its_answer_and_a_goodbye_with_end_call(
        standin: StandinModel, relayish: Callable[[], Relayish]) -> None:
    standin.scenario = Script(tool="lookup_order", arguments='{"order_id": "1002"}', lines=SHORT)
    model = relayish()
    model.configure()
    model.send(type="response.create")
    model.wait_for("response.done")
    assert model.words() == [audio.words_of(audio.GREETING_WAV)]
    model.say(caller_clip())
    [call] = model.wait_for("response.function_call_arguments.done")
    assert (call["name"], call["arguments"]) == ("lookup_order", '{"order_id": "1002"}')
    model.wait_for("response.done", 2)
    assert model.words()[1:] == ["One moment."]
    # The caller's turn: one item from speech_started to its transcription, with the clip's real words.
    [started], [stopped], [committed] = (model.of(k) for k in (
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed"))
    [heard] = model.of("conversation.item.input_audio_transcription.completed")
    assert started["item_id"] == stopped["item_id"] == committed["item_id"] == heard["item_id"]
    assert heard["transcript"] == "Hi, I'd like to check the status of my order, please."
    assert heard["usage"]["type"] == "tokens" and heard["usage"]["total_tokens"] > 0
    gevent.sleep(0.3)
    assert len(model.of("response.created")) == 2, "nothing more is said until the tool answers"
    model.send(type="conversation.item.create", item={"type": "function_call_output", "call_id": call["call_id"],
                                                      "output": '{"status": "processing"}'})
    model.send(type="response.create")
    [_, ending] = model.wait_for("response.function_call_arguments.done", 2)
    assert ending["name"] == "end_call"
    assert json.loads(ending["arguments"]) == {"reason": "the caller has what they needed"}
    done = model.wait_for("response.done", 3)[-1]["response"]
    assert [item["type"] for item in done["output"]] == ["message", "message", "function_call"]
    assert model.words()[2:] == ["Found it.", "Goodbye."]
    for event in model.events:
        if not event["type"].startswith("session."):  # the session objects are abbreviated, as before
            assert_ga_server_event(event)


def test_an_error_output_is_apologised_for_and_a_transfer_names_its_destination(
        standin: StandinModel, relayish: Callable[[], Relayish]) -> None:
    standin.scenario = Script(then="transfer_call", destination="desk", lines=SHORT)
    model = relayish()
    model.configure()
    model.say(caller_clip())  # no greeting asked for: the caller speaks first
    [call] = model.wait_for("response.function_call_arguments.done")
    model.send(type="conversation.item.create", item={"type": "function_call_output", "call_id": call["call_id"],
                                                      "output": '{"error": "lookup_order did not answer"}'})
    model.send(type="response.create")
    [_, transfer] = model.wait_for("response.function_call_arguments.done", 2)
    assert (transfer["name"], json.loads(transfer["arguments"])) == ("transfer_call", {"destination": "desk"})
    model.wait_for("response.done", 2)
    assert model.words() == ["One moment.", "Sorry.", "Putting you through."]
    # The relay could not place the transfer: it tells the model, which apologises.
    model.send(type="conversation.item.create", item={"type": "function_call_output",
                                                      "call_id": transfer["call_id"], "output": '{"error": "no"}'})
    model.send(type="response.create")
    model.wait_for("response.done", 3)
    assert model.words()[-1] == "Could not transfer."


def test_without_a_tool_the_ending_follows_the_first_words(standin: StandinModel,
                                                           relayish: Callable[[], Relayish]) -> None:
    standin.scenario = Script(tool=None, lines=SHORT)
    model = relayish()
    model.configure(transcription=None)
    model.say(caller_clip())
    [call] = model.wait_for("response.function_call_arguments.done")
    assert call["name"] == "end_call"
    model.wait_for("response.done")
    assert model.words() == ["Goodbye."]
    assert not model.of("conversation.item.input_audio_transcription.completed"), "transcription was not asked for"


def test_speech_it_cannot_know_is_described_not_guessed(standin: StandinModel,
                                                        relayish: Callable[[], Relayish]) -> None:
    model = relayish()  # the default scenario: greet, then play the caller's words back
    model.configure()
    spoken = bytes((i * 37) % 0x7F for i in range(8000))  # a second of loud noise no clip holds
    model.say(spoken)
    [heard] = model.wait_for("conversation.item.input_audio_transcription.completed")
    assert heard["transcript"] == "(caller speech, 1.0 s)"
    model.wait_for("response.done")
    assert model.words() == ["(the caller's words played back, 1.0 s)"]


def test_a_cancelled_response_makes_no_call_queued_behind_its_words(standin: StandinModel,
                                                                    relayish: Callable[[], Relayish]) -> None:
    standin.scenario = Script(lines=replace(SHORT, preamble=Speech(b"\x10" * 80_000, "One moment.")))
    model = relayish()
    model.configure()
    model.say(caller_clip())
    model.wait_for("response.output_audio.delta")
    model.send(type="response.cancel")
    done = model.wait_for("response.done")[-1]["response"]
    assert done["status"] == "cancelled"
    assert not model.of("response.function_call_arguments.done")
    assert model.words() == ["One moment."], "the words of what was generated still come"


def test_the_spoken_lines_are_real_clips_with_their_words() -> None:
    lines = Lines.spoken()
    for speech in (lines.preamble, lines.answer, lines.sorry, lines.goodbye, lines.handover, lines.transfer_failed):
        assert speech is not None
        assert len(speech.audio) > 8000 and speech.text and speech.text[-1] in ".!?"


def test_scenarios_by_name() -> None:
    assert set(SCENARIOS) >= {"echo", "order-hangup", "order-transfer", "hangup", "transfer"}
    changed = named("order-hangup", tool="find_invoice", arguments='{"n": 1}', then=None)
    assert isinstance(changed, Script) and (changed.tool, changed.arguments, changed.then) == (
        "find_invoice", '{"n": 1}', None)
    with pytest.raises(ValueError, match="no scenario called 'nope'"):
        named("nope")


def test_run_alone_with_a_scenario_and_switch_it(tmp_path: Any) -> None:
    port = free_port()
    log = tmp_path / "standin.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "scripts.fakes.openai", "--port", str(port),
                                    "--scenario", "order-transfer", "--destination", "desk"],
                                   cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/", process=process)
        assert json.loads(get(base + "/")[2])["scenario"] == "order-transfer"
        assert get(base + "/scenario?name=hangup", method="POST")[0] == 200
        assert json.loads(get(base + "/")[2])["scenario"] == "hangup"
        status, _, body = get(base + "/scenario?name=nope", method="POST")
        assert status == 400 and b"no scenario called 'nope'" in body
    finally:
        stop_process(process)
    assert "(scenario order-transfer)" in log.read_text()
    refused = subprocess.run([sys.executable, "-m", "scripts.fakes.openai", "--scenario", "echo", "--tool", "x"],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "calls no tool" in refused.stderr and "Traceback" not in refused.stderr


def test_part_of_a_known_clip_is_only_described(standin: StandinModel, relayish: Callable[[], Relayish]) -> None:
    model = relayish()
    model.configure()
    model.say(caller_clip()[:12_000])  # the first second and a half of the sentence
    [heard] = model.wait_for("conversation.item.input_audio_transcription.completed")
    assert heard["transcript"].startswith("(caller speech, ")
