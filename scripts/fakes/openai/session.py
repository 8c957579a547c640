"""One stand-in Realtime session: the GA protocol as the model speaks it, over one socket.

- ``session.created`` on connect; ``session.update`` is checked for the GA shape
  (``session.type``, audio formats as objects, no beta fields) and answered with
  ``session.updated`` or an ``error``;
- ``input_audio_buffer.append`` feeds an energy VAD: ``speech_started`` /
  ``speech_stopped`` / ``committed``; with ``interrupt_response``, a speaking response is
  cancelled when the caller talks over it;
- when the session asked for ``audio.input.transcription``, each caller turn is followed by
  ``conversation.item.input_audio_transcription.completed`` (transcripts.py says which
  words it gives: it does no speech recognition);
- ``response.create``, each finished caller turn and each item the relay adds are handed to
  the session's ``Scenario`` (scenarios.py), which decides what to say; ``respond`` streams
  it (responses.py: audio faster than real time with its words, function calls);
- ``conversation.item.truncate`` is checked against the item's audio and acknowledged.

Faults (faults.py) strike at fixed points whatever the scenario. ``Wire`` changes how
messages travel (fragmented, preceded by pings), for the wire-level interop tests.

Everything received is recorded in a ``SessionRecord`` for tests to assert on. The wire
facts are in docs/openai-realtime.md.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent

from scripts import audio
from scripts.fakes.openai.faults import PAUSE_READING_S, Behaviour
from scripts.fakes.openai.responses import Part, Speech, respond
from scripts.fakes.openai.transcripts import transcription_usage
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
    sent: list[dict[str, Any]] = field(default_factory=list)  # every event sent but audio deltas
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

    def sent_of(self, kind: str) -> list[dict[str, Any]]:
        """The events of type ``kind`` the stand-in sent, in order."""
        return [e for e in self.sent if e.get("type") == kind]


@dataclass(frozen=True)
class CallerTurn:
    """One turn of the caller, as the VAD heard it: its item, audio and length of speech."""

    item_id: str
    audio: bytes  # from the turn's first voiced frame to the end of the silence that ended it
    speech_ms: int  # without that silence


@dataclass(frozen=True)
class Wire:
    """How the stand-in's messages travel (the default: one frame each, no pings)."""

    fragments: int = 1  # send each audio delta as this many frames (text + continuations)
    ping_before_delta: bool = False  # a ping before every audio delta


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
        self.turn_item = ""  # the caller turn's item: speech_started, speech_stopped, committed, transcription
        self.appended_ms = 0
        self.out_of_quota = False
        self.configured = False
        self.transcribe = False  # the session asked for the caller's words

    def new_id(self, prefix: str) -> str:
        """An id of the shape the API uses (``item_…``, ``resp_…``), unique in this stand-in."""
        return f"{prefix}_standin_{self.record.number}_{next(self.ids)}"

    def send(self, event: dict[str, Any]) -> None:
        """Send one server event (an ``event_id`` is added); nothing if the relay has hung up."""
        event.setdefault("event_id", self.new_id("event"))
        self.record.sent.append(event)
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
        audio_input = (session.get("audio") or {}).get("input") or {}
        turn = audio_input.get("turn_detection") or {}
        self.interrupt = bool(turn.get("interrupt_response", True))
        self.transcribe = bool((audio_input.get("transcription") or {}).get("model"))
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
                item = self.turn_item
                self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": self.appended_ms,
                           "item_id": item})
                self.send({"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": None})
                heard = bytes(self.turn_audio)
                self.turn_audio = bytearray()
                speech_ms = max(len(heard) - VAD_STOP_FRAMES * len(frame), 0) // audio.BYTES_PER_MS
                turn = CallerTurn(item, heard, speech_ms)
                if self.transcribe:
                    self._transcribe(turn)
                self.scenario.on_caller_turn(self, turn)
            return
        self.voiced = self.voiced + 1 if voiced else 0
        if self.voiced >= VAD_START_FRAMES:
            self.in_speech = True
            self.unvoiced = 0
            self.turn_audio = bytearray(frame)
            self.turn_item = self.new_id("item")
            self.send({"type": "input_audio_buffer.speech_started",
                       "audio_start_ms": max(self.appended_ms - 40, 0), "item_id": self.turn_item})
            if self.speaking and self.interrupt:
                self.speaker.kill(block=False)  # type: ignore[union-attr]  # server VAD interrupts

    def _transcribe(self, turn: CallerTurn) -> None:
        """The caller's words for the turn (transcripts.py: known words, or a description)."""
        text = self.model.caller_words.transcript(turn.audio, turn.speech_ms)
        self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": turn.item_id,
                   "content_index": 0, "transcript": text, "usage": transcription_usage(turn.speech_ms, text)})

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

    def respond(self, parts: Sequence[Part]) -> None:
        """Start a response of ``parts`` (the one being spoken, if any, is cut off first)."""
        if self.speaking:
            self.speaker.kill(block=True)  # type: ignore[union-attr]
        self.speaker = gevent.spawn(respond, self, list(parts))

    def speak(self, clip: bytes, text: str = "") -> None:
        """Start a response that says ``clip`` (its words: ``text``)."""
        self.respond([Speech(clip, text)])

    def stop_speaking(self) -> None:
        """Let the response being spoken go (the socket ended)."""
        if self.speaker is not None:
            self.speaker.kill(block=False)

    def strike_mid_response(self) -> bool:
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

    def send_delta(self, where: dict[str, Any], delta: str) -> None:
        """One ``response.output_audio.delta`` (``where``: its response, item and indexes), as ``Wire`` says."""
        event = {"type": "response.output_audio.delta", "event_id": self.new_id("event"), **where, "delta": delta}
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
