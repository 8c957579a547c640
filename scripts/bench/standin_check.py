"""Does the stand-in model's load mode keep up? It alone, at the bench's rate, measured.

    python -m scripts.bench.standin_check --sessions 300 --seconds 10

Starts the stand-in (``python -m scripts.fakes.openai --load``) in its own process and opens
N Realtime sessions to it from this one, as a relay would: each asks for a response, then
appends a tagged 20 ms frame 50 times a second while the stand-in streams 50 frames a
second back. It prints the stand-in's CPU (% of one core), the frames each way against
what was due, and how late the stand-in's frames arrived. A stand-in that keeps up
delivers every frame both ways with a few ms of lag and leaves headroom on its core;
``make bench`` shares that core with the load generator, so what the stand-in takes here
is what the load generator cannot have.

The sessions on this side use the relay's transport (a cheap client, like the load
generator's), so that this process is not the limit; nothing here judges the relay.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import secrets  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import websocket  # noqa: E402

from relay.transport import WebSocketConnection, client_connection  # noqa: E402
from scripts.bench import stats as bench_stats  # noqa: E402
from scripts.bench.procfs import cpu_seconds  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SESSION_UPDATE = json.dumps({"type": "session.update", "session": {
    "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}},
                                  "output": {"format": {"type": "audio/pcmu"}}}}})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    """Run the check; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--module", default="scripts.fakes.openai", help="the stand-in to run (python -m …)")
    args = parser.parse_args(argv)
    port, key = _free_port(), "sk-check-" + secrets.token_hex(4)
    standin = subprocess.Popen([sys.executable, "-m", args.module, "--load", "--port", str(port), "--api-key", key],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or standin.poll() is not None:
                    raise SystemExit("the stand-in did not start") from None
                time.sleep(0.1)
        print(json.dumps(run(port, key, args.sessions, args.seconds, standin.pid), indent=1))
    finally:
        standin.terminate()
        standin.wait(10)
    return 0


def run(port: int, key: str, sessions: int, seconds: float, standin_pid: int) -> dict[str, object]:
    """Open ``sessions`` sessions, stream both ways for ``seconds``; the figures."""
    received: list[tuple[int, float]] = []  # (sent ns, lag ms) of each delta
    conns: list[WebSocketConnection] = []

    def on_messages(batch: list[str | bytes]) -> None:
        now = time.monotonic_ns()
        for message in batch:
            if isinstance(message, str) and '"delta":"' in message:
                tag = bench_stats.read_tag(message.split('"delta":"', 1)[1][:32])
                if tag is not None:
                    received.append((tag[2], (now - tag[2]) / 1e6))

    for _ in range(sessions):
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime", timeout=10,
                                         header=[f"Authorization: Bearer {key}"], suppress_origin=True)
        sock = ws.sock
        assert sock is not None
        sock.settimeout(None)
        conn = client_connection(sock, max_message_bytes=1 << 20)
        conn.start_reading(on_messages, lambda _error: None)
        conn.send_texts([SESSION_UPDATE, '{"type":"response.create"}'])
        conns.append(conn)
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/reset", method="POST")).read()
    received.clear()
    cpu0, t0 = cpu_seconds(standin_pid), time.monotonic()
    start_ns, sent, slot = time.monotonic_ns(), 0, 0
    next_tick = t0
    while time.monotonic() - t0 < seconds:
        now_ns = time.monotonic_ns()
        for number in range(slot, sessions, bench_stats.SLOTS):
            frame = bench_stats.tagged_frame(number, sent, now_ns)
            conns[number].send_text('{"type":"input_audio_buffer.append","audio":"' + frame + '"}')
            sent += 1
        slot = (slot + 1) % bench_stats.SLOTS
        next_tick += bench_stats.FRAME_S / bench_stats.SLOTS
        gevent.sleep(max(next_tick - time.monotonic(), 0))
    end_ns = time.monotonic_ns()
    window = time.monotonic() - t0
    cpu = cpu_seconds(standin_pid) - cpu0
    gevent.sleep(0.5)  # the last frames in flight
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats?start={start_ns}&end={end_ns}") as answer:
        model = json.loads(answer.read())
    for conn in conns:
        conn.close()
        conn.release()
    lags = sorted(lag for sent_ns, lag in received if start_ns <= sent_ns <= end_ns)
    due = int(sessions * window / bench_stats.FRAME_S)
    return {
        "sessions": sessions, "seconds": round(window, 1),
        "standin_cpu_pct": round(100 * cpu / window, 1),
        "standin_cpu_ms_per_session_s": round(1000 * cpu / (sessions * window), 3),
        "down_frames": {"due": due, "received": len(lags), "sent_by_standin": model["down_sent"]},
        "up_frames": {"sent": sent, "received_by_standin": model["up_received"]},
        "down_lag_ms": {"p50": round(bench_stats.percentile(lags, 0.5), 2),
                        "p99": round(bench_stats.percentile(lags, 0.99), 2)},
        "up_lag_ms_p99": round(bench_stats.percentile(sorted(model["up_latencies_ms"]), 0.99), 2),
    }


if __name__ == "__main__":
    sys.exit(main())
