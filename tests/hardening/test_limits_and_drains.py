"""Limits and drains, against gunicorn as deployed, with 20 live calls each time.

- ``RELAY_MAX_CALLS`` reached: every further upgrade gets a clean ``503`` before any
  WebSocket or Realtime session exists, ``/healthz`` says ``saturated`` (so the load
  balancer stops sending calls here), and the calls in progress lose nothing; once one
  ends its slot takes a new call.
- SIGTERM (a deploy) with 20 live calls: all 20 go on and end normally, byte for byte;
  new upgrades get ``503`` and ``/healthz`` says ``draining``; the process exits after
  the last call has ended, not before and not long after.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import gevent
import pytest

from scripts.fakes.openai import StandinModel
from tests.conftest import DIAGNOSTIC_AUTH, launch_gunicorn, stop_gunicorn
from tests.hardening.support import FIGURES, GoodCall, Teardown, refusal, wait_until
from tests.helpers import get_json

CALLS = 20


def _begin_all(ws_url: str, teardown: Teardown) -> list[GoodCall]:
    calls = [GoodCall(ws_url) for _ in range(CALLS)]
    for call in calls:
        teardown(call.abort)
        call.begin()
    assert wait_until(lambda: all(c.first_audio.is_set() for c in calls), 10), "not every call heard the greeting"
    for call in calls:
        call.stream_for(5)
    return calls


def _stream_on(calls: list[GoodCall], frames: int) -> None:
    """Let every call send ``frames`` more frames (they stream concurrently)."""
    targets = [len(call.sent) + frames for call in calls]
    for call, target in zip(calls, targets, strict=True):
        call.stream_for(target)


def _hang_up_all(calls: list[GoodCall], standin: StandinModel) -> None:
    closes = gevent.joinall([gevent.spawn(call.hang_up) for call in calls], raise_error=True)
    assert [g.value.code for g in closes] == [1000] * len(calls)
    for call in calls:
        call.assert_lossless(standin)


def test_at_max_calls_further_upgrades_get_a_clean_503(
    fresh_model: StandinModel, tmp_path: Path, teardown: Teardown
) -> None:
    relay = launch_gunicorn(fresh_model.url, tmp_path, RELAY_MAX_CALLS=str(CALLS))
    teardown(lambda: stop_gunicorn(relay))
    calls = _begin_all(relay.ws_url, teardown)

    status, health = get_json(relay.http_url + "/healthz", DIAGNOSTIC_AUTH)
    assert (status, health["status"], health["active_calls"], health["max_calls"]) == (503, "saturated", CALLS, CALLS)
    for _ in range(5):
        assert refusal(relay.ws_url) == (503, f"relay is at capacity ({CALLS} calls)\n")
    assert fresh_model.handshakes == CALLS, "a refused call opened a Realtime session"
    # Each refusal's line is written once its 503 has gone out: wait for the last one to land.
    assert wait_until(lambda: relay.log().count("call.refused reason=saturated") >= 5, 3)
    assert relay.log().count("call.refused reason=saturated") == 5

    # The calls in progress never noticed; when one ends, its slot takes a new call.
    first, rest = calls[0], calls[1:]
    _stream_on(calls, 10)
    assert first.hang_up().code == 1000
    assert wait_until(lambda: get_json(relay.http_url + "/healthz")[0] == 200, 3), "the ended call kept its slot"
    late = GoodCall(relay.ws_url).begin()
    teardown(late.abort)
    late.stream_for(5)
    _hang_up_all([*rest, late], fresh_model)
    first.assert_lossless(fresh_model)
    health = relay.http_url + "/healthz"
    assert wait_until(lambda: get_json(health, DIAGNOSTIC_AUTH)[1]["active_calls"] == 0, 3), "a call kept its slot"
    FIGURES["saturation"] = (f"{CALLS} calls at RELAY_MAX_CALLS={CALLS}: 5 more upgrades got 503, "
                             f"/healthz 503 saturated, {CALLS + 1} calls lossless")


def test_sigterm_with_20_live_calls_drains_every_one(
    fresh_model: StandinModel, tmp_path: Path, teardown: Teardown
) -> None:
    relay = launch_gunicorn(fresh_model.url, tmp_path)
    teardown(lambda: stop_gunicorn(relay))
    calls = _begin_all(relay.ws_url, teardown)

    relay.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: get_json(relay.http_url + "/healthz")[0] == 503, 5), "/healthz did not turn 503"
    status, health = get_json(relay.http_url + "/healthz", DIAGNOSTIC_AUTH)
    assert health["status"] == "draining" and health["draining"] is True and health["active_calls"] == CALLS
    assert refusal(relay.ws_url) == (503, "relay is draining for a deploy; retry on another instance\n")
    assert fresh_model.handshakes == CALLS

    # The live calls go on talking through the drain, both ways.
    _stream_on(calls, 25)
    assert relay.process.poll() is None and not any(call.closed.is_set() for call in calls)

    # One call still open keeps the process alive; it exits soon after the last one ends.
    _hang_up_all(calls[:-1], fresh_model)
    with pytest.raises(subprocess.TimeoutExpired):  # still running half a second on, one call live
        relay.process.wait(0.5)
    assert calls[-1].hang_up().code == 1000
    last_ended = time.monotonic()
    relay.process.wait(timeout=10)
    exit_after_s = time.monotonic() - last_ended
    assert relay.process.returncode == 0 and exit_after_s < 5, exit_after_s
    calls[-1].assert_lossless(fresh_model)
    ended = [line for line in relay.log().splitlines() if "call.ended" in line]
    assert len(ended) == CALLS and all("reason=caller_hangup" in line for line in ended)
    FIGURES["drain"] = (f"SIGTERM with {CALLS} live calls: {CALLS} ended by the caller, lossless; "
                        f"new upgrades 503; exit {exit_after_s:.1f} s after the last call")

