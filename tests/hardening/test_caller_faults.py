"""Caller faults: a Twilio side that vanishes, and a thousand short calls, some of them cut.

- However and whenever the caller goes (no ``stop``, no close frame, before or during the
  upstream handshake, while the assistant speaks), the Realtime socket is closed within
  1 s: an open Realtime session is billed by the minute.
- After 1,000 short calls, some hung up properly and some dropped at every stage, the
  relay is back where it started: the gunicorn worker's open descriptors
  (/proc/<pid>/fd), and, for a relay in this process, its greenlets and descriptors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gevent.pool import Pool

from scripts import audio
from scripts.fakes.openai import Behaviour, StandinModel
from tests.conftest import DIAGNOSTIC_AUTH, GunicornRelay
from tests.hardening.support import (
    FIGURES,
    GoodCall,
    LogWatch,
    Teardown,
    await_close,
    connect,
    fd_count,
    greenlet_count,
    new_stream,
    quiet_frame,
    settle,
    start_with_token,
    steady,
    wait_until,
)
from tests.helpers import get_json

SHORT_CALLS = 1000
CONCURRENCY = 20


# -- a caller that vanishes --------------------------------------------------------------------


def _vanish_mid_greeting(call: GoodCall) -> None:
    assert call.first_audio.wait(5)
    call.drop()


def _vanish_mid_stream(call: GoodCall) -> None:
    call.stream_for(10)
    call.drop()


def _close_frame_without_stop(call: GoodCall) -> None:
    call.stream_for(5)
    call.close_without_stop()


# 16 s of greeting, 2 s at the stand-in's 8x: still streaming when the caller vanishes.
LONG_GREETING = bytes((i * 5 + 1) % 256 for i in range(16_000 * audio.BYTES_PER_MS))

WAYS: dict[str, tuple[str, Callable[[GoodCall], None]]] = {
    "dropped_while_the_assistant_speaks": (Behaviour.NORMAL, _vanish_mid_greeting),
    "dropped_while_talking": (Behaviour.NORMAL, _vanish_mid_stream),
    "close_frame_without_stop": (Behaviour.NORMAL, _close_frame_without_stop),
    "dropped_before_session_ready": (Behaviour.NEVER_UPDATE, lambda call: call.drop()),
    "dropped_during_upstream_handshake": (Behaviour.HANG_HANDSHAKE, lambda call: call.drop()),
}


@pytest.mark.parametrize("way", list(WAYS))
def test_a_vanished_caller_closes_the_openai_socket_within_a_second(
    way: str, gunicorn: GunicornRelay, normal_model: StandinModel, teardown: Teardown
) -> None:
    relay = gunicorn
    behaviour, vanish = WAYS[way]
    normal_model.behaviour = behaviour
    speaking = way == "dropped_while_the_assistant_speaks"
    if speaking:
        normal_model.greeting_audio = LONG_GREETING  # the normal_model fixture puts the short one back
    watch = LogWatch(relay.log)
    sessions = len(normal_model.sessions)
    call = GoodCall(relay.ws_url).begin()
    teardown(call.abort)
    if behaviour == Behaviour.HANG_HANDSHAKE:  # the relay's upgrade is stuck in the stand-in
        assert wait_until(lambda: normal_model.hanging == 1, 3)
    else:
        assert wait_until(lambda: len(normal_model.sessions) > sessions, 3)
    vanish(call)
    gone = call.gone_at
    if behaviour == Behaviour.HANG_HANDSHAKE:  # no session: the stand-in sees the upgrade abandoned
        # Within half a second of the caller: well before the relay's own 1 s connect timeout
        # (counted from before the hang was seen) would let go of it anyway.
        assert wait_until(lambda: normal_model.hanging == 0, 0.5), "the relay kept the half-open upgrade"
    else:
        record = normal_model.sessions[-1]
        assert wait_until(lambda: record.closed_at is not None, 2)
        assert record.closed_at is not None and record.closed_at - gone < 1.0, (
            f"the OpenAI socket closed {record.closed_at - gone:.2f} s after the caller vanished")
        if speaking:  # the relay let go mid-response: the rest of the greeting was never generated
            deltas = -(-len(LONG_GREETING) // (normal_model.delta_ms * audio.BYTES_PER_MS))
            assert 0 < len(record.deltas_sent) < deltas, (len(record.deltas_sent), deltas)
    watch.wait_for(r"call\.ended .*reason=twilio_closed")
    FIGURES.setdefault("caller_faults_survived", [])
    FIGURES["caller_faults_survived"].append(way)  # type: ignore[attr-defined]


# -- a thousand short calls -------------------------------------------------------------------------

# How each short call goes, in turn: hung up properly, or cut at every stage of its life.
KINDS = ["hang_up", "hang_up", "hang_up", "hang_up", "drop_after_audio", "drop_after_audio",
         "drop_after_start", "stop_after_start", "drop_before_start", "close_frame_only"]


def short_call(ws_base: str, kind: str) -> str:
    """One quick call: no real-time audio, a few frames at most. Returns how it ended."""
    stream = new_stream()
    ws = connect(ws_base)
    try:
        if kind == "drop_before_start":
            return kind
        ws.send(stream.connected())
        ws.send(start_with_token(stream))
        if kind == "drop_after_start":
            return kind
        if kind == "stop_after_start":
            ws.send(stream.stop())
            return kind if await_close(ws, 5).code == 1000 else "bad close"
        ws.settimeout(5)
        while json.loads(ws.recv()).get("event") != "media":  # the greeting: the session is up
            pass
        for _ in range(5):
            ws.send(stream.media(quiet_frame()))
        if kind == "drop_after_audio":
            return kind
        if kind == "close_frame_only":
            ws.send_close()
        else:
            ws.send(stream.stop())
        return kind if await_close(ws, 5).code == 1000 else "bad close"
    finally:
        ws.shutdown()  # the cut calls: no stop, no close frame, the socket just goes


def place_short_calls(ws_base: str, count: int) -> dict[str, int]:
    """``count`` short calls, CONCURRENCY at a time; how many ended each way."""
    pool = Pool(CONCURRENCY)
    outcomes = pool.map(lambda n: short_call(ws_base, KINDS[n % len(KINDS)]), range(count))
    tally: dict[str, int] = {}
    for outcome in outcomes:
        tally[outcome] = tally.get(outcome, 0) + 1
    return tally


@pytest.fixture
def one_delta_greeting(model: StandinModel) -> Iterator[StandinModel]:
    """The module's stand-in, greeting with a single 100 ms delta (a thousand calls' worth)."""
    greeting, model.greeting_audio = model.greeting_audio, model.greeting_audio[:800]
    model.behaviour = Behaviour.NORMAL
    yield model
    model.greeting_audio = greeting


def test_a_thousand_short_calls_leave_no_descriptor_behind_under_gunicorn(
    gunicorn: GunicornRelay, one_delta_greeting: StandinModel
) -> None:
    relay = gunicorn
    model = one_delta_greeting
    (worker,) = relay.worker_pids()
    place_short_calls(relay.ws_url, len(KINDS) * 2)  # warm up: whatever is made once is made
    assert wait_until(lambda: get_json(relay.http_url + "/healthz", DIAGNOSTIC_AUTH)[1]["active_calls"] == 0, 5)
    assert wait_until(lambda: not model.live, 5)
    idle_fds = steady(lambda: fd_count(worker))  # an idle baseline: nothing still closing
    watch = LogWatch(relay.log)
    sessions = len(model.sessions)
    started = time.monotonic()

    tally = place_short_calls(relay.ws_url, SHORT_CALLS)
    elapsed = time.monotonic() - started

    assert tally == {kind: SHORT_CALLS * KINDS.count(kind) // len(KINDS) for kind in KINDS}, tally
    assert wait_until(lambda: watch.text().count("call.ended ") == SHORT_CALLS, 10), watch.text().count("call.ended ")
    assert wait_until(lambda: not model.live, 5), f"{len(model.live)} Realtime sockets left open"
    assert all(s.closed_at is not None for s in model.sessions[sessions:])
    assert wait_until(lambda: get_json(relay.http_url + "/healthz", DIAGNOSTIC_AUTH)[1]["active_calls"] == 0, 3)
    after_fds = settle(lambda: fd_count(worker), idle_fds)
    assert after_fds == idle_fds, f"worker descriptors: {idle_fds} idle, {after_fds} after {SHORT_CALLS} calls"
    assert "Traceback" not in watch.text() and "internal_error" not in watch.text()
    assert relay.worker_pids() == [worker]
    FIGURES["short_calls_gunicorn"] = (f"{SHORT_CALLS} calls ({tally}) in {elapsed:.1f} s; "
                                       f"worker fds {idle_fds} -> {after_fds}")


def test_a_thousand_short_calls_leave_no_greenlet_behind_in_process(
    make_relay: Any, one_delta_greeting: StandinModel, capfd: pytest.CaptureFixture[str]
) -> None:
    model = one_delta_greeting
    relay = make_relay(model.url)
    place_short_calls(relay.ws_url, len(KINDS) * 2)
    assert wait_until(lambda: not relay.app.registry.calls and not model.live, 5)
    idle_fds = steady(fd_count)
    idle_greenlets = steady(greenlet_count)
    started = time.monotonic()

    tally = place_short_calls(relay.ws_url, SHORT_CALLS)
    elapsed = time.monotonic() - started

    assert tally == {kind: SHORT_CALLS * KINDS.count(kind) // len(KINDS) for kind in KINDS}, tally
    assert wait_until(lambda: not relay.app.registry.calls and not model.live, 5)
    assert relay.app.counter.total() == 0
    after_fds = settle(fd_count, idle_fds)
    after_greenlets = settle(greenlet_count, idle_greenlets)
    assert (after_fds, after_greenlets) == (idle_fds, idle_greenlets), (
        f"fds {idle_fds} -> {after_fds}, greenlets {idle_greenlets} -> {after_greenlets}")
    # Nothing in this process (relay, stand-in, callers) died of an error the hub had to report.
    assert " failed with " not in capfd.readouterr().err
    FIGURES["short_calls_in_process"] = (f"{SHORT_CALLS} calls in {elapsed:.1f} s; fds {idle_fds} -> "
                                         f"{after_fds}, greenlets {idle_greenlets} -> {after_greenlets}")
