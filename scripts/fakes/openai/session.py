"""One stand-in Realtime session: the GA protocol as the model speaks it, over one socket.

- ``session.created`` on connect; ``session.update`` is checked for the GA shape
  (``session.type``, audio formats as objects, no beta fields) and answered with
  ``session.updated`` or an ``error``;
- ``input_audio_buffer.append`` feeds an energy VAD: ``speech_started`` /
  ``speech_stopped`` / ``committed``; with ``interrupt_response``, a speaking response is
  cancelled when the caller talks over it;
- ``response.create`` and each finished caller turn are handed to the session's
  ``Scenario``, which decides what to say; a reply is streamed as
  ``response.output_audio.delta`` chunks faster than real time, like the real model;
- ``conversation.item.truncate`` is checked against the item's audio and acknowledged.

A ``Scenario`` is the conversation: the default greets when asked and then plays back what
the caller said. Subclass it to script another one (a tool called after the caller's first
words, transcription events...): its hooks get the session, whose ``speak``, ``send`` and
``error`` are the building blocks. Faults (faults.py) strike at fixed points whatever the
scenario. ``Wire`` changes how messages travel (fragmented, preceded by pings), for the
wire-level interop tests.

Everything received is recorded in a ``SessionRecord`` for tests to assert on. The wire
facts are in docs/openai-realtime.md.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent

from scripts import audio
from scripts.fakes.openai.faults import FAULT_AT_DELTA, PAUSE_READING_S, Behaviour
from scripts.fakes.websocket_server import Connection, ConnectionClosed

if TYPE_CHECKING:
    from scripts.fakes.openai.server import StandinModel

VAD_LEVEL = 4.0  # mean |sample|/256 above which a 20 ms frame counts as voice
VAD_START_FRAMES = 2  # 40 ms of voice starts a turn
VAD_STOP_FRAMES = 25  # 500 ms of silence ends it (server_vad's silence_duration_ms)
_BETA_FIELDS = ("input_audio_format", "output_audio_format", "modalities", "voice", "turn_detection",
                "input_audio_transcription", "temperature", "max_response_output_tokens")


@dataclass
class SessionRecord:
    """What one Realtime socket saw: for tests to assert on."""

    number: int
    model: str
    headers: dict[str, str]
    behaviour: Behaviour = Behaviour.NORMAL
    events: list[dict[str, Any]] = field(default_factory=list)
    appended: list[str] = field(default_factory=list)  # base64 exactly as received
    deltas_sent: list[str] = field(default_factory=list)
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    fault_at: float | None = None  # when a fault was injected (time.monotonic)
    close_code: int | None = None  # what the relay closed the socket with (None: no close frame)
    close_reason: str = ""
    pongs: int = 0  # answers to the stand-in's pings

    def types(self) -> list[str]:
        """The ``type`` of every event received, in order."""
        return [str(e.get("type")) for e in self.events]


@dataclass(frozen=True)
class Wire:
    """How the stand-in's messages travel (the default: one frame each, no pings)."""

    fragments: int = 1  # send each audio delta as this many frames (text + continuations)
    ping_before_delta: bool = False  # a ping before every audio delta


class Scenario:
    """The conversation: greet when asked, then answer each caller turn with their own words.

    ``echo=False`` answers every turn with the greeting clip instead. Another conversation is
    a subclass overriding the hooks, for instance one that calls a tool once the caller has
    spoken: ``on_caller_turn`` sends the ``response.output_item.added`` (a ``function_call``
    item), ``response.function_call_arguments.done`` and ``response.done`` events with
    ``session.send``, and ``on_item_created`` answers the relay's ``function_call_output``
    with ``session.speak``. Hooks run in the session's reading greenlet: they must not block.
    """

    def __init__(self, *, echo: bool = True) -> None:
        self.echo = echo

    def on_response_create(self, session: Session, event: dict[str, Any]) -> None:
        """The relay asked for a response (the greeting): speak the greeting clip."""
        session.speak(session.model.greeting_audio)

    def on_caller_turn(self, session: Session, heard: bytes) -> None:
        """The VAD heard the caller stop talking (``heard``: their audio): answer."""
        session.speak(heard if self.echo and heard else session.model.greeting_audio)

    def on_item_created(self, session: Session, item: dict[str, Any]) -> None:
        """The relay added a conversation item (a tool's output, a text message): nothing by default."""


class Session:
    """Protocol state of one stand-in socket."""

    def __init__(self, model: StandinModel, conn: Connection, record: SessionRecord) -> None:
        self.model = model
        self.conn = conn
        self.record = record
        self.behaviour = record.behaviour
        self.scenario = model.scenario
        self.ids = itertools.count(1)
        self.interrupt = True
        self.speaker: gevent.Greenlet | None = None
        self.speaking_item: str | None = None
        self.item_audio_ms: dict[str, int] = {}
        self.voiced = 0
        self.unvoiced = 0
        self.in_speech = False
        self.turn_audio = bytearray()
        self.appended_ms = 0
        self.out_of_quota = False
        self.configured = False

    def new_id(self, prefix: str) -> str:
        """An id of the shape the API uses (``item_…``, ``resp_…``), unique in this stand-in."""
        return f"{prefix}_standin_{self.record.number}_{next(self.ids)}"

    def send(self, event: dict[str, Any]) -> None:
        """Send one server event (an ``event_id`` is added); nothing if the relay has hung up."""
        event.setdefault("event_id", self.new_id("event"))
        try:
            self.conn.send_text(json.dumps(event))
        except ConnectionClosed:
            return  # the relay hung up (a caller left mid-greeting): nothing more to say

    def error(self, code: str, message: str, param: str | None = None, event_id: str | None = None) -> None:
        """An ``error`` event, as the API reports a client event it could not apply."""
        self.send({"type": "error", "error": {"type": "invalid_request_error", "code": code,
                                              "message": message, "param": param, "event_id": event_id}})

    # -- reading ---------------------------------------------------------------------------

    def run(self) -> None:
        """Greet with ``session.created``, then answer every client event until the socket ends."""
        self.send({"type": "session.created", "session": self.session_body({})})
        for message in self.conn.messages():
            if isinstance(message, bytes):
                self.error("invalid_value", "Binary messages are not supported.")
                continue
            try:
                event = json.loads(message)
            except ValueError:
                self.error("invalid_json", "The server could not parse the message as JSON.")
                continue
            if not isinstance(event, dict):
                self.error("invalid_json", "Expected an object.")
                continue
            self.record.events.append(event)
            handler = getattr(self, "on_" + str(event.get("type", "")).replace(".", "_"), None)
            if handler is None:
                self.error("invalid_value", f"Invalid value: '{event.get('type')}'.", "type", event.get("event_id"))
                continue
            handler(event)
            if event.get("type") == "input_audio_buffer.append" and not self._keep_reading():
                return

    def _keep_reading(self) -> bool:
        """STOP_READING / PAUSE_READING, from the first appended audio on; False: stop for good."""
        if self.behaviour is Behaviour.STOP_READING:
            self.record.fault_at = time.monotonic()
            self.conn.ended.wait()  # the socket stays open, unread, until the stand-in stops
            return False
        if self.behaviour is Behaviour.PAUSE_READING and self.record.fault_at is None:
            self.record.fault_at = time.monotonic()
            self.model.resume_reading.wait(PAUSE_READING_S)
        return True

    def session_body(self, requested: dict[str, Any]) -> dict[str, Any]:
        """The ``session`` object of ``session.created``/``session.updated``: what was asked for."""
        audio_cfg = requested.get("audio") or {}
        in_fmt = (audio_cfg.get("input") or {}).get("format") or {"type": "audio/pcm", "rate": 24000}
        out_fmt = (audio_cfg.get("output") or {}).get("format") or {"type": "audio/pcm", "rate": 24000}
        return {
            "type": "realtime", "object": "realtime.session", "id": f"sess_standin_{self.record.number}",
            "model": self.record.model, "output_modalities": requested.get("output_modalities", ["audio"]),
            "instructions": requested.get("instructions", ""),
            "audio": {"input": {"format": in_fmt}, "output": {"format": out_fmt}},
        }

    def on_session_update(self, event: dict[str, Any]) -> None:
        """Check the GA shape; ``session.updated`` or an ``error``."""
        session = event.get("session")
        if self.behaviour is Behaviour.NEVER_UPDATE:
            return
        if self.behaviour is Behaviour.REJECT_SESSION:
            self.error("invalid_value", "Invalid value: 'audio/pcmu'. Supported values are: 'audio/pcm'.",
                       "session.audio.input.format.type", event.get("event_id"))
            return
        if not isinstance(session, dict) or session.get("type") != "realtime":
            self.error("missing_required_parameter", "Missing required parameter: 'session.type'.",
                       "session.type", event.get("event_id"))
            return
        for name in _BETA_FIELDS:
            if name in session:
                self.error("unknown_parameter", f"Unknown parameter: 'session.{name}'.", f"session.{name}",
                           event.get("event_id"))
                return
        turn = ((session.get("audio") or {}).get("input") or {}).get("turn_detection") or {}
        self.interrupt = bool(turn.get("interrupt_response", True))
        self.configured = True
        self.send({"type": "session.updated", "session": self.session_body(session)})
        if self.behaviour is Behaviour.RECOVERABLE_ERROR:
            self.record.fault_at = time.monotonic()
            self.error("response_cancel_not_active", "Cancellation failed: no active response found.")

    def on_input_audio_buffer_append(self, event: dict[str, Any]) -> None:
        """Record the audio exactly as received; feed the VAD."""
        payload = event.get("audio")
        if not isinstance(payload, str):
            self.error("invalid_value", "Invalid 'audio'.", "audio", event.get("event_id"))
            return
        self.record.appended.append(payload)
        try:
            frame = base64.b64decode(payload, validate=True)
        except ValueError:
            self.error("invalid_value", "Invalid 'audio'. Expected base64.", "audio", event.get("event_id"))
            return
        self.appended_ms += len(frame) // audio.BYTES_PER_MS
        self._vad(frame)

    def _vad(self, frame: bytes) -> None:
        voiced = audio.level(frame) > VAD_LEVEL
        if self.in_speech:
            self.turn_audio += frame
            self.unvoiced = 0 if voiced else self.unvoiced + 1
            if self.unvoiced >= VAD_STOP_FRAMES:
                self.in_speech = False
                item = self.new_id("item")
                self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": self.appended_ms,
                           "item_id": item})
                self.send({"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": None})
                heard = bytes(self.turn_audio)
                self.turn_audio = bytearray()
                self.scenario.on_caller_turn(self, heard)
            return
        self.voiced = self.voiced + 1 if voiced else 0
        if self.voiced >= VAD_START_FRAMES:
            self.in_speech = True
            self.unvoiced = 0
            self.turn_audio = bytearray(frame)
            self.send({"type": "input_audio_buffer.speech_started",
                       "audio_start_ms": max(self.appended_ms - 40, 0), "item_id": self.new_id("item")})
            if self.speaking and self.interrupt:
                self.speaker.kill(block=False)  # type: ignore[union-attr]  # server VAD interrupts

    def on_input_audio_buffer_commit(self, event: dict[str, Any]) -> None:
        """Acknowledge a manual commit."""
        self.send({"type": "input_audio_buffer.committed", "item_id": self.new_id("item")})

    def on_input_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        """Acknowledge a clear."""
        self.send({"type": "input_audio_buffer.cleared"})

    def on_response_create(self, event: dict[str, Any]) -> None:
        """One response at a time, as the API allows; the scenario says what it is."""
        if self.speaking:
            self.error("conversation_already_has_active_response",
                       "Conversation already has an active response in progress.", None, event.get("event_id"))
            return
        self.scenario.on_response_create(self, event)

    def on_response_cancel(self, event: dict[str, Any]) -> None:
        """Cancel the response being spoken, if there is one."""
        if not self.speaking:
            self.error("response_cancel_not_active", "Cancellation failed: no active response found.")
            return
        self.speaker.kill(block=False)  # type: ignore[union-attr]

    def on_conversation_item_truncate(self, event: dict[str, Any]) -> None:
        """Checked against the item's audio, as the API does; acknowledged."""
        item_id = event.get("item_id")
        end = event.get("audio_end_ms")
        duration = self.item_audio_ms.get(str(item_id))
        if duration is None:
            self.error("invalid_value", f"Item with item_id '{item_id}' not found.", "item_id",
                       event.get("event_id"))
        elif not isinstance(end, int) or end < 0 or end > duration:
            self.error("invalid_value", f"audio_end_ms {end} is longer than the item's audio ({duration} ms).",
                       "audio_end_ms", event.get("event_id"))
        else:
            self.send({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0,
                       "audio_end_ms": end})

    def on_conversation_item_create(self, event: dict[str, Any]) -> None:
        """Add the item; the scenario may react (a tool's output, say)."""
        item = dict(event.get("item") or {})
        item["id"] = item.get("id") or self.new_id("item")
        self.send({"type": "conversation.item.added", "previous_item_id": None, "item": item})
        self.scenario.on_item_created(self, item)

    # -- speaking ----------------------------------------------------------------------------

    @property
    def speaking(self) -> bool:
        """True while a response is being streamed."""
        return self.speaker is not None and not self.speaker.dead

    def speak(self, clip: bytes) -> None:
        """Start a response that says ``clip`` (the one being spoken, if any, is cut off first)."""
        if self.speaking:
            self.speaker.kill(block=True)  # type: ignore[union-attr]
        self.speaker = gevent.spawn(self._speak, clip)

    def stop_speaking(self) -> None:
        """Let the response being spoken go (the socket ended)."""
        if self.speaker is not None:
            self.speaker.kill(block=False)

    def _speak(self, clip: bytes) -> None:
        response_id, item_id = self.new_id("resp"), self.new_id("item")
        self.speaking_item = item_id
        self.item_audio_ms[item_id] = 0
        status, reason = "completed", None
        self.send({"type": "response.created", "response": {"id": response_id, "object": "realtime.response",
                                                            "status": "in_progress", "output": []}})
        self.send({"type": "response.output_item.added", "response_id": response_id, "output_index": 0,
                   "item": {"id": item_id, "type": "message", "role": "assistant", "content": []}})
        chunk = self.model.delta_ms * audio.BYTES_PER_MS
        started = time.monotonic()
        try:
            for index, offset in enumerate(range(0, len(clip), chunk)):
                if index == FAULT_AT_DELTA and self._strike_mid_response():
                    return
                if self.behaviour is Behaviour.QUOTA_MIDCALL and (index == FAULT_AT_DELTA or self.out_of_quota):
                    if not self.out_of_quota:
                        self.record.fault_at = time.monotonic()
                    self.out_of_quota = True  # every later response fails at once
                    status, reason = "failed", "insufficient_quota"
                    break
                piece = clip[offset : offset + chunk]
                self._send_delta(response_id, item_id, audio.b64(piece))
                self.item_audio_ms[item_id] += len(piece) // audio.BYTES_PER_MS
                # Faster than real time, like the real model.
                due = started + (offset + len(piece)) / audio.BYTES_PER_MS / 1000 / self.model.speed
                gevent.sleep(max(due - time.monotonic(), 0))
        except gevent.GreenletExit:
            status, reason = "cancelled", "turn_detected"
        self.speaking_item = None
        for kind in ("response.output_audio.done", "response.output_item.done"):
            self.send({"type": kind, "response_id": response_id, "item_id": item_id, "output_index": 0,
                       "content_index": 0})
        details: dict[str, Any] | None = {"type": status, "reason": reason} if reason else None
        if status == "failed":
            details = {"type": "failed", "error": {"type": "insufficient_quota", "code": reason}}
        self.send({"type": "response.done", "response": {
            "id": response_id, "object": "realtime.response", "status": status, "status_details": details,
            "output": [{"id": item_id, "type": "message", "role": "assistant"}],
            "usage": {"total_tokens": 120, "input_tokens": 40, "output_tokens": 80}}})

    def _strike_mid_response(self) -> bool:
        """CLOSE_MIDCALL, FATAL_ERROR, SESSION_EXPIRED strike here; True if the response ends."""
        if self.behaviour not in (Behaviour.CLOSE_MIDCALL, Behaviour.FATAL_ERROR, Behaviour.SESSION_EXPIRED):
            return False
        self.record.fault_at = time.monotonic()
        if self.behaviour is Behaviour.CLOSE_MIDCALL:
            self.conn.close(1011, "stand-in: closing mid-call")
            return True
        self.error("session_expired", "Your session hit the maximum duration of 60 minutes.")
        if self.behaviour is Behaviour.FATAL_ERROR:
            self.conn.close(1000)
        return True

    def _send_delta(self, response_id: str, item_id: str, delta: str) -> None:
        event = {"type": "response.output_audio.delta", "event_id": self.new_id("event"),
                 "response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0,
                 "delta": delta}
        text = json.dumps(event)
        wire = self.model.wire
        try:
            if wire.ping_before_delta:
                self.conn.send_ping(b"standin")
            if wire.fragments > 1:
                size = -(-len(text) // wire.fragments)
                self.conn.send_fragmented([text[i : i + size] for i in range(0, len(text), size)])
            else:
                self.conn.send_text(text)
        except ConnectionClosed:
            return
        self.record.deltas_sent.append(delta)
