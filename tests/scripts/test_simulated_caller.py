"""The simulated caller (scripts/call.py) as the scripts run it: in real threads, not gevent.

The rest of the suite runs monkey-patched, where closing a socket wakes whoever waits on it;
an operator's verify_relay does not. Here the caller runs in a subprocess against a relay
that takes the upgrade and then never says anything: no audio, no answer to the close.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import gevent
import pytest
from websockets.utils import accept_key

from tests.conftest import ROOT

HOLD_S, TIMEOUT_S = 0.2, 2.0

CALLER = f"""
import json, time
from scripts.fakes.twilio_caller import SimulatedCaller
from scripts.fakes.twilio_webhook import StreamTarget
url = "ws://127.0.0.1:%d/twilio/realtime"
caller = SimulatedCaller(StreamTarget(url, url, {{}}, "CA" + "1" * 32), auth_token=None, caller_audio=b"",
                         wait_for_audio=False, hold_s={HOLD_S}, timeout_s={TIMEOUT_S})
started = time.monotonic()
result = caller.run()
print(json.dumps({{"run_s": time.monotonic() - started, "errors": result.errors,
                  "close_code": result.close_code, "relay_hung_up": result.relay_hung_up,
                  "timeline": [text for _, text in result.timeline]}}))
"""


def _mute(conn: socket.socket) -> None:
    """Answer the upgrade, then read whatever comes and never answer it."""
    with conn:
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = accept_key(key.decode()).encode()
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        while conn.recv(65536):
            pass


@pytest.fixture
def mute_relay() -> Iterator[int]:
    """A port where a WebSocket server accepts one call and stays silent."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def serve() -> None:
        conn, _ = listener.accept()
        _mute(conn)

    server = gevent.spawn(serve)
    yield port
    server.kill()
    listener.close()


def test_a_caller_whose_close_is_never_answered_lets_go_at_once(mute_relay: int) -> None:
    """Hold, hang up, wait TIMEOUT_S for the relay's close, then let go: not one more timeout.

    Before, the reader thread blocked in recv kept the socket until its own timeout, and then
    reported the caller's own release as "receive failed: Bad file descriptor".
    """
    done = subprocess.run([sys.executable, "-c", CALLER % mute_relay], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["errors"] == []
    assert not result["relay_hung_up"] and result["close_code"] is None
    assert result["timeline"][-2:] == ["caller hangs up (stop)", "caller let go of the line (no close from the relay)"]
    # hold + the wait for the close (2.2 s); the old code waited for the reader's next timeout (4 s).
    assert result["run_s"] < HOLD_S + TIMEOUT_S + 1.0, result
