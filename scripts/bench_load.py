"""The benchmark's load generator: N simulated Twilio calls, lean enough not to be the limit.

Each call does what Twilio does on a live call (a signed upgrade, ``connected``, ``start``
with a valid stream token, 50 ``media`` frames a second, every ``mark`` echoed once the
audio before it has "played"), but the work is arranged for throughput: one ticker
greenlet sends every call's frame for the tick (and its due mark echoes) in one write per
call, frames are built from a precomputed template, and one reader greenlet per call
parses what comes back. Caller frames carry tags (scripts/bench_stats.py); received model
frames' tags give the model->caller latency.

It also measures itself: its own CPU and how late its 20 ms ticks fire. When either is
high, the numbers describe the load generator, not the relay, and the bench says so.

Run by scripts/bench_relay.py as ``python -m scripts.bench_load`` with a JSON config on
stdin; prints one JSON result on stdout.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gevent  # noqa: E402
import websocket  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from relay import stream_token  # noqa: E402
from relay.ws_frames import OP_TEXT, FrameDecoder, encode_frame  # noqa: E402
from scripts import bench_stats  # noqa: E402

try:
    from orjson import loads
except ImportError:  # pragma: no cover
    from json import loads  # type: ignore[assignment]

TICK_S = 0.02


class LoadCall:
    """One simulated call's socket and bookkeeping."""

    def __init__(self, number: int, config: dict[str, Any], signature: str) -> None:
        self.number = number
        self.config = config
        self.signature = signature
        # Fresh SIDs every run: the relay refuses a second stream for a CallSid (replay).
        self.call_sid = "CA" + os.urandom(16).hex()
        self.stream_sid = "MZ" + os.urandom(16).hex()
        self.sock: socket.socket | None = None
        self.decoder = FrameDecoder(expect_masked=False, max_message_bytes=1 << 20)
        self.masks = os.urandom(4096)
        self.mask_at = 0
        self.seq = 0
        self.sent_ns: list[int] = []
        self.down: list[tuple[int, int, int, float]] = []  # (model call, seq, sent ns, latency ms)
        self.marks: deque[tuple[float, str]] = deque()  # (play-out time, name)
        self.play_cursor = 0.0
        self.started_at = 0.0
        self.first_audio_ms: float | None = None
        self.failed: str | None = None
        self.closed = False
        self.prefix = ('{"event":"media","streamSid":"%s","media":{"track":"inbound","payload":"'
                       % self.stream_sid)

    def _mask(self) -> bytes:
        at = self.mask_at
        if at >= 4096:
            self.masks, at = os.urandom(4096), 0
        self.mask_at = at + 4
        return self.masks[at : at + 4]

    def frame(self, text: str) -> bytes:
        """A masked client text frame."""
        return encode_frame(OP_TEXT, text.encode(), self._mask())

    def connect(self) -> None:
        """Signed upgrade (websocket-client does the handshake), then connected + start."""
        ws = websocket.create_connection(
            self.config["url"], timeout=10, suppress_origin=True,
            header=[f"X-Twilio-Signature: {self.signature}"])
        self.sock = ws.sock
        assert self.sock is not None
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        token = stream_token.mint(self.config["stream_secret"], self.call_sid, time.time(), 300)
        start = {"event": "start", "sequenceNumber": "1", "streamSid": self.stream_sid,
                 "start": {"accountSid": "AC" + "0" * 32, "streamSid": self.stream_sid,
                           "callSid": self.call_sid, "tracks": ["inbound"],
                           "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                           "customParameters": {stream_token.PARAMETER_NAME: token}}}
        self.started_at = time.monotonic()
        self.sock.sendall(self.frame('{"event":"connected","protocol":"Call","version":"1.0.0"}')
                          + self.frame(json.dumps(start)))

    def read(self) -> None:
        """Reader greenlet: model audio (latency from its tag) and marks (echoed on play-out)."""
        sock = self.sock
        assert sock is not None
        now_ns = time.monotonic_ns
        monotonic = time.monotonic
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            for opcode, payload in self.decoder.feed(data):
                if opcode != OP_TEXT:
                    if opcode == 0x8:
                        self.closed = True
                    continue
                message = loads(payload)  # type: ignore[arg-type]
                event = message.get("event")
                if event == "media":
                    received = now_ns()
                    tag = bench_stats.read_tag(message["media"]["payload"])
                    now = monotonic()
                    if self.first_audio_ms is None:
                        self.first_audio_ms = (now - self.started_at) * 1000
                    if tag is not None:
                        self.down.append((tag[0], tag[1], tag[2], (received - tag[2]) / 1e6))
                    self.play_cursor = max(self.play_cursor, now) + TICK_S  # 160 bytes = 20 ms
                elif event == "mark":
                    self.marks.append((self.play_cursor, message["mark"]["name"]))
                elif event == "clear":
                    self.play_cursor = monotonic()
        self.closed = True

    def tick(self, now: float, now_ns: int, sending: bool) -> None:
        """Send this tick's frame and the mark echoes now due, in one write."""
        sock = self.sock
        if sock is None or self.closed:
            return
        parts = []
        if sending:
            payload = bench_stats.tagged_frame(self.number, self.seq, now_ns)
            parts.append(self.frame(self.prefix + payload + '"}}'))
            self.sent_ns.append(now_ns)
            self.seq += 1
        marks = self.marks
        while marks and marks[0][0] <= now:
            name = marks.popleft()[1]
            parts.append(self.frame('{"event":"mark","streamSid":"%s","mark":{"name":"%s"}}'
                                    % (self.stream_sid, name)))
        if parts:
            try:
                sock.sendall(b"".join(parts))
            except OSError as exc:
                self.failed = self.failed or f"send failed: {exc}"
                self.closed = True

    def hang_up(self) -> None:
        """``stop``, then close."""
        sock = self.sock
        if sock is None:
            return
        try:
            if not self.closed:
                sock.sendall(self.frame(
                    '{"event":"stop","streamSid":"%s","stop":{"callSid":"%s"}}' % (self.stream_sid, self.call_sid)))
                sock.sendall(encode_frame(0x8, (1000).to_bytes(2, "big"), self._mask()))
        except OSError:
            self.closed = True
        finally:
            gevent.sleep(0.05)
            sock.close()


def run(config: dict[str, Any]) -> dict[str, Any]:
    """Place ``calls`` calls for ``duration_s``; return what was measured."""
    signature = RequestValidator(config["auth_token"]).compute_signature(config["signed_url"], {})
    first = config.get("first_call_number", 0)
    calls = [LoadCall(first + i, config, signature) for i in range(config["calls"])]
    spread = config.get("start_spread_s", 1.0)
    readers = []
    for index, call in enumerate(calls):
        try:
            call.connect()
        except Exception as exc:  # a refused or failed call is a result, not a crash
            call.failed = f"connect failed: {exc}"
            continue
        readers.append(gevent.spawn(call.read))
        gevent.sleep(spread / max(len(calls), 1))

    usage_start = resource.getrusage(resource.RUSAGE_SELF)
    wall_start = time.monotonic()
    lags: list[float] = []
    next_tick = time.monotonic()
    end = wall_start + config["duration_s"]
    window_start_ns = time.monotonic_ns() + int(config.get("warmup_s", 2.0) * 1e9)
    while True:
        now = time.monotonic()
        if now >= end:
            break
        lags.append((now - next_tick) * 1000)
        now_ns = time.monotonic_ns()
        for call in calls:
            call.tick(now, now_ns, sending=True)
        next_tick += TICK_S
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
    gevent.joinall(readers, timeout=5)

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
