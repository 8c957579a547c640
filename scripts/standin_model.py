"""A local stand-in for the OpenAI Realtime API (GA interface), over a real WebSocket.

Used by ``make run`` (when OPENAI_API_KEY is unset), by the tests and by the benchmark.
It speaks the GA protocol as protocols.md part 2 describes it:

- the handshake checks ``Authorization: Bearer`` and the ``model`` query parameter; an
  ``OpenAI-Beta`` header gets ``beta_api_shape_disabled`` and close 4000, as the real
  API has done since the beta was retired;
- ``session.created`` on connect; ``session.update`` is checked for the GA shape
  (``session.type``, audio formats as objects, no beta fields) and answered with
  ``session.updated`` or an ``error``;
- ``input_audio_buffer.append`` feeds an energy VAD: ``speech_started`` /
  ``speech_stopped`` / ``committed``, and, with ``interrupt_response``, a speaking
  response is cancelled when the caller talks over it;
- ``response.create`` and each finished caller turn produce a spoken reply as
  ``response.output_audio.delta`` chunks, streamed faster than real time like the real
  model: the greeting is a bundled clip, a reply plays back what the caller said;
- ``conversation.item.truncate`` is checked against the item's audio and acknowledged.

Misbehaving modes (``behaviour``) for tests: 401/403/429 on the handshake, a handshake
that hangs (until the client gives up), never answering ``session.update``, rejecting it,
a fatal ``error`` mid-call then a close, ``session_expired`` mid-call with the socket left
open, every response failing for ``insufficient_quota`` mid-call, closing mid-call, a
recoverable ``error``. Everything received is recorded per session (``sessions``), with
the moment a mid-call fault was injected (``fault_at``), so tests assert on what the
relay actually sent and time its reaction from the fault.

Load mode (``load=True``, used by ``make bench``): no VAD and no replies; once asked for
a response, every session streams tagged 20 ms frames at exactly 50 a second (one ticker
for all sessions), and every appended frame's tag is read back, so latency and loss are
measured through the relay both ways (scripts/bench/stats.py). ``GET /stats`` returns
what was measured, ``POST /reset`` starts over.

Run alone: ``python -m scripts.standin_model --port 8765 [--load]``.
"""

from __future__ import annotations

import argparse
import base64
import gc
import itertools
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gevent
from gevent.event import Event
from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler
from msgspec.json import decode as fast_loads

from relay.transport import ConnectionClosed, WebSocketConnection, server_connection
from scripts import audio
from scripts.bench import stats as bench_stats

_APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'

log = logging.getLogger("standin")

NORMAL = "normal"
REJECT_401 = "reject_401"
REJECT_403 = "reject_403"
REJECT_429 = "reject_429"
HANG_HANDSHAKE = "hang_handshake"
NEVER_UPDATE = "never_update"
REJECT_SESSION = "reject_session"
FATAL_ERROR = "fatal_error"
CLOSE_MIDCALL = "close_midcall"
RECOVERABLE_ERROR = "recoverable_error"
# The session hits its 60-minute limit mid-call: an ``error`` session_expired, and the
# socket is left open (the relay must end the call on the error, not wait for a close).
SESSION_EXPIRED = "session_expired"
# The account runs out of credit mid-call: the response in progress fails with
# ``insufficient_quota`` (protocols.md 2.4: quota failures surface in ``response.done``),
# and so does every later one; the socket stays open.
QUOTA_MIDCALL = "quota_midcall"
BEHAVIOURS = (NORMAL, REJECT_401, REJECT_403, REJECT_429, HANG_HANDSHAKE, NEVER_UPDATE,
              REJECT_SESSION, FATAL_ERROR, CLOSE_MIDCALL, RECOVERABLE_ERROR, SESSION_EXPIRED,
              QUOTA_MIDCALL)
# Mid-call faults strike at this audio delta of a response (after some audio has played).
_FAULT_AT_DELTA = 3

_HANDSHAKE_ERRORS = {
    REJECT_401: ("401 Unauthorized", "invalid_api_key",
                 "Incorrect API key provided. You can find your API key at "
                 "https://platform.openai.com/account/api-keys."),
    REJECT_403: ("403 Forbidden", "model_not_found",
                 "Project does not have access to model gpt-realtime"),
    REJECT_429: ("429 Too Many Requests", "insufficient_quota",
                 "You exceeded your current quota, please check your plan and billing details."),
}
_BETA_FIELDS = ("input_audio_format", "output_audio_format", "modalities", "voice",
                "turn_detection", "input_audio_transcription", "temperature",
                "max_response_output_tokens")

VAD_LEVEL = 4.0  # mean |sample|/256 above which a 20 ms frame counts as voice
VAD_START_FRAMES = 2  # 40 ms of voice starts a turn
VAD_STOP_FRAMES = 25  # 500 ms of silence ends it (server_vad's silence_duration_ms)


@dataclass
class SessionRecord:
    """What one Realtime socket saw: for tests to assert on."""

    number: int
    model: str
    headers: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)
    appended: list[str] = field(default_factory=list)  # base64 exactly as received
    deltas_sent: list[str] = field(default_factory=list)
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    fault_at: float | None = None  # when a mid-call fault was injected (time.monotonic)

    def types(self) -> list[str]:
        """The ``type`` of every event received, in order."""
        return [str(e.get("type")) for e in self.events]


class _Session:
    """Protocol state of one stand-in socket."""

    def __init__(self, model: StandinModel, conn: WebSocketConnection, record: SessionRecord) -> None:
        self.model = model
        self.conn = conn
        self.record = record
        self.ids = itertools.count(1)
        self.configured = False
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
        self.closed = Event()
        self.load_seq = -1  # load mode: the next frame's sequence number; -1 while not streaming
        self.stream_started_ns = 0

    def _id(self, prefix: str) -> str:
        return f"{prefix}_standin_{self.record.number}_{next(self.ids)}"

    def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", self._id("event"))
        if self.conn.close_sent or self.conn.ended:
            return  # the relay hung up (a caller left mid-greeting): nothing more to say
        try:
            self.conn.send_text(json.dumps(event))
        except ConnectionClosed:
            return  # ... or it is hanging up right now (the socket broke under this send)

    def error(self, code: str, message: str, param: str | None = None,
              event_id: str | None = None) -> None:
        self.send({"type": "error", "error": {"type": "invalid_request_error", "code": code,
                                              "message": message, "param": param,
                                              "event_id": event_id}})

    # -- reading ---------------------------------------------------------------------

    def run(self) -> None:
        self.send({"type": "session.created", "session": self._session_body({})})
        if self.model.load:
            self._run_load()
            return
        while True:
            message = self.conn.receive()
            if message is None:
                return
            try:
                event = json.loads(message)
            except ValueError:
                self.error("invalid_json", "The server could not parse the message as JSON.")
                continue
            self.record.events.append(event)
            handler = getattr(self, "on_" + str(event.get("type", "")).replace(".", "_"), None)
            if handler is None:
                self.error("invalid_value", f"Invalid value: '{event.get('type')}'.", "type",
                           event.get("event_id"))
                continue
            handler(event)

    def _run_load(self) -> None:
        """Load mode: read tags off appended audio; everything else as usual, unrecorded.

        Read by event-loop callbacks, like the relay, so the model side of a benchmark
        costs the load-generator core as little as possible.
        """
        stats = self.model.load_stats
        now_ns = time.monotonic_ns
        ended = Event()

        def on_messages(messages: list[str | bytes]) -> None:
            for message in messages:
                # The hot path, on the relay's own wire format: the tag is the first 32
                # characters of the audio. Anything else is parsed properly.
                if type(message) is str and message.startswith(_APPEND_PREFIX):
                    tag = bench_stats.read_tag(message[len(_APPEND_PREFIX):len(_APPEND_PREFIX) + 32])
                    if tag is not None:
                        stats.up_received(tag, now_ns())
                        continue
                event = fast_loads(message)
                kind = event.get("type")
                if kind == "session.update":
                    self.record.events.append(event)
                    self.on_session_update(event)
                elif kind == "response.create":
                    self.record.events.append(event)
                    self.model.stream_to(self)

        self.conn.start_reading(on_messages, lambda _error: ended.set())
        ended.wait()

    def _session_body(self, requested: dict[str, Any]) -> dict[str, Any]:
        audio_cfg = requested.get("audio") or {}
        in_fmt = (audio_cfg.get("input") or {}).get("format") or {"type": "audio/pcm", "rate": 24000}
        out_fmt = (audio_cfg.get("output") or {}).get("format") or {"type": "audio/pcm", "rate": 24000}
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": f"sess_standin_{self.record.number}",
            "model": self.record.model,
            "output_modalities": requested.get("output_modalities", ["audio"]),
            "instructions": requested.get("instructions", ""),
            "audio": {"input": {"format": in_fmt}, "output": {"format": out_fmt}},
        }

    def on_session_update(self, event: dict[str, Any]) -> None:
        behaviour = self.model.behaviour
        session = event.get("session")
        if behaviour == NEVER_UPDATE:
            return
        if behaviour == REJECT_SESSION:
            self.error("invalid_value", "Invalid value: 'audio/pcmu'. Supported values are: "
                       "'audio/pcm'.", "session.audio.input.format.type", event.get("event_id"))
            return
        if not isinstance(session, dict) or session.get("type") != "realtime":
            self.error("missing_required_parameter", "Missing required parameter: 'session.type'.",
                       "session.type", event.get("event_id"))
            return
        for name in _BETA_FIELDS:
            if name in session:
                self.error("unknown_parameter", f"Unknown parameter: 'session.{name}'.",
                           f"session.{name}", event.get("event_id"))
                return
        turn = ((session.get("audio") or {}).get("input") or {}).get("turn_detection") or {}
        self.interrupt = bool(turn.get("interrupt_response", True))
        self.configured = True
        self.send({"type": "session.updated", "session": self._session_body(session)})
        if behaviour == RECOVERABLE_ERROR:
            self.record.fault_at = time.monotonic()
            self.error("response_cancel_not_active",
                       "Cancellation failed: no active response found.")

    def on_input_audio_buffer_append(self, event: dict[str, Any]) -> None:
        payload = event.get("audio")
        if not isinstance(payload, str):
            self.error("invalid_value", "Invalid 'audio'.", "audio", event.get("event_id"))
            return
        self.record.appended.append(payload)
        try:
            frame = base64.b64decode(payload, validate=True)
        except ValueError:
            self.error("invalid_value", "Invalid 'audio'. Expected base64.", "audio",
                       event.get("event_id"))
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
                item = self._id("item")
                self.send({"type": "input_audio_buffer.speech_stopped",
                           "audio_end_ms": self.appended_ms, "item_id": item})
                self.send({"type": "input_audio_buffer.committed", "item_id": item,
                           "previous_item_id": None})
                heard = bytes(self.turn_audio)
                self.turn_audio = bytearray()
                self._start_response(self.model.reply_audio(heard))
            return
        self.voiced = self.voiced + 1 if voiced else 0
        if self.voiced >= VAD_START_FRAMES:
            self.in_speech = True
            self.unvoiced = 0
            self.turn_audio = bytearray(frame)
            self.send({"type": "input_audio_buffer.speech_started",
                       "audio_start_ms": max(self.appended_ms - 40, 0), "item_id": self._id("item")})
            if self.speaker is not None and not self.speaker.dead and self.interrupt:
                self.speaker.kill(block=False)  # server VAD interrupts the response

    def on_input_audio_buffer_commit(self, event: dict[str, Any]) -> None:
        self.send({"type": "input_audio_buffer.committed", "item_id": self._id("item")})

    def on_input_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        self.send({"type": "input_audio_buffer.cleared"})

    def on_response_create(self, event: dict[str, Any]) -> None:
        if self.speaker is not None and not self.speaker.dead:
            self.error("conversation_already_has_active_response",
                       "Conversation already has an active response in progress.",
                       None, event.get("event_id"))
            return
        self._start_response(self.model.greeting_audio)

    def on_response_cancel(self, event: dict[str, Any]) -> None:
        if self.speaker is None or self.speaker.dead:
            self.error("response_cancel_not_active", "Cancellation failed: no active response found.")
            return
        self.speaker.kill(block=False)

    def on_conversation_item_truncate(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        end = event.get("audio_end_ms")
        duration = self.item_audio_ms.get(str(item_id))
        if duration is None:
            self.error("invalid_value", f"Item with item_id '{item_id}' not found.", "item_id",
                       event.get("event_id"))
        elif not isinstance(end, int) or end < 0 or end > duration:
            self.error("invalid_value", f"audio_end_ms {end} is longer than the item's audio "
                       f"({duration} ms).", "audio_end_ms", event.get("event_id"))
        else:
            self.send({"type": "conversation.item.truncated", "item_id": item_id,
                       "content_index": 0, "audio_end_ms": end})

    def on_conversation_item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item") or {}
        self.send({"type": "conversation.item.added", "previous_item_id": None,
                   "item": {**item, "id": item.get("id") or self._id("item")}})

    # -- speaking -----------------------------------------------------------------------

    def _start_response(self, clip: bytes) -> None:
        if self.speaker is not None and not self.speaker.dead:
            self.speaker.kill(block=True)
        self.speaker = gevent.spawn(self._speak, clip)

    def _speak(self, clip: bytes) -> None:
        response_id = self._id("resp")
        item_id = self._id("item")
        self.speaking_item = item_id
        self.item_audio_ms[item_id] = 0
        status: str = "completed"
        reason: str | None = None
        self.send({"type": "response.created",
                   "response": {"id": response_id, "object": "realtime.response",
                                "status": "in_progress", "output": []}})
        self.send({"type": "response.output_item.added", "response_id": response_id,
                   "output_index": 0, "item": {"id": item_id, "type": "message",
                                               "role": "assistant", "content": []}})
        chunk = self.model.delta_ms * audio.BYTES_PER_MS
        started = time.monotonic()
        behaviour = self.model.behaviour
        try:
            for index, offset in enumerate(range(0, len(clip), chunk)):
                if index == _FAULT_AT_DELTA and behaviour in (CLOSE_MIDCALL, FATAL_ERROR, SESSION_EXPIRED):
                    self.record.fault_at = time.monotonic()
                    if behaviour == CLOSE_MIDCALL:
                        self.conn.close(1011, "stand-in: closing mid-call")
                        return
                    self.error("session_expired",
                               "Your session hit the maximum duration of 60 minutes.")
                    if behaviour == FATAL_ERROR:
                        self.conn.close(1000)
                    return
                if behaviour == QUOTA_MIDCALL and (index == _FAULT_AT_DELTA or self.out_of_quota):
                    if not self.out_of_quota:
                        self.record.fault_at = time.monotonic()
                    self.out_of_quota = True  # every later response fails at once
                    status, reason = "failed", "insufficient_quota"
                    break
                piece = clip[offset : offset + chunk]
                delta = audio.b64(piece)
                self.record.deltas_sent.append(delta)
                self.item_audio_ms[item_id] += len(piece) // audio.BYTES_PER_MS
                self.send({"type": "response.output_audio.delta", "response_id": response_id,
                           "item_id": item_id, "output_index": 0, "content_index": 0,
                           "delta": delta})
                # Faster than real time, like the real model.
                due = started + (offset + len(piece)) / audio.BYTES_PER_MS / 1000 / self.model.speed
                gevent.sleep(max(due - time.monotonic(), 0))
        except gevent.GreenletExit:
            status, reason = "cancelled", "turn_detected"
        self.speaking_item = None
        for kind in ("response.output_audio.done", "response.output_item.done"):
            self.send({"type": kind, "response_id": response_id, "item_id": item_id,
                       "output_index": 0, "content_index": 0})
        details: dict[str, Any] | None = {"type": status, "reason": reason} if reason else None
        if status == "failed":
            details = {"type": "failed", "error": {"type": "insufficient_quota", "code": reason}}
        self.send({"type": "response.done", "response": {
            "id": response_id, "object": "realtime.response", "status": status,
            "status_details": details,
            "output": [{"id": item_id, "type": "message", "role": "assistant"}],
            "usage": {"total_tokens": 120, "input_tokens": 40, "output_tokens": 80}}})


class LoadStats:
    """What load mode measured: model->caller frames sent, caller->model frames received."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything measured so far."""
        self.down_sent_ns: list[int] = []  # send time of every frame streamed to a caller
        self.up: list[tuple[int, int, int, int]] = []  # (call, seq, sent_ns, received_ns)
        self.first_delta_ns: list[int] = []  # response.create received -> first delta sent

    def up_received(self, tag: tuple[int, int, int], received_ns: int) -> None:
        """A tagged caller frame arrived."""
        self.up.append((tag[0], tag[1], tag[2], received_ns))

    def report(self, start_ns: int, end_ns: int) -> dict[str, Any]:
        """Counts and latencies for frames sent inside [start_ns, end_ns]."""
        up = [(call, seq, (received - sent) / 1e6) for call, seq, sent, received in self.up
              if start_ns <= sent <= end_ns]
        return {
            "down_sent": sum(1 for sent in self.down_sent_ns if start_ns <= sent <= end_ns),
            "up_latencies_ms": [latency for _call, _seq, latency in up],
            "up_received": len({(call, seq) for call, seq, _latency in up}),
            "first_delta_ms": [ns / 1e6 for ns in self.first_delta_ns],
        }


class StandinModel:
    """The stand-in server. ``start()``, point OPENAI_REALTIME_URL at ``url``, ``stop()``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        behaviour: str = NORMAL,
        delta_ms: int = 100,
        speed: float = 4.0,
        greeting_audio: bytes | None = None,
        reply: str = "echo",
        load: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.behaviour = behaviour
        self.delta_ms = delta_ms
        self.speed = speed
        self.greeting_audio = greeting_audio if greeting_audio is not None else audio.read_wav_ulaw(
            audio.GREETING_WAV)
        self.reply = reply
        self.load = load
        self.load_stats = LoadStats()
        self._slots: list[list[_Session]] = [[] for _ in range(bench_stats.SLOTS)]
        self._ticker: gevent.Greenlet | None = None
        self.handshakes = 0
        self.hanging = 0  # hang_handshake: upgrades being held unanswered right now
        self.sessions: list[SessionRecord] = []
        self.live: set[_Session] = set()
        self._server: WSGIServer | None = None
        self.session_opened = Event()

    @property
    def url(self) -> str:
        """The ``OPENAI_REALTIME_URL`` for a relay to use."""
        return f"ws://{self.host}:{self.port}/v1/realtime"

    def reply_audio(self, heard: bytes) -> bytes:
        """What the stand-in says after a caller turn: their own words back, or the greeting."""
        return heard if self.reply == "echo" and heard else self.greeting_audio

    def start(self) -> StandinModel:
        """Listen (port 0 picks a free one; ``port`` is then set)."""
        model = self

        class Handler(WebSocketHandler):
            def upgrade_websocket(self) -> Any:
                if self.environ.get("HTTP_UPGRADE", "").lower() == "websocket":
                    refusal = model._refuse(self.environ, self.socket)
                    if refusal is not None:
                        status, body = refusal
                        self.close_connection = True
                        self.start_response(status, [("Content-Type", "application/json"),
                                                     ("Content-Length", str(len(body)))])
                        return [body]
                return super().upgrade_websocket()

            def run_websocket(self) -> None:
                self.websocket.closed = True
                conn = server_connection(self.socket, b"", max_message_bytes=16 * 1024 * 1024)
                try:
                    model._serve(conn, self.environ)
                finally:
                    conn.release()
                self.websocket = None

        self._server = WSGIServer((self.host, self.port), self._http, handler_class=Handler,
                                  log=None, error_log=log)
        self._server.start()
        self.port = self._server.server_port
        return self

    def stream_to(self, session: _Session) -> None:
        """Load mode: stream tagged frames to ``session`` at 50 a second until it closes.

        The first frame goes at once (the model's own time to its first delta is then
        nil, so a benchmark's first-audio figure is the relay's); the rest follow on the
        session's slot of the shared 20 ms schedule.
        """
        if session.load_seq >= 0:
            return  # already streaming (another response.create): one frame per 20 ms is all
        session.stream_started_ns = time.monotonic_ns()
        session.load_seq = 0
        self._slots[session.record.number % bench_stats.SLOTS].append(session)
        self._send_frame(session, time.monotonic_ns())
        if self._ticker is None or self._ticker.dead:
            self._ticker = gevent.spawn(self._tick)

    def _send_frame(self, session: _Session, now_ns: int) -> None:
        seq = session.load_seq
        session.load_seq = seq + 1
        frame = bench_stats.tagged_frame(session.record.number, seq, now_ns)
        text = ('{"type":"response.output_audio.delta","event_id":"e","response_id":"resp_load",'
                f'"item_id":"item_load_{session.record.number}","output_index":0,'
                f'"content_index":0,"delta":"{frame}"}}')
        try:
            session.conn.send_text(text)
        except OSError:
            session.load_seq = -1  # its slot lets go of it on the next tick
            return
        self.load_stats.down_sent_ns.append(now_ns)
        if seq == 0:
            self.load_stats.first_delta_ns.append(now_ns - session.stream_started_ns)

    def _tick(self) -> None:
        # One greenlet paces every session on an absolute schedule. Sessions are spread
        # over SLOTS slots of the 20 ms period, as independent calls are: each still gets
        # a frame every 20 ms, but the relay is not handed every call's frame at once.
        slot = 0
        next_tick = time.monotonic()
        while any(self._slots):
            now_ns = time.monotonic_ns()
            sessions = self._slots[slot]
            for session in list(sessions):
                if session.closed.is_set() or session.load_seq < 0:
                    sessions.remove(session)
                    continue
                self._send_frame(session, now_ns)
            slot = (slot + 1) % bench_stats.SLOTS
            next_tick += bench_stats.FRAME_S / bench_stats.SLOTS
            gevent.sleep(max(next_tick - time.monotonic(), 0))

    def stop(self) -> None:
        """Close every session and stop listening."""
        for session in list(self.live):
            session.conn.abort()
        if self._server is not None:
            self._server.stop(timeout=1)
            self._server = None

    def _refuse(self, environ: dict[str, Any], sock: Any) -> tuple[str, bytes] | None:
        self.handshakes += 1
        if self.behaviour == HANG_HANDSHAKE:
            self.hanging += 1
            try:
                _wait_for_hang_up(sock)
            finally:
                self.hanging -= 1
            return "504 Gateway Timeout", _error_body("timeout", "stand-in: never answered")
        if self.behaviour in _HANDSHAKE_ERRORS:
            status, code, message = _HANDSHAKE_ERRORS[self.behaviour]
            return status, _error_body(code, message)
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if not auth.startswith("Bearer ") or (self.api_key and auth != f"Bearer {self.api_key}"):
            return "401 Unauthorized", _error_body(
                "invalid_api_key", "Incorrect API key provided.")
        if not parse_qs(environ.get("QUERY_STRING", "")).get("model"):
            return "400 Bad Request", _error_body(
                "missing_model", "Missing required parameter: 'model'.")
        return None

    def _serve(self, conn: WebSocketConnection, environ: dict[str, Any]) -> None:
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items()
                   if k.startswith("HTTP_") and k != "HTTP_AUTHORIZATION"}
        model = parse_qs(environ.get("QUERY_STRING", "")).get("model", [""])[0]
        record = SessionRecord(len(self.sessions) + 1, model, headers)
        self.sessions.append(record)
        self.session_opened.set()
        session = _Session(self, conn, record)
        self.live.add(session)
        try:
            if "Openai-Beta" in headers:
                session.error("beta_api_shape_disabled", "The Realtime Beta API is no longer "
                              "supported. Please use /v1/realtime for the GA API.")
                conn.close(4000, "beta_api_shape_disabled")
                return
            session.run()
        finally:
            session.closed.set()
            if session.speaker is not None:
                session.speaker.kill(block=False)
            record.closed_at = time.monotonic()
            self.live.discard(session)
            conn.abort()

    def _http(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/stats":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            start = int(query.get("start", ["0"])[0])
            end = int(query.get("end", [str(2**63 - 1)])[0])
            document: dict[str, Any] = self.load_stats.report(start, end)
        elif path == "/reset" and environ.get("REQUEST_METHOD") == "POST":
            self.load_stats.reset()
            gc.collect()  # between load steps, while nothing is being measured
            document = {"reset": True}
        else:
            document = {"standin": True, "behaviour": self.behaviour, "load": self.load,
                        "sessions": len(self.sessions), "live": len(self.live)}
        body = json.dumps(document).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]


def _wait_for_hang_up(sock: Any) -> None:
    """Answer nothing until the client gives up: a hung upstream that lets go once it has."""
    while True:
        try:
            if not sock.recv(4096):
                return
        except OSError:
            return


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                 "param": None, "code": code}}).encode()


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until interrupted."""
    from gevent import monkey

    monkey.patch_all()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", help="accept only this key (default: any)")
    parser.add_argument("--behaviour", choices=BEHAVIOURS, default=NORMAL)
    parser.add_argument("--load", action="store_true",
                        help="benchmark mode: stream tagged frames at 50/s, measure appended ones")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s standin %(message)s")
    if args.load:
        # A full collection over the samples of a load step stalls this process for tens
        # of milliseconds, measured as relay latency: collect between steps instead.
        gc.disable()
    model = StandinModel(host=args.host, port=args.port, api_key=args.api_key,
                         behaviour=args.behaviour, load=args.load).start()
    print(f"stand-in Realtime model listening on {model.url}", flush=True)
    try:
        gevent.wait()
    except KeyboardInterrupt:
        model.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
