"""Tools for the hardening suite: Twilio's side spoken by hand, leak counters, log watching.

Everything here acts from outside the relay, as its peers do: callers speak Twilio's side
over websocket-client (or raw frames from ``relay.ws_frames.encode_frame`` when the point
is to send what websocket-client would refuse to), their messages built by ``InboundStream``
(scripts/fakes/twilio_messages.py) like every other caller's, the stand-in model records what the
relay sent upstream, and the relay's health is read from its own endpoints, its log and
``/proc`` (an in-process relay's call counter and registry are also read, never changed).
No relay code is patched.
"""

from __future__ import annotations

import base64
import datetime
import gc
import json
import os
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import gevent
import greenlet
import websocket
from gevent.event import Event
from twilio.request_validator import RequestValidator

from relay import stream_token
from scripts.fakes.openai import SessionRecord, StandinModel
from scripts.fakes.twilio_messages import InboundStream, new_sid
from tests.conftest import AUTH_TOKEN, STREAM_SECRET
from tests.helpers import wait_until

STREAM_PATH = "/twilio/realtime"
# The ``teardown`` fixture (conftest): ``teardown(fn)`` runs ``fn`` after the test.
Teardown = Callable[[Callable[[], None]], None]
# The stand-in's greeting in this suite: 600 ms (six 100 ms deltas; mid-call faults strike
# at the fourth), distinct bytes, so "every delta came back" is checked on content.
SHORT_GREETING = bytes((i * 7 + 3) % 256 for i in range(4800))
FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law: one Twilio media frame

# Figures for the README's "Reliability" section, printed at the end of the run
# (tests/hardening/conftest.py): name -> value.
FIGURES: dict[str, object] = {}


# -- Twilio's side ------------------------------------------------------------------------


def quiet_frame() -> bytes:
    """20 ms of distinct near-silent mu-law (0xF0-0xFF): unique content, never trips the VAD."""
    return bytes(0xF0 | (b & 0x0F) for b in os.urandom(FRAME_BYTES))


def b64(data: bytes) -> str:
    """Base64 as Twilio sends it."""
    return base64.b64encode(data).decode("ascii")


def mint(call_sid: str, *, secret: str = STREAM_SECRET, now: float | None = None, ttl_s: int = 300) -> str:
    """A stream token as the webhook mints it."""
    return stream_token.mint(secret, call_sid, time.time() if now is None else now, ttl_s)


def new_stream() -> InboundStream:
    """A fresh call's stream (new CallSid and StreamSid)."""
    return InboundStream(new_sid("CA"))


def start_with_token(stream: InboundStream, params: dict[str, str] | None = None) -> str:
    """Twilio's ``start``; ``params`` are the TwiML ``<Parameter>``s (None: a valid token)."""
    if params is None:
        params = {stream_token.PARAMETER_NAME: mint(stream.call_sid)}
    return stream.start(params)


def signature_for(ws_base: str, auth_token: str = AUTH_TOKEN) -> str:
    """X-Twilio-Signature for the relay's stream URL (what Twilio signs: no query, no params)."""
    return str(RequestValidator(auth_token).compute_signature(ws_base + STREAM_PATH, {}))


def connect(ws_base: str, *, signature: str | None = "valid", headers: list[str] | None = None,
            timeout_s: float = 5.0) -> websocket.WebSocket:
    """Open a stream to the relay; ``signature="valid"`` signs it as Twilio would.

    Raises websocket.WebSocketBadStatusException when the upgrade is refused.
    """
    header = list(headers or [])
    if signature == "valid":
        header.append(f"X-Twilio-Signature: {signature_for(ws_base)}")
    elif signature is not None:
        header.append(f"X-Twilio-Signature: {signature}")
    return websocket.create_connection(ws_base + STREAM_PATH, timeout=timeout_s, header=header,
                                       suppress_origin=True)


def refusal(ws_base: str, **kwargs: object) -> tuple[int, str]:
    """(HTTP status, body) of an upgrade the relay must refuse; fails if it is accepted."""
    try:
        ws = connect(ws_base, **kwargs)  # type: ignore[arg-type]
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code, (exc.resp_body or b"").decode("utf-8", "replace")
    ws.shutdown()
    raise AssertionError("the relay accepted an upgrade it should have refused")


# -- requests written by hand (websocket-client will not send a broken handshake) ---------------


def raw_head(ws_base: str, *, method: str = "GET", path: str = STREAM_PATH, protocol: str = "HTTP/1.1",
             signed: bool = True, **fields: str | None) -> bytes:
    """An upgrade request's head as Twilio sends it, with ``fields`` changed.

    Header names are spelt with underscores (``Sec_WebSocket_Key="..."``); None leaves one out.
    Encoded as latin-1, so a test can put any byte in a value.
    """
    host = ws_base.split("://", 1)[1]
    headers: dict[str, str] = {"Host": host, "Upgrade": "websocket", "Connection": "Upgrade",
                               "Sec-WebSocket-Version": "13",
                               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    if signed:
        headers["X-Twilio-Signature"] = signature_for(ws_base)
    for name, value in fields.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    lines = [f"{method} {path} {protocol}"] + [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def port_of(url: str) -> int:
    """The port of an http:// or ws:// loopback URL."""
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def send_raw(url: str, data: bytes, *, then: str = "read", timeout_s: float = 5.0) -> bytes:
    """Send ``data`` on a new connection to ``url``'s port, then:

    ``read``: everything the relay answers, until it closes the connection (fails on a timeout);
    ``close``: close at once without reading (a FIN); ``reset``: abort at once (an RST).
    """
    sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=timeout_s)
    try:
        sock.sendall(data)
        if then == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        if then == "close":
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer (0 if there was none)."""
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


@dataclass
class Closed:
    """How the relay ended a stream, as the caller saw it."""

    code: int | None  # None: the socket went without a close frame
    reason: str
    at: float  # time.monotonic() when the caller saw it
    messages: int  # data messages received before it
    wall: float = field(default_factory=time.time)  # the same moment, as Unix time (logs use it)


def closed_by(data: bytes, messages: int) -> Closed:
    """A close frame's payload, read now."""
    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
    return Closed(code, data[2:].decode("utf-8", "replace"), time.monotonic(), messages)


def await_close(ws: websocket.WebSocket, timeout_s: float) -> Closed:
    """Read (and drop) everything until the relay closes the stream; fails on a timeout."""
    ws.settimeout(timeout_s)
    count = 0
    try:
        while True:
            # Frame by frame: recv_data() would answer the close itself, and lose the code
            # if the relay has already shut its end.
            frame = ws.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                return closed_by(frame.data, count)
            count += frame.opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY)
    except websocket.WebSocketTimeoutException:
        raise AssertionError(f"the relay did not close the stream within {timeout_s} s") from None
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return Closed(None, "", time.monotonic(), count)
    finally:
        ws.shutdown()


# -- a well-behaved call --------------------------------------------------------------------


class GoodCall:
    """A well-behaved Twilio call, the control group of every abuse test.

    Once the assistant's first audio arrives (the session is ready: earlier frames are
    dropped by design), it streams distinct quiet frames at ``pace_s`` until told to hang
    up, echoes every mark at once, and hangs up with ``stop`` and a close frame.
    ``assert_lossless`` then checks, byte for byte, that the stand-in received every frame
    the call sent and the call received every delta the stand-in sent.
    """

    def __init__(self, ws_base: str, *, call_sid: str | None = None, params: dict[str, str] | None = None,
                 pace_s: float = 0.02) -> None:
        self.ws_base = ws_base
        self.stream = InboundStream(call_sid or new_sid("CA"))
        self.call_sid = self.stream.call_sid
        self.stream_sid = self.stream.stream_sid
        self.params = params
        self.pace_s = pace_s
        self.sent: list[str] = []
        self.received: list[str] = []
        self.marks_echoed = 0
        self.close: Closed | None = None
        self.first_audio = Event()
        self.closed = Event()
        self._stop = Event()
        self.heard_bytes = 0
        self.started_at = 0.0  # when ``start`` went out
        self.gone_at = 0.0  # when the caller vanished (drop, close_without_stop)
        self._ws: websocket.WebSocket | None = None
        self._greenlets: list[gevent.Greenlet] = []

    def begin(self) -> GoodCall:
        """Connect, send ``connected`` and ``start``, start listening and streaming."""
        self._ws = connect(self.ws_base)
        self._ws.settimeout(None)
        self._ws.send(self.stream.connected())
        self._ws.send(start_with_token(self.stream, self.params))
        self.started_at = time.monotonic()
        self._greenlets = [gevent.spawn(self._read), gevent.spawn(self._stream)]
        return self

    def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        while True:
            try:
                frame = ws.recv_frame()
            except (websocket.WebSocketException, OSError):
                self.close = Closed(None, "", time.monotonic(), len(self.received))
                break
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                self.close = closed_by(frame.data, len(self.received))
                break
            message = json.loads(frame.data)
            if message.get("event") == "media":
                payload = message["media"]["payload"]
                self.received.append(payload)
                self.heard_bytes += len(base64.b64decode(payload))
                self.first_audio.set()
            elif message.get("event") == "mark":
                try:
                    ws.send(self.stream.mark(message["mark"]["name"]))
                except (websocket.WebSocketException, OSError):
                    continue
                self.marks_echoed += 1
        self.closed.set()

    def _stream(self) -> None:
        ws = self._ws
        assert ws is not None
        gevent.wait([self.first_audio, self.closed, self._stop], timeout=10, count=1)
        while not self._stop.is_set() and not self.closed.is_set():
            payload = b64(quiet_frame())
            try:
                ws.send(self.stream.media_b64(payload, FRAME_BYTES))
            except (websocket.WebSocketException, OSError):
                return
            self.sent.append(payload)
            self._stop.wait(self.pace_s)

    def stream_for(self, frames: int, timeout_s: float = 10.0) -> None:
        """Wait until at least ``frames`` frames have gone out."""
        assert wait_until(lambda: len(self.sent) >= frames or self.closed.is_set(), timeout_s), (
            f"only {len(self.sent)} frames sent in {timeout_s} s")

    def hang_up(self, timeout_s: float = 5.0) -> Closed:
        """``stop``, then a close frame, as Twilio hangs up; the relay's close as seen."""
        # Let the greeting arrive in full first (SHORT_GREETING: 75 ms at the suite's 8x): a
        # delta the model sends after the hang-up is not lost, it is never played.
        if self.first_audio.is_set():
            wait_until(lambda: self.heard_bytes >= len(SHORT_GREETING) or self.closed.is_set(), timeout_s)
        ws = self._stop_sending(timeout_s)
        if not self.closed.is_set():
            try:
                ws.send(self.stream.stop())
                ws.send_close()
            except (websocket.WebSocketException, OSError):
                pass  # the relay hung up meanwhile; its close is what we report
            self.closed.wait(timeout_s)
        ws.shutdown()
        gevent.joinall(self._greenlets, timeout=timeout_s)
        assert self.close is not None, "the relay never answered the hang-up"
        return self.close

    def drop(self) -> None:
        """Vanish the way a crashed edge would: no ``stop``, no close frame, the socket just goes."""
        ws = self._stop_sending()
        self.gone_at = time.monotonic()
        ws.shutdown()
        gevent.joinall(self._greenlets, timeout=5)

    def close_without_stop(self) -> None:
        """Stop streaming and send a close frame, with no ``stop`` before it."""
        ws = self._stop_sending()
        self.gone_at = time.monotonic()
        ws.send_close()

    def _stop_sending(self, timeout_s: float = 5.0) -> websocket.WebSocket:
        """Stop the audio sender and wait for it; the socket, still open."""
        ws = self._ws
        assert ws is not None
        self._stop.set()
        self._greenlets[1].join(timeout_s)
        return ws

    def abort(self) -> None:
        """Let go of everything, whatever state the call is in (test teardown)."""
        self._stop.set()
        if self._ws is not None:
            self._ws.shutdown()
        gevent.killall(self._greenlets, timeout=5)

    def session(self, standin: StandinModel) -> SessionRecord:
        """The stand-in session this call's audio went to."""
        assert self.sent, "the call sent no audio"
        for record in standin.sessions:
            if self.sent[0] in record.appended:
                return record
        raise AssertionError("no stand-in session received this call's first frame")

    def assert_lossless(self, standin: StandinModel, timeout_s: float = 3.0) -> SessionRecord:
        """Every frame sent reached the model, every delta came back, each in order, unchanged."""
        assert self.close is not None and self.close.code == 1000, f"call ended with {self.close}"
        assert len(self.sent) >= 3, f"only {len(self.sent)} frames were sent"
        record = self.session(standin)
        assert wait_until(lambda: record.closed_at is not None, timeout_s), "the OpenAI socket stayed open"
        assert record.appended == self.sent, (
            f"{len(self.sent)} frames sent, {len(record.appended)} appended upstream")
        assert self.received == record.deltas_sent, (
            f"{len(record.deltas_sent)} deltas sent by the model, {len(self.received)} heard")
        assert self.marks_echoed == len(self.received)
        return record


# -- leaks --------------------------------------------------------------------------------


def fd_count(pid: int | str = "self") -> int:
    """Open file descriptors of a process (``self``: this one)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _root(glet: greenlet.greenlet) -> greenlet.greenlet:
    while glet.parent is not None:
        glet = glet.parent
    return glet


def greenlet_count() -> int:
    """Greenlets alive in this process's main thread (running or suspended), after a full collection.

    gevent's resolver runs getaddrinfo in a pool of native threads that come and go on their
    own schedule, each with greenlets of its own: those are not counted.
    """
    gc.collect()
    main = _root(greenlet.getcurrent())
    return sum(1 for obj in gc.get_objects()
               if isinstance(obj, greenlet.greenlet) and not obj.dead and _root(obj) is main)


def settle(measure: Callable[[], int], target: int, timeout_s: float = 5.0) -> int:
    """Poll ``measure`` until it is back to ``target`` (or below); its last value."""
    value = measure()
    deadline = time.monotonic() + timeout_s
    while value > target and time.monotonic() < deadline:
        gevent.sleep(0.05)
        value = measure()
    return value


T = TypeVar("T")


def steady(measure: Callable[[], T], quiet_s: float = 0.4, timeout_s: float = 5.0) -> T:
    """``measure`` once it has stopped changing for ``quiet_s`` (an idle count, not a busy one)."""
    value, since = measure(), time.monotonic()
    deadline = since + timeout_s
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        gevent.sleep(0.05)
        now = measure()
        if now != value:
            value, since = now, time.monotonic()
    return value


class LeakCheck:
    """Descriptors and greenlets of this process, before and after: must come back."""

    def __init__(self) -> None:
        # Idle counts: nothing of the last test still closing.
        self.fds_before, self.greenlets_before = steady(lambda: (fd_count(), greenlet_count()))
        self.fds_after: int | None = None
        self.greenlets_after: int | None = None

    def assert_back(self, timeout_s: float = 5.0) -> None:
        """Fails unless descriptors and greenlets return to their counts from before."""
        self.fds_after = settle(fd_count, self.fds_before, timeout_s)
        self.greenlets_after = settle(greenlet_count, self.greenlets_before, timeout_s)
        assert self.fds_after <= self.fds_before, f"fds {self.fds_before} -> {self.fds_after}"
        assert self.greenlets_after <= self.greenlets_before, (
            f"greenlets {self.greenlets_before} -> {self.greenlets_after}")


# -- logs -------------------------------------------------------------------------------------


class LogWatch:
    """The part of a log written after this object was made."""

    def __init__(self, read: Callable[[], str]) -> None:
        self._read = read
        self._offset = len(read())

    def text(self) -> str:
        """Everything logged since."""
        return self._read()[self._offset:]

    def wait_for(self, pattern: str, timeout_s: float = 3.0) -> str:
        """The first new line matching the regex ``pattern``; fails if none comes in time."""
        regex = re.compile(pattern)
        found: list[str] = []

        def check() -> bool:
            found[:] = [line for line in self.text().splitlines() if regex.search(line)]
            return bool(found)

        assert wait_until(check, timeout_s, 0.02), f"no log line matching {pattern!r}; new lines:\n{self.text()}"
        return found[0]


def line_time(line: str) -> float:
    """The Unix time a relay log line was written (relay/log.py: ISO 8601 UTC, milliseconds)."""
    stamp = line.split(" ", 1)[0]
    moment = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def monotonic_to_wall(moment: float) -> float:
    """A time.monotonic() reading as Unix time."""
    return time.time() - (time.monotonic() - moment)
