"""What the stand-in says in one response, and how it streams it: audio with its words, function calls.

A response is a list of parts, each one output item, streamed in order by one greenlet:

- ``Speech(audio, text)``: an assistant message. ``response.output_item.added``, the audio as
  ``response.output_audio.delta`` chunks faster than real time (like the real model),
  ``response.output_audio.done``, ``response.output_audio_transcript.done`` with ``text``
  (the model writes the words of everything it generated, heard or not: the relay cuts
  them to what the caller heard), ``response.output_item.done``;
- ``FunctionCall(name, arguments)``: a ``function_call`` item. ``response.output_item.added``,
  ``response.function_call_arguments.delta``, ``response.function_call_arguments.done``
  (with ``call_id``, ``name`` and the arguments' JSON text), ``response.output_item.done``.

Then ``response.done`` with every item sent and the usage. A response the caller talks over
(server VAD) or the relay cancels ends ``cancelled`` at once: no later part is sent, so a
function call queued behind cancelled words is never made, as with the real model. Faults
(faults.py) strike at the ``FAULT_AT_DELTA``-th audio delta of a response.

The shapes follow the GA server events in the openai SDK (``openai.types.realtime``);
tests/scripts/test_standin_scenarios.py validates what the stand-in sends against them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent

from scripts import audio
from scripts.fakes.openai.faults import FAULT_AT_DELTA, Behaviour

if TYPE_CHECKING:
    from scripts.fakes.openai.session import Session

# The usage each response reports (made-up, plausible numbers: the stand-in bills nothing).
USAGE = {"total_tokens": 120, "input_tokens": 40, "output_tokens": 80,
         "input_token_details": {"text_tokens": 30, "audio_tokens": 10, "cached_tokens": 0},
         "output_token_details": {"text_tokens": 20, "audio_tokens": 60}}


@dataclass(frozen=True)
class Speech:
    """Audio the model says (mu-law) and its words, as its audio transcript gives them."""

    audio: bytes
    text: str


@dataclass(frozen=True)
class FunctionCall:
    """A function the model calls: its name, its arguments as JSON text, its ``call_id`` ("": a new one)."""

    name: str
    arguments: str
    call_id: str = ""


Part = Speech | FunctionCall


@dataclass
class Sent:
    """What a response sent so far, for ``response.done`` and for the scenario."""

    response_id: str
    items: list[dict[str, Any]]
    calls: list[tuple[str, FunctionCall]]  # (call_id, call) of each function call made
    deltas: int = 0  # audio deltas sent (faults strike at FAULT_AT_DELTA)
    status: str = "completed"
    details: dict[str, Any] | None = None


def respond(session: Session, parts: Sequence[Part]) -> Sent:
    """Stream one response of ``parts`` (in the session's speaker greenlet); what was sent."""
    sent = Sent(session.new_id("resp"), [], [])
    session.send({"type": "response.created", "response": {
        "id": sent.response_id, "object": "realtime.response", "status": "in_progress", "output": []}})
    stream = _AudioClock(session.model.speed)
    try:
        for index, part in enumerate(parts):
            if isinstance(part, Speech):
                if not _speak(session, sent, index, part, stream):
                    return sent  # a fault closed the socket or ended the session: no response.done
            else:
                _call(session, sent, index, part)
            if sent.status != "completed":
                break
    except gevent.GreenletExit:
        sent.status, sent.details = "cancelled", {"type": "cancelled", "reason": "turn_detected"}
    session.speaking_item = None
    session.send({"type": "response.done", "response": {
        "id": sent.response_id, "object": "realtime.response", "status": sent.status,
        "status_details": sent.details, "output": sent.items, "usage": USAGE}})
    return sent


class _AudioClock:
    """Paces a response's audio at ``speed`` times real time, across all its parts."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.started = time.monotonic()
        self.sent_ms = 0.0

    def wait(self, ms: float) -> None:
        self.sent_ms += ms
        due = self.started + self.sent_ms / 1000 / self.speed
        gevent.sleep(max(due - time.monotonic(), 0))


def _speak(session: Session, sent: Sent, index: int, speech: Speech, clock: _AudioClock) -> bool:
    """One audio item; False if a fault ended the response without a ``response.done``."""
    item_id = session.new_id("item")
    session.speaking_item = item_id
    session.item_audio_ms[item_id] = 0
    item: dict[str, Any] = {"id": item_id, "type": "message", "object": "realtime.item", "role": "assistant",
                            "status": "in_progress", "content": []}
    session.send({"type": "response.output_item.added", "response_id": sent.response_id, "output_index": index,
                  "item": item})
    chunk = session.model.delta_ms * audio.BYTES_PER_MS
    where = {"response_id": sent.response_id, "item_id": item_id, "output_index": index, "content_index": 0}
    try:
        for offset in range(0, len(speech.audio), chunk):
            at = sent.deltas
            sent.deltas += 1
            if at == FAULT_AT_DELTA and session.strike_mid_response():
                return False
            if session.behaviour is Behaviour.QUOTA_MIDCALL and (at == FAULT_AT_DELTA or session.out_of_quota):
                if not session.out_of_quota:
                    session.record.fault_at = time.monotonic()
                session.out_of_quota = True  # every later response fails at once
                sent.status = "failed"
                sent.details = {"type": "failed", "error": {"type": "insufficient_quota", "code": "insufficient_quota"}}
                break
            piece = speech.audio[offset : offset + chunk]
            session.send_delta(where, audio.b64(piece))
            session.item_audio_ms[item_id] += len(piece) // audio.BYTES_PER_MS
            clock.wait(len(piece) / audio.BYTES_PER_MS)
    except gevent.GreenletExit:
        _item_done(session, sent, where, item, speech.text, "incomplete")
        raise
    _item_done(session, sent, where, item, speech.text, "completed" if sent.status == "completed" else "incomplete")
    return True


def _item_done(session: Session, sent: Sent, where: dict[str, Any], item: dict[str, Any], text: str,
               status: str) -> None:
    session.send({"type": "response.output_audio.done", **where})
    session.send({"type": "response.output_audio_transcript.done", **where, "transcript": text})
    done = {**item, "status": status, "content": [{"type": "output_audio", "transcript": text}]}
    session.send({"type": "response.output_item.done", "response_id": sent.response_id,
                  "output_index": where["output_index"], "item": done})
    sent.items.append(done)


def _call(session: Session, sent: Sent, index: int, call: FunctionCall) -> None:
    item_id, call_id = session.new_id("item"), call.call_id or session.new_id("call")
    item = {"id": item_id, "type": "function_call", "object": "realtime.item", "status": "in_progress",
            "call_id": call_id, "name": call.name, "arguments": ""}
    session.send({"type": "response.output_item.added", "response_id": sent.response_id, "output_index": index,
                  "item": item})
    where = {"response_id": sent.response_id, "item_id": item_id, "output_index": index, "call_id": call_id}
    session.send({"type": "response.function_call_arguments.delta", **where, "delta": call.arguments})
    session.send({"type": "response.function_call_arguments.done", **where, "name": call.name,
                  "arguments": call.arguments})
    done = {**item, "status": "completed", "arguments": call.arguments}
    session.send({"type": "response.output_item.done", "response_id": sent.response_id, "output_index": index,
                  "item": done})
    sent.items.append(done)
    sent.calls.append((call_id, call))
