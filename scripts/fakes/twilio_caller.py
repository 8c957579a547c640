"""A simulated Twilio caller: one call against a relay, on Twilio's side of a Media Stream.

It speaks over an independent WebSocket client (websockets' protocol, never the relay's own
code: scripts/fakes/websocket_client.py): signs the upgrade with ``X-Twilio-Signature``, sends ``connected`` and
``start`` (with ``customParameters`` carrying the stream token), then caller audio in real
time, 20 ms per ``media`` frame, every message built by ``InboundStream``. It plays what the
assistant sends at 8 kHz, echoes each ``mark`` when the audio before it has finished
playing (and at once after a ``clear``, as Twilio does), records what the caller heard, and
keeps a timeline: time to first audio, barge-ins, how it ended.

Given the address of a stand-in for Twilio's REST API (``rest_api_url``), it also plays Twilio's
part there: when the relay hangs the call up or transfers it through the REST API, the
caller's timeline says so and the stream ends as Twilio ends it, with ``stop`` and a close
(scripts/fakes/twilio_call_updates.py).

It runs in real threads (``make call``, the verify scripts) and, in the monkey-patched test
process, in greenlets: the client blocks only in ``recv`` on its own socket, which works in both.

Twilio's behaviour it follows is in docs/twilio-media-streams.md; where the call goes (the
relay directly, or the webhook's TwiML) is scripts/fakes/twilio_webhook.py.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from twilio.request_validator import RequestValidator

from scripts import audio
from scripts.fakes.twilio_call_updates import CallUpdate, UpdateWatch
from scripts.fakes.twilio_messages import InboundStream
from scripts.fakes.twilio_playback import Playback
from scripts.fakes.twilio_webhook import StreamTarget
from scripts.fakes.websocket_client import ClientConnection, ConnectionClosed, HandshakeFailed, HandshakeRefused

# What Twilio's media streams send as User-Agent (seen in relay logs).
USER_AGENT = "Twilio.TmeWs/1.0"


@dataclass
class CallResult:
    """What the simulated caller observed."""

    handshake_status: int | None = None
    handshake_body: str = ""
    connected: bool = False
    extensions: list[str] = field(default_factory=list)  # WebSocket extensions the relay accepted
    close_code: int | None = None
    close_reason: str = ""
    first_audio_ms: float | None = None
    media_payloads: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    marks_echoed_ms: list[float] = field(default_factory=list)  # when each was echoed, since connecting
    clears_ms: list[float] = field(default_factory=list)
    marks_played_before_clear: list[int] = field(default_factory=list)  # per clear
    heard: bytes = b""
    sent_payloads: list[str] = field(default_factory=list)
    closed_at_ms: float | None = None
    connected_at: float = 0.0  # time.monotonic() when the upgrade was sent: the timeline's zero
    relay_hung_up: bool = False  # the relay closed the stream before the caller hung up
    rest_updates: list[CallUpdate] = field(default_factory=list)  # what the relay asked of Twilio's REST API
    rest_watched: bool | None = None  # the REST stand-in could be asked (None: not watched)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def received_audio(self) -> bytes:
        """Every audio byte the relay sent, in order (before any clear)."""
        return b"".join(audio.unb64(p) for p in self.media_payloads)

    @property
    def ended_by(self) -> str:
        """Who ended the call: ``assistant`` (through Twilio's REST API), ``relay`` (closed the stream), ``caller``."""
        if self.rest_updates:
            return "assistant"
        return "relay" if self.relay_hung_up else "caller"


class SimulatedCaller:
    """One call as Twilio places it. ``run()`` returns a CallResult."""

    def __init__(
        self,
        target: StreamTarget,
        *,
        auth_token: str | None,
        caller_audio: bytes | None = None,
        realtime: bool = True,
        hold_s: float = 8.0,
        send_stop: bool = True,
        wait_for_audio: bool = True,
        until_heard: bool = False,
        barge_in_after_s: float | None = None,
        timeout_s: float = 10.0,
        extra_headers: dict[str, str] | None = None,
        ca_file: str | None = None,
        offer_deflate: bool = False,
        rest_api_url: str | None = None,
    ) -> None:
        self.target = target
        self.auth_token = auth_token
        self.caller_audio = caller_audio if caller_audio is not None else audio.silence(200)
        self.realtime = realtime
        self.hold_s = hold_s
        self.send_stop = send_stop
        self.wait_for_audio = wait_for_audio
        self.until_heard = until_heard  # hang up as soon as the assistant is heard (a probe)
        self.barge_in_after_s = barge_in_after_s
        self.timeout_s = timeout_s
        self.extra_headers = extra_headers or {}
        self.ca_file = ca_file  # trust this CA for wss:// instead of the public ones
        self.offer_deflate = offer_deflate  # offer permessage-deflate in the upgrade
        self.rest_api_url = rest_api_url  # a REST stand-in to watch for the relay's updates of this call
        self._watch: UpdateWatch | None = None
        self.stream = InboundStream(target.call_sid)
        self.result = CallResult()
        self.playback = Playback()
        self.first_audio = threading.Event()
        self.closed = threading.Event()
        self._t0 = 0.0
        self._ws: ClientConnection | None = None
        self._threads: list[threading.Thread] = []
        self._letting_go = False  # the caller is releasing the socket: the reader's error is ours

    @property
    def stream_sid(self) -> str:
        """The stream's SID, as in ``start``."""
        return self.stream.stream_sid

    def _ms(self) -> float:
        return round((time.monotonic() - self._t0) * 1000, 1)

    def _note(self, text: str) -> None:
        self.result.timeline.append((self._ms(), text))

    def send(self, text: str) -> None:
        """Send one message on the stream (ConnectionClosed once it is over)."""
        assert self._ws is not None
        self._ws.send(text)

    def connect(self) -> bool:
        """Open the signed WebSocket; False (with the status recorded) if refused."""
        headers = dict(self.extra_headers)
        if self.auth_token:
            headers["X-Twilio-Signature"] = RequestValidator(self.auth_token).compute_signature(
                self.target.signed_url, {})
        self._t0 = self.result.connected_at = time.monotonic()
        try:
            self._ws = ClientConnection.connect(self.target.url, headers=headers, timeout_s=self.timeout_s,
                                                ca_file=self.ca_file, offer_deflate=self.offer_deflate,
                                                user_agent=USER_AGENT)
        except HandshakeRefused as exc:
            self.result.handshake_status = exc.status
            self.result.handshake_body = exc.body.decode("utf-8", "replace")
            self._note(f"upgrade refused: HTTP {exc.status}")
            return False
        except (OSError, HandshakeFailed) as exc:
            self.result.errors.append(f"connect failed: {exc}")
            self._note(f"connect failed: {exc}")
            return False
        self.result.handshake_status = 101
        self.result.connected = True
        self.result.extensions = self._ws.extensions
        self._note("connected (101)")
        return True

    def start(self) -> None:
        """Send ``connected`` and ``start`` as Twilio does."""
        self.send(self.stream.connected())
        self.send(self.stream.start(self.target.parameters))
        self._note("start sent")

    def _reader(self) -> None:
        ws = self._ws
        assert ws is not None
        while True:
            try:
                message = ws.recv(timeout=self.timeout_s)
            except TimeoutError:
                # Silence is not a hang-up: a relay that sends nothing is dead air, and the caller's own
                # hold time decides when to give up (hang_up's close then ends this loop).
                continue
            except ConnectionClosed as exc:
                if exc.rcvd is not None:
                    self.result.close_code, self.result.close_reason = exc.rcvd.code, exc.rcvd.reason
                break
            if isinstance(message, bytes):
                self.result.errors.append("relay sent a non-text frame (Twilio error 31950)")
                continue
            self._on_message(message)
        self.result.closed_at_ms = self._ms()
        if self.result.close_code is None and self._letting_go:
            self._note("caller let go of the line (no close from the relay)")
        elif self._letting_go:
            self._note(f"the relay answered the close (code {self.result.close_code})")
        else:
            self._note(f"relay closed the stream (code {self.result.close_code})")
        self.closed.set()

    def _on_message(self, text: str) -> None:
        now = time.monotonic()
        try:
            message: dict[str, Any] = json.loads(text)
        except ValueError:
            self.result.errors.append("relay sent a message that is not JSON (Twilio error 31951)")
            return
        event = message.get("event")
        if message.get("streamSid") != self.stream_sid:
            self.result.errors.append(f"{event} with wrong streamSid (Twilio error 31951)")
            return
        if event == "media":
            payload = message["media"]["payload"]
            self.result.media_payloads.append(payload)
            self.playback.add_audio(now, audio.unb64(payload))
            if self.result.first_audio_ms is None:
                self.result.first_audio_ms = self._ms()
                self._note("first assistant audio")
                self.first_audio.set()
        elif event == "mark":
            self.playback.add_mark(now, message["mark"]["name"])
        elif event == "clear":
            self.result.clears_ms.append(self._ms())
            self.result.marks_played_before_clear.append(len(self.result.marks_echoed))
            self._note("clear (barge-in): buffered assistant audio dropped")
            for name in self.playback.clear(now):
                self._echo_mark(name)
        else:
            self.result.errors.append(f"unexpected event {event!r} (Twilio error 31951)")

    def _echo_mark(self, name: str) -> None:
        try:
            self.send(self.stream.mark(name))
            self.result.marks_echoed.append(name)
            self.result.marks_echoed_ms.append(self._ms())
        except (ConnectionClosed, OSError):
            return

    def _on_rest_update(self, update: CallUpdate) -> None:
        """The relay updated this call through Twilio's REST API: Twilio ends the stream."""
        self.result.rest_updates.append(update)
        self._note(update.describe())
        if self.closed.is_set() or self._ws is None:
            return
        self._note("Twilio ends the stream (stop)")
        self._letting_go = True
        try:
            self.send(self.stream.stop())
            self._ws.close()
        except (ConnectionClosed, OSError):
            return

    def _player(self) -> None:
        while not self.closed.is_set():
            for name in self.playback.due_marks(time.monotonic()):
                self._echo_mark(name)
            self.closed.wait(0.005)

    def _await_first_audio(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not self.first_audio.is_set() and not self.closed.is_set():
            if time.monotonic() > deadline:
                return
            self.first_audio.wait(0.02)

    def _stream_audio(self, data: bytes, deadline: float, realtime: bool | None = None) -> None:
        paced = self.realtime if realtime is None else realtime
        started = time.monotonic()
        for index, frame in enumerate(audio.frames(data)):
            if self._over() or time.monotonic() > deadline:
                return
            payload = audio.b64(frame)
            self.result.sent_payloads.append(payload)
            try:
                self.send(self.stream.media_b64(payload, len(frame)))
            except (ConnectionClosed, OSError):
                return
            if paced:
                due = started + (index + 1) * 0.02
                time.sleep(max(due - time.monotonic(), 0))

    def _over(self) -> bool:
        return self.closed.is_set() or (self.until_heard and self.first_audio.is_set())

    def begin(self) -> bool:
        """Connect, send ``connected`` + ``start`` and start listening; False if refused."""
        if not self.connect():
            return False
        self.start()
        self._threads = [threading.Thread(target=self._reader, daemon=True),
                         threading.Thread(target=self._player, daemon=True)]
        for thread in self._threads:
            thread.start()
        if self.rest_api_url:
            self._watch = UpdateWatch(self.rest_api_url, self.target.call_sid, self._on_rest_update).start()
        return True

    def say(self, data: bytes, *, realtime: bool | None = None) -> None:
        """Speak ``data`` in 20 ms frames, in real time unless ``realtime`` (or the caller's) says not."""
        self._stream_audio(data, float("inf"), realtime)

    def press(self, digits: str, gap_s: float = 0.1) -> None:
        """Press keys on the keypad (Twilio's ``dtmf`` messages), ``gap_s`` apart."""
        for digit in digits:
            self.send(self.stream.dtmf(digit))
            time.sleep(gap_s)

    def finish(self) -> CallResult:
        """Hang up (if the relay has not already) and collect what was heard."""
        self.hang_up()
        for thread in self._threads:
            thread.join(self.timeout_s)
        if self._watch is not None:
            self._watch.stop()
            self.result.rest_watched = self._watch.reachable
        self.result.heard = self.playback.heard(time.monotonic())
        return self.result

    def run(self) -> CallResult:
        """Place the call: connect, start, talk, listen, hang up."""
        if not self.begin():
            return self.result
        deadline = time.monotonic() + self.hold_s
        if self.barge_in_after_s is not None:
            # An impatient caller: talks over the assistant this long after it starts.
            self._await_first_audio()
            self._stream_audio(audio.silence(int(self.barge_in_after_s * 1000)), deadline)
        elif self.wait_for_audio:
            # A polite caller: let the greeting play out, then speak.
            self._await_first_audio()
            while not self.closed.is_set() and time.monotonic() < deadline:
                if time.monotonic() > self.playback.cursor + 0.3:
                    break
                self._stream_audio(audio.silence(100), deadline)
        self._stream_audio(self.caller_audio, deadline)
        # Keep the line open (silence, as a real line sends) until the hold time is up.
        while not self._over() and time.monotonic() < deadline:
            self._stream_audio(audio.silence(200), deadline)
        return self.finish()

    def hang_up(self) -> None:
        """End the call as Twilio does: ``stop``, then close (or just drop, if not send_stop)."""
        ws = self._ws
        if ws is None:
            return
        if self.closed.is_set():  # the relay (or Twilio, on its REST request) ended it first: let go
            self.result.relay_hung_up = not self.result.rest_updates
            self._let_go(ws)
            return
        self._note("caller hangs up" + (" (stop)" if self.send_stop else " (no stop)"))
        try:
            if self.send_stop:
                self.send(self.stream.stop())
                # The close waits up to timeout_s for the relay's answering close, then drops
                # the connection; the reader thread sees either.
                self._letting_go = True
                ws.close()
        except (ConnectionClosed, OSError) as exc:
            self._note(f"hang-up on a closed line ({exc})")
        finally:
            self._let_go(ws)

    def _let_go(self, ws: ClientConnection) -> None:
        """Release the socket now, waking the reader."""
        self._letting_go = True
        ws.abort()
