"""A simulated Twilio caller: places one call against a relay, exactly as Twilio would.

It acts as Twilio's side of a Media Stream over a real WebSocket (websocket-client, not
the relay's own code): signs the upgrade with ``X-Twilio-Signature``, sends
``connected`` and ``start`` (with ``customParameters`` carrying the stream token), then
caller audio from a WAV in real time, 20 ms per ``media`` frame. It plays what the
assistant sends at 8 kHz, echoes each ``mark`` when the audio before it has finished
playing (and at once after a ``clear``, as Twilio does), records what the caller heard
to a WAV, and prints a timeline: time to first audio, barge-ins, how it ended.

Start from the webhook (``--webhook``: a signed POST, the TwiML's ``<Stream>`` URL and
``<Parameter>``s are used as Twilio would) or straight at a relay (``--relay``, with the
token minted from STREAM_TOKEN_SECRET).

    make call                                    # against the local stack
    python scripts/call.py --relay ws://127.0.0.1:8080 --out heard.wav
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websocket
from twilio.request_validator import RequestValidator

from relay import stream_token
from scripts import audio
from scripts.checklist import DEFAULT_ENV_FILE, read_env_file

STREAM_PATH = "/twilio/realtime"


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


@dataclass
class StreamTarget:
    """Where to stream and what Twilio would put in ``start``."""

    url: str  # the ws(s):// URL to dial
    signed_url: str  # the URL the signature is computed over (RELAY_PUBLIC_URL + path)
    parameters: dict[str, str]
    call_sid: str
    via: str = "relay"  # how the target was found: straight at the relay, or the webhook's TwiML


@dataclass
class CallResult:
    """What the simulated caller observed."""

    handshake_status: int | None = None
    handshake_body: str = ""
    connected: bool = False
    close_code: int | None = None
    close_reason: str = ""
    first_audio_ms: float | None = None
    media_payloads: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears_ms: list[float] = field(default_factory=list)
    marks_played_before_clear: list[int] = field(default_factory=list)  # per clear
    heard: bytes = b""
    sent_payloads: list[str] = field(default_factory=list)
    closed_at_ms: float | None = None
    relay_hung_up: bool = False  # the relay closed the stream before the caller hung up
    timeline: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def received_audio(self) -> bytes:
        """Every audio byte the relay sent, in order (before any clear)."""
        return b"".join(audio.unb64(p) for p in self.media_payloads)


class _Playback:
    """Twilio's outbound buffer: plays at 8 bytes/ms, echoes marks when reached."""

    def __init__(self) -> None:
        self.cursor = 0.0  # monotonic time the buffered audio finishes playing
        self.chunks: list[tuple[float, bytes]] = []  # (play start, audio)
        self.marks: deque[tuple[float, str]] = deque()
        self.lock = threading.Lock()

    def add_audio(self, now: float, data: bytes) -> None:
        with self.lock:
            start = max(now, self.cursor)
            self.chunks.append((start, data))
            self.cursor = start + len(data) / audio.BYTES_PER_MS / 1000

    def add_mark(self, now: float, name: str) -> None:
        with self.lock:
            self.marks.append((max(now, self.cursor), name))

    def due_marks(self, now: float) -> list[str]:
        with self.lock:
            out = []
            while self.marks and self.marks[0][0] <= now:
                out.append(self.marks.popleft()[1])
            return out

    def clear(self, now: float) -> list[str]:
        """Drop unplayed audio; every pending mark comes back at once."""
        with self.lock:
            kept = []
            for start, data in self.chunks:
                played = int(max(0.0, min(now - start, len(data) / 8000)) * 8000)
                if played > 0:
                    kept.append((start, data[:played]))
            self.chunks = kept
            self.cursor = now
            names = [name for _, name in self.marks]
            self.marks.clear()
            return names

    def heard(self, now: float) -> bytes:
        with self.lock:
            out = bytearray()
            for start, data in self.chunks:
                played = int(max(0.0, min(now - start, len(data) / 8000)) * 8000)
                out += data[:played]
            return bytes(out)


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
        self.stream_sid = new_sid("MZ")
        self.result = CallResult()
        self.playback = _Playback()
        self.first_audio = threading.Event()
        self.closed = threading.Event()
        self._t0 = 0.0
        self._ws: websocket.WebSocket | None = None
        self._threads: list[threading.Thread] = []
        self._letting_go = False  # the caller is releasing the socket: the reader's error is ours

    def _ms(self) -> float:
        return round((time.monotonic() - self._t0) * 1000, 1)

    def _note(self, text: str) -> None:
        self.result.timeline.append((self._ms(), text))

    def _send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        self._ws.send(json.dumps(message))

    def connect(self) -> bool:
        """Open the signed WebSocket; False (with the status recorded) if refused."""
        headers = dict(self.extra_headers)
        if self.auth_token:
            headers["X-Twilio-Signature"] = RequestValidator(self.auth_token).compute_signature(
                self.target.signed_url, {})
        self._t0 = time.monotonic()
        try:
            self._ws = websocket.create_connection(
                self.target.url, timeout=self.timeout_s,
                header=[f"{k}: {v}" for k, v in headers.items()], suppress_origin=True,
                sslopt={"ca_certs": self.ca_file} if self.ca_file else None)
        except websocket.WebSocketBadStatusException as exc:
            self.result.handshake_status = exc.status_code
            self.result.handshake_body = (exc.resp_body or b"").decode("utf-8", "replace")
            self._note(f"upgrade refused: HTTP {exc.status_code}")
            return False
        except (OSError, websocket.WebSocketException) as exc:
            self.result.errors.append(f"connect failed: {exc}")
            self._note(f"connect failed: {exc}")
            return False
        self.result.handshake_status = 101
        self.result.connected = True
        self._note("connected (101)")
        return True

    def start(self) -> None:
        """Send ``connected`` and ``start`` as Twilio does."""
        self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self._send({
            "event": "start", "sequenceNumber": "1", "streamSid": self.stream_sid,
            "start": {
                "accountSid": "AC" + "0" * 32, "streamSid": self.stream_sid,
                "callSid": self.target.call_sid, "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": self.target.parameters,
            },
        })
        self._note("start sent")

    def _reader(self) -> None:
        assert self._ws is not None
        ws = self._ws
        while True:
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketConnectionClosedException:
                break
            except websocket.WebSocketTimeoutException:
                # Silence is not a hang-up: a relay that sends nothing is dead air, and the caller's own
                # hold time decides when to give up (hang_up's shutdown then ends this loop).
                continue
            except (OSError, websocket.WebSocketException) as exc:
                if not self._letting_go:
                    self.result.errors.append(f"receive failed: {exc}")
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                if len(data) >= 2:
                    self.result.close_code = int.from_bytes(data[:2], "big")
                    self.result.close_reason = data[2:].decode("utf-8", "replace")
                else:
                    self.result.close_code = 1005
                break
            if opcode != websocket.ABNF.OPCODE_TEXT:
                self.result.errors.append("relay sent a non-text frame (Twilio error 31950)")
                continue
            self._on_message(json.loads(data))
        self.result.closed_at_ms = self._ms()
        if self._letting_go and self.result.close_code is None:
            self._note("caller let go of the line (no close from the relay)")
        else:
            self._note(f"relay closed the stream (code {self.result.close_code})")
        self.closed.set()

    def _on_message(self, message: dict[str, Any]) -> None:
        now = time.monotonic()
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
            self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})
            self.result.marks_echoed.append(name)
        except (OSError, websocket.WebSocketException):
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

    def _stream_audio(self, data: bytes, deadline: float) -> None:
        started = time.monotonic()
        for index, frame in enumerate(audio.frames(data)):
            if self._over() or time.monotonic() > deadline:
                return
            payload = audio.b64(frame)
            self.result.sent_payloads.append(payload)
            try:
                self._send({"event": "media", "streamSid": self.stream_sid,
                            "sequenceNumber": str(index + 2),
                            "media": {"track": "inbound", "chunk": str(index + 1),
                                      "timestamp": str(index * 20), "payload": payload}})
            except (OSError, websocket.WebSocketException):
                return
            if self.realtime:
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
        return True

    def finish(self) -> CallResult:
        """Hang up (if the relay has not already) and collect what was heard."""
        self.hang_up()
        for thread in self._threads:
            thread.join(self.timeout_s)
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
        if self.closed.is_set():  # the relay hung up first: just release the socket
            self.result.relay_hung_up = True
            self._let_go(ws)
            return
        self._note("caller hangs up" + (" (stop)" if self.send_stop else " (no stop)"))
        try:
            if self.send_stop:
                self._send({"event": "stop", "streamSid": self.stream_sid, "sequenceNumber": "9999",
                            "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.target.call_sid}})
                ws.send_close()
                # The reader thread sees the relay's answering close frame.
                self.closed.wait(self.timeout_s)
        except (OSError, websocket.WebSocketException) as exc:
            self._note(f"hang-up on a closed line ({exc})")
        finally:
            self._let_go(ws)

    def _let_go(self, ws: websocket.WebSocket) -> None:
        """Release the socket now, waking the reader.

        Closing alone would not wake a thread blocked in ``recv`` (the peer would see the line
        go only at the reader's next timeout), and ``ws.abort()`` does nothing once
        ``send_close`` has marked the socket disconnected.
        """
        self._letting_go = True
        if ws.sock is not None:
            with contextlib.suppress(OSError):
                ws.sock.shutdown(socket.SHUT_RDWR)
        ws.shutdown()


# -- where the call goes -------------------------------------------------------------


def target_from_relay(relay_url: str, *, public_url: str | None, stream_secret: str | None,
                      call_sid: str | None = None, ttl_s: int = 300) -> StreamTarget:
    """Dial a relay directly, minting the stream token the webhook would have minted."""
    base = relay_url.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    url = base if base.endswith(STREAM_PATH) else base + STREAM_PATH
    signed = (public_url.rstrip("/") + STREAM_PATH) if public_url else url
    sid = call_sid or new_sid("CA")
    params = {"calledNumber": "+15550100", "callerNumber": "+15550199"}
    if stream_secret:
        params[stream_token.PARAMETER_NAME] = stream_token.mint(
            stream_secret, sid, time.time(), ttl_s, caller_number="+15550199", called_number="+15550100")
    return StreamTarget(url, signed, params, sid, via="relay directly (stream token minted locally)")


def call_form(call_sid: str) -> dict[str, str]:
    """The incoming-call form Twilio posts to the voice webhook (protocols.md 1.5)."""
    return {"AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01", "CallSid": call_sid,
            "CallStatus": "ringing", "Called": "+15550100", "Caller": "+15550199", "Direction": "inbound",
            "From": "+15550199", "To": "+15550100"}


def target_from_webhook(webhook_url: str, *, auth_token: str, public_url: str | None = None,
                        call_sid: str | None = None, timeout_s: float = 10.0) -> StreamTarget:
    """POST a signed incoming-call webhook as Twilio does; stream where the TwiML says."""
    url = webhook_url.rstrip("/")
    if not url.endswith("/twilio/voice"):
        url += "/twilio/voice"
    signed_url = (public_url.rstrip("/") + "/twilio/voice") if public_url else url
    sid = call_sid or new_sid("CA")
    form = call_form(sid)
    signature = RequestValidator(auth_token).compute_signature(signed_url, form)
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={"X-Twilio-Signature": signature,
                 "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        twiml = response.read().decode()
    root = ET.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    if stream is None:
        raise ValueError(f"webhook TwiML has no <Connect><Stream>: {twiml[:300]}")
    stream_url = stream.attrib["url"]
    params = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    return StreamTarget(stream_url, stream_url, params, sid, via=f"webhook {url} (TwiML <Connect><Stream>)")


def print_report(result: CallResult, target: StreamTarget, out: Path | None) -> None:
    """The timeline, as an operator reads it."""
    print(f"call {target.call_sid} -> {target.url}")
    print(f"  via {target.via}")
    for ms, text in result.timeline:
        print(f"  +{ms:>8.1f} ms  {text}")
    heard_s = len(result.heard) / 8000
    print(f"  heard {heard_s:.1f} s of assistant audio in {len(result.media_payloads)} media "
          f"messages; {len(result.marks_echoed)} marks echoed; {len(result.clears_ms)} barge-in(s)")
    if result.first_audio_ms is not None:
        print(f"  time to first audio: {result.first_audio_ms:.0f} ms after connecting")
    for error in result.errors:
        print(f"  problem: {error}")
    if out is not None:
        audio.write_wav_ulaw(out, result.heard)
        print(f"  saved what the caller heard to {out}")


def main(argv: list[str] | None = None) -> int:
    """Command line: one simulated call; exit 0 if the assistant's audio came back."""
    parser = argparse.ArgumentParser(description="Place one simulated Twilio call.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--relay", help="relay base URL (ws://, wss://, http:// or https://)")
    where.add_argument("--webhook", help="webhook base URL: start the call there, as Twilio does")
    parser.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE,
                        help="read secrets and URLs from this file (written by make run)")
    parser.add_argument("--wav", default=str(audio.CALLER_WAV), help="what the caller says")
    parser.add_argument("--out", default="call.wav", help="save what the caller heard here")
    parser.add_argument("--hold", type=float, default=14.0, help="seconds to stay on the line")
    parser.add_argument("--barge-in", action="store_true",
                        help="talk over the greeting instead of waiting for it")
    args = parser.parse_args(argv)

    env = {**(read_env_file(args.env_file) if args.env_file.exists() else {}), **os.environ}
    auth_token = env.get("TWILIO_AUTH_TOKEN")
    if args.webhook or (not args.relay and env.get("WEBHOOK_URL")):
        target = target_from_webhook(args.webhook or env["WEBHOOK_URL"], auth_token=auth_token or "",
                                     public_url=env.get("WEBHOOK_PUBLIC_URL"))
    else:
        relay_url = args.relay or env.get("RELAY_URL") or "ws://127.0.0.1:8080"
        target = target_from_relay(relay_url, public_url=env.get("RELAY_PUBLIC_URL"),
                                   stream_secret=env.get("STREAM_TOKEN_SECRET"))
    caller = SimulatedCaller(target, auth_token=auth_token,
                             caller_audio=audio.read_wav_ulaw(args.wav), hold_s=args.hold,
                             barge_in_after_s=1.0 if args.barge_in else None)
    result = caller.run()
    print_report(result, target, Path(args.out) if args.out else None)
    if result.handshake_status != 101:
        print(f"FAILED: the relay refused the stream (HTTP {result.handshake_status}) "
              f"{result.handshake_body.strip()}")
        return 1
    if result.first_audio_ms is None:
        print("FAILED: no assistant audio came back (dead air)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
