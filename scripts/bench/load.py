"""The benchmark's load generator: N simulated Twilio calls, lean enough not to be the limit.

Each call does what Twilio does on a live call (a signed upgrade, ``connected``, ``start``
with a valid stream token, 50 ``media`` frames a second, every ``mark`` echoed once the
audio before it has "played"), its messages built by scripts/fakes/twilio_messages.py like
every other caller's, but the work is arranged for throughput: one ticker greenlet sends
every call's frame for the tick (and its due mark echoes) in one write per call, and the
event loop hands each call's replies to a callback. Caller frames carry tags
(scripts/bench/stats.py); received model frames' tags give the model->caller latency.

The one place in scripts/ that reuses the relay's own WebSocket code (relay.transport), for
speed: at hundreds of calls a general-purpose client would cost this core more than the
relay costs its own, and the bench would measure itself. It only carries frames here; the
stand-ins that tests judge the relay by never use it (tests/test_layering.py).

It also measures itself: its own CPU and how late its 20 ms ticks fire. When either is
high, the numbers describe the load generator, not the relay, and the bench says so.

Run by scripts/bench/runner.py as ``python -m scripts.bench.load`` with a JSON config on
stdin; prints one JSON result on stdout.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import msgspec  # noqa: E402
import websocket  # noqa: E402
from gevent.event import Event  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from relay import stream_token  # noqa: E402
from relay.transport import ConnectionClosed, WebSocketConnection, client_connection  # noqa: E402
from scripts.bench import stats as bench_stats  # noqa: E402
from scripts.fakes.twilio_messages import InboundStream, new_sid  # noqa: E402


class _Payload(msgspec.Struct):
    payload: str


class _Name(msgspec.Struct):
    name: str


class _Media(msgspec.Struct, tag_field="event", tag="media"):
    media: _Payload


class _Mark(msgspec.Struct, tag_field="event", tag="mark"):
    mark: _Name


class _Clear(msgspec.Struct, tag_field="event", tag="clear"):
    pass


# What the relay sends a caller, decoded straight into structs (the load generator must
# cost its core less than the relay costs its own).
_decode = msgspec.json.Decoder(_Media | _Mark | _Clear).decode

TICK_S = 0.02


class LoadCall:
    """One simulated call's connection and bookkeeping (read by event-loop callbacks)."""

    def __init__(self, number: int, config: dict[str, Any], signature: str) -> None:
        self.number = number
        self.config = config
        self.signature = signature
        # Fresh SIDs every run: the relay refuses a second stream for a CallSid (replay).
        self.stream = InboundStream(new_sid("CA"))
        self.call_sid = self.stream.call_sid
        self.conn: WebSocketConnection | None = None
        self.seq = 0
        self.sent_ns: list[int] = []
        self.down: list[tuple[int, int, int, float]] = []  # (model call, seq, sent ns, latency ms)
        self.marks: deque[tuple[float, str]] = deque()  # (play-out time, name)
        self.play_cursor = 0.0
        self.started_at = 0.0
        self.first_audio_ms: float | None = None
        self.failed: str | None = None
        self.ended = Event()
        sid = self.stream.stream_sid
        # What the relay sends (relay/twilio_protocol.Outbound), for the hot path.
        self.media_prefix = '{"event":"media","streamSid":"' + sid + '","media":{"payload":"'
        self.mark_prefix = '{"event":"mark","streamSid":"' + sid + '","mark":{"name":"'

    def connect(self) -> None:
        """Signed upgrade (websocket-client does the handshake), then connected + start."""
        ws = websocket.create_connection(
            self.config["url"], timeout=10, suppress_origin=True,
            header=[f"X-Twilio-Signature: {self.signature}"])
        sock = ws.sock
        assert sock is not None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = client_connection(sock, max_message_bytes=1 << 20)
        token = stream_token.mint(self.config["stream_secret"], self.call_sid, time.time(), 300)
        self.started_at = time.monotonic()
        self.conn.start_reading(self.on_messages, self.on_end)
        self.conn.send_texts([self.stream.connected(), self.stream.start({stream_token.PARAMETER_NAME: token})])

    def on_messages(self, messages: list[str | bytes]) -> None:
        """Model audio (latency from its tag) and marks (echoed at play-out), in the hub."""
        now = time.monotonic()
        received = time.monotonic_ns()
        for raw in messages:
            # The hot path, on the relay's own wire format (relay/twilio_protocol.py's
            # Outbound): the tag is the first 32 characters of the audio, the mark's name
            # sits at the end. Anything else is parsed properly.
            if type(raw) is str:
                if raw.startswith(self.media_prefix):
                    start = len(self.media_prefix)
                    self._media(bench_stats.read_tag(raw[start:start + 32]), now, received)
                    continue
                if raw.startswith(self.mark_prefix) and raw.endswith('"}}'):
                    self.marks.append((self.play_cursor, raw[len(self.mark_prefix):-3]))
                    continue
            try:
                message = _decode(raw)
            except msgspec.ValidationError as exc:
                self.failed = self.failed or f"unexpected message from the relay: {exc}"
                continue
            kind = type(message)
            if kind is _Media:
                self._media(bench_stats.read_tag(message.media.payload), now, received)
            elif kind is _Mark:
                self.marks.append((self.play_cursor, message.mark.name))
            else:
                self.play_cursor = now

    def _media(self, tag: tuple[int, int, int] | None, now: float, received: int) -> None:
        if self.first_audio_ms is None:
            self.first_audio_ms = (now - self.started_at) * 1000
        if tag is not None:
            self.down.append((tag[0], tag[1], tag[2], (received - tag[2]) / 1e6))
        self.play_cursor = max(self.play_cursor, now) + TICK_S  # 160 bytes = 20 ms

    def on_end(self, error: object) -> None:
        """The relay closed the stream (or the socket died)."""
        if error is not None:
            self.failed = self.failed or f"framing: {error}"
        self.ended.set()

    def tick(self, now: float, now_ns: int, sending: bool) -> None:
        """Send this tick's frame and the mark echoes now due, in one write."""
        conn = self.conn
        if conn is None or self.ended.is_set():
            return
        texts = []
        if sending:
            texts.append(self.stream.media_b64(bench_stats.tagged_frame(self.number, self.seq, now_ns),
                                               bench_stats.FRAME_BYTES))
            self.sent_ns.append(now_ns)
            self.seq += 1
        marks = self.marks
        while marks and marks[0][0] <= now:
            texts.append(self.stream.mark(marks.popleft()[1]))
        if texts:
            try:
                conn.send_texts(texts)
            except ConnectionClosed as exc:
                self.failed = self.failed or f"send failed: {exc}"

    def hang_up(self) -> None:
        """``stop``, then close, as Twilio does."""
        conn = self.conn
        if conn is None:
            return
        if not conn.close_sent and not conn.broken and not self.ended.is_set():
            conn.send_text(self.stream.stop())
        conn.close(1000)


def run(config: dict[str, Any]) -> dict[str, Any]:
    """Place ``calls`` calls for ``duration_s``; return what was measured."""
    # A full garbage collection over the hundreds of thousands of samples collected here
    # stalls this process for tens of milliseconds, and that would be measured as relay
    # latency. This process lives for one step: leave collection off.
    gc.disable()
    signature = RequestValidator(config["auth_token"]).compute_signature(config["signed_url"], {})
    first = config.get("first_call_number", 0)
    calls = [LoadCall(first + i, config, signature) for i in range(config["calls"])]
    spread = config.get("start_spread_s", 1.0)
    for call in calls:
        try:
            call.connect()
        except Exception as exc:  # a refused or failed call is a result, not a crash
            call.failed = f"connect failed: {exc}"
            call.ended.set()
            continue
        gevent.sleep(spread / max(len(calls), 1))

    usage_start = resource.getrusage(resource.RUSAGE_SELF)
    wall_start = time.monotonic()
    lags: list[float] = []
    next_tick = time.monotonic()
    slot = 0
    by_slot = [[call for call in calls if call.number % bench_stats.SLOTS == s] for s in range(bench_stats.SLOTS)]
    end = wall_start + config["duration_s"]
    window_start_ns = time.monotonic_ns() + int(config.get("warmup_s", 2.0) * 1e9)
    while True:
        now = time.monotonic()
        if now >= end:
            break
        lags.append((now - next_tick) * 1000)
        now_ns = time.monotonic_ns()
        for call in by_slot[slot]:
            call.tick(now, now_ns, sending=True)
        slot = (slot + 1) % bench_stats.SLOTS
        next_tick += TICK_S / bench_stats.SLOTS
        gevent.sleep(max(next_tick - time.monotonic(), 0))
    window_end_ns = time.monotonic_ns() - int(config.get("grace_s", 1.0) * 1e9)
    # Keep echoing marks for the in-flight tail, then hang up.
    tail_end = time.monotonic() + config.get("grace_s", 1.0)
    while time.monotonic() < tail_end:
        now = time.monotonic()
        for call in calls:
            call.tick(now, time.monotonic_ns(), sending=False)
        gevent.sleep(TICK_S)
    usage_end = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - wall_start
    for call in calls:
        call.hang_up()
    deadline = time.monotonic() + 5
    for call in calls:
        call.ended.wait(max(deadline - time.monotonic(), 0))
        if call.conn is not None:
            call.conn.release()

    cpu = (usage_end.ru_utime - usage_start.ru_utime) + (usage_end.ru_stime - usage_start.ru_stime)
    def in_window(sent_ns: int) -> bool:
        return window_start_ns <= sent_ns <= window_end_ns

    down = [(c, s, latency) for call in calls for (c, s, sent, latency) in call.down if in_window(sent)]
    lags_sorted = sorted(lags[int(len(lags) * 0.1):])  # skip the ramp-up ticks
    return {
        "calls": len(calls),
        "failed": sum(1 for call in calls if call.failed or call.first_audio_ms is None),
        "failures": sorted({call.failed for call in calls if call.failed})[:5],
        "window_ns": [window_start_ns, window_end_ns],
        "up_sent": sum(1 for call in calls for sent in call.sent_ns if in_window(sent)),
        "down_latencies_ms": [latency for (_c, _s, latency) in down],
        "down_received": len({(c, s) for (c, s, _latency) in down}),
        "first_audio_ms": [call.first_audio_ms for call in calls if call.first_audio_ms is not None],
        "cpu_pct": round(100 * cpu / wall, 1),
        "lag_p99_ms": round(bench_stats.percentile(lags_sorted, 0.99), 2),
        "lag_max_ms": round(lags_sorted[-1], 2) if lags_sorted else 0.0,
    }


def main() -> int:
    """Read the config (JSON) from stdin, print the result (JSON) on stdout."""
    config = json.loads(sys.stdin.read())
    print(json.dumps(run(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
