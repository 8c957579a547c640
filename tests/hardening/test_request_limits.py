"""What a connection may cost before it is a call: a head deadline, a head size cap, no idle
keep-alive, and a cap on connections waiting for a head.

Against gunicorn as deployed: 200 half-open requests neither hold a call slot nor starve
``/healthz`` (and a call still gets through), and 20 connections each sending 6.4 MB of
header lines they never finish leave the worker's memory (VmRSS) where it was. In process,
with the limits injected small, each limit on its own: a slow or silent head is cut at its
deadline (even one that keeps sending a byte at a time), a head over the caps gets ``431``,
an answered connection is closed (announced), and past the cap of waiting connections the
oldest is let go.
"""

from __future__ import annotations

import http.client
import logging
import os
import runpy
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from relay.request_limits import RequestLimits
from scripts.fakes.openai import StandinModel
from tests.conftest import DIAGNOSTIC_AUTH, ROOT, RunningRelay, launch_gunicorn, relay_env, stop_gunicorn
from tests.hardening.support import (
    FIGURES,
    GoodCall,
    Teardown,
    port_of,
    raw_head,
    send_raw,
    signature_for,
    status_of,
    steady,
    wait_until,
)

HALF_OPEN = 200
BIG_HEADS = 20
PAD_LINE = 64_000  # http.client's longest header line is 65,536 bytes
PAD_LINES = 100  # ... and it takes 100 of them


def _open(url: str, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=5)
    if data:
        sock.sendall(data)
    return sock


def _partial_head(ws_base: str) -> bytes:
    """A signed upgrade's head without the blank line that ends it: the server waits for more."""
    return (f"GET /twilio/realtime HTTP/1.1\r\nHost: {ws_base.split('://')[1]}\r\n"
            f"X-Twilio-Signature: {signature_for(ws_base)}\r\n").encode()


def _answer(url: str, path: str, headers: dict[str, str] | None = None, timeout_s: float = 3.0) -> tuple[int, bytes]:
    """(status, body) of one GET, or fails if none comes within ``timeout_s``."""
    connection = http.client.HTTPConnection("127.0.0.1", port_of(url), timeout=timeout_s)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    except TimeoutError:
        raise AssertionError(f"GET {path} got no answer within {timeout_s} s") from None
    finally:
        connection.close()


def _closed_within(sock: socket.socket, timeout_s: float) -> bool:
    """True once the relay has closed ``sock`` (EOF or reset), reading and dropping any answer."""
    sock.settimeout(timeout_s)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Sockets a test opened: all closed after it, pass or fail."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


# -- under gunicorn, with the production limits ---------------------------------------------------


def test_half_open_requests_hold_no_call_slot_and_never_starve_healthz(
    fresh_model: StandinModel, tmp_path: Path, teardown: Teardown, sockets: list[socket.socket]
) -> None:
    # RELAY_MAX_CALLS=2: gunicorn gives the worker 102 greenlets, fewer than the half-open requests.
    relay = launch_gunicorn(fresh_model.url, tmp_path, RELAY_MAX_CALLS="2")
    teardown(lambda: stop_gunicorn(relay))
    partial = _partial_head(relay.ws_url)
    started = time.monotonic()
    for _ in range(HALF_OPEN):
        sockets.append(_open(relay.http_url, partial))

    assert _answer(relay.http_url, "/healthz") == (200, b'{"status": "ok"}')
    assert _answer(relay.http_url, "/livez") == (200, b"ok\n")
    status, body = _answer(relay.http_url, "/healthz", DIAGNOSTIC_AUTH)
    assert status == 200 and b'"active_calls": 0' in body
    call = GoodCall(relay.ws_url).begin()
    teardown(call.abort)
    call.stream_for(5)
    assert call.hang_up().code == 1000
    call.assert_lossless(fresh_model)
    # The oldest were let go to make room; their lines are rate-limited (a burst, then a trickle).
    evicted = relay.log().count("reason=evicted")
    limits = RequestLimits()
    assert 0 < evicted <= limits.log_burst + 1 + (time.monotonic() - started) * limits.log_per_s, evicted
    FIGURES["half_open_requests"] = (f"{HALF_OPEN} half-open requests at RELAY_MAX_CALLS=2: /healthz and a call "
                                     f"answered at once, 0 call slots held, {evicted} log lines")


def test_megabytes_of_unfinished_headers_leave_the_workers_memory_alone(
    fresh_model: StandinModel, tmp_path: Path, teardown: Teardown, sockets: list[socket.socket]
) -> None:
    relay = launch_gunicorn(fresh_model.url, tmp_path)
    teardown(lambda: stop_gunicorn(relay))
    (worker,) = relay.worker_pids()
    for _ in range(3):  # warm up: whatever a request allocates once is allocated
        assert _answer(relay.http_url, "/twilio/realtime")[0] == 426
    before_kb = steady(lambda: _rss_kb(worker))
    pad = b"a" * PAD_LINE

    def send_big_head(sock: socket.socket) -> None:
        try:
            sock.sendall(b"GET /twilio/realtime HTTP/1.1\r\nHost: x\r\n")
            for number in range(PAD_LINES - 1):  # never the blank line that would end it
                sock.sendall(b"X-Pad-%d: " % number + pad + b"\r\n")
        except OSError:
            return  # the relay stopped reading and closed: as it should

    for _ in range(BIG_HEADS):
        sockets.append(_open(relay.http_url))
    senders = [gevent.spawn(send_big_head, sock) for sock in sockets]
    gevent.joinall(senders, timeout=60)
    assert all(sender.dead for sender in senders)
    during_kb = _rss_kb(worker)  # our ends are all still open
    growth_mb = (during_kb - before_kb) / 1024
    assert growth_mb < 8, f"the worker grew by {growth_mb:.1f} MB ({before_kb} -> {during_kb} kB)"
    assert relay.log().count("reason=headers_too_large status=431") == BIG_HEADS
    assert _answer(relay.http_url, "/healthz") == (200, b'{"status": "ok"}')
    FIGURES["big_heads"] = (f"{BIG_HEADS} connections x {PAD_LINES * PAD_LINE / 1e6:.1f} MB of unfinished headers: "
                            f"431 each, worker RSS {before_kb / 1024:.0f} -> {during_kb / 1024:.0f} MB")


# -- each limit on its own, injected small ------------------------------------------------------------


@pytest.fixture
def limited(make_relay: Any, fresh_model: StandinModel) -> Any:
    """``limited(**limits)``: an in-process relay with RequestLimits changed."""
    def make(**changes: Any) -> RunningRelay:
        return make_relay(fresh_model.url, request_limits=RequestLimits(diagnostic_interval_s=0.0, **changes))  # type: ignore[no-any-return]
    return make


def test_a_head_not_finished_by_its_deadline_is_cut_even_one_byte_at_a_time(
    limited: Any, sockets: list[socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    relay = limited(header_timeout_s=0.3)
    silent = _open(relay.http_url)
    sockets.append(silent)
    dribbler = _open(relay.http_url)
    sockets.append(dribbler)
    started = time.monotonic()

    def dribble() -> None:
        for byte in _partial_head(relay.ws_url):  # a byte every 20 ms: always active, never done
            try:
                dribbler.send(bytes([byte]))
            except OSError:
                return
            gevent.sleep(0.02)

    sender = gevent.spawn(dribble)
    assert _closed_within(silent, 3) and _closed_within(dribbler, 3)
    assert time.monotonic() - started < 2.5
    sender.kill()
    assert caplog.text.count("http.request reason=header_timeout status=408") == 2
    assert relay.app.counter.total() == 0 and len(relay.app.pending_heads) == 0


@pytest.mark.parametrize("kind", ["bytes", "lines"])
def test_a_head_over_the_caps_gets_431(limited: Any, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    relay = limited()
    if kind == "bytes":  # a few lines gevent alone would take (each under 64 KiB)
        extra = {f"X_Pad_{n}": "a" * 6000 for n in range(3)}
    else:  # small lines, one more than the cap: gevent alone printed a traceback for these
        extra = {f"X_H_{n}": "v" for n in range(RequestLimits().max_header_lines)}
    answer = send_raw(relay.http_url, raw_head(relay.ws_url, **extra))
    assert status_of(answer) == 431 and b"Connection: close" in answer
    assert "http.request reason=headers_too_large status=431" in caplog.text
    assert relay.app.counter.total() == 0
    # A head just under the caps is read as usual.
    assert status_of(send_raw(relay.http_url, raw_head(relay.ws_url, signed=False))) == 403


def test_an_answered_connection_is_closed_and_says_so(limited: Any) -> None:
    relay = limited()
    with _open(relay.http_url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") as sock:
        assert _closed_within(sock, 3), "the relay kept an answered connection open"
    answer = send_raw(relay.http_url, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(answer) == 200 and b"Connection: close\r\n" in answer


def test_with_keep_alive_allowed_an_idle_connection_is_closed_after_its_timeout(limited: Any) -> None:
    relay = limited(keepalive_idle_s=0.3)
    with _open(relay.http_url) as sock:
        for _ in range(2):  # two requests on one connection
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"\r\n\r\nok\n"):
                chunk = sock.recv(65536)
                assert chunk, f"closed after {answer!r}"
                answer += chunk
            assert b"Connection: close" not in answer
        started = time.monotonic()
        assert _closed_within(sock, 3)
        assert 0.2 < time.monotonic() - started < 2.5


def test_past_the_cap_of_waiting_connections_the_oldest_are_let_go(
    limited: Any, sockets: list[socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    relay = limited(max_pending_heads=4)
    for _ in range(10):
        sockets.append(_open(relay.http_url, b"GET / HTTP/1.1\r\n"))
    assert wait_until(lambda: len(relay.app.pending_heads) == 4, 3)
    assert all(_closed_within(sock, 3) for sock in sockets[:6])
    assert not any(_closed_within(sock, 0.2) for sock in sockets[6:])
    assert _answer(relay.http_url, "/healthz") == (200, b'{"status": "ok"}')
    assert caplog.text.count("reason=evicted status=408") == 7  # the six, then one for /healthz's room


def test_waiting_heads_can_never_take_the_greenlets_calls_and_probes_need() -> None:
    # gunicorn.conf.py gives each worker RELAY_MAX_CALLS greenlets plus some spare; the cap on
    # connections waiting for a head must stay below the spare, or slow heads could fill the pool.
    os.environ.update(relay_env("ws://127.0.0.1:9/v1/realtime", "ws://127.0.0.1:9"))
    settings = runpy.run_path(str(ROOT / "relay" / "gunicorn.conf.py"))
    spare = settings["worker_connections"] - settings["_config"].max_calls
    assert RequestLimits().max_pending_heads < spare
