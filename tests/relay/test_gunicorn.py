"""The relay as deployed: ``gunicorn -c relay/gunicorn.conf.py relay.wsgi:app`` in a
subprocess, the stand-in model in this process, simulated callers over loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from scripts.fakes.openai import StandinModel
from scripts.fakes.twilio_caller import SimulatedCaller
from scripts.fakes.twilio_webhook import target_from_relay
from tests.conftest import AUTH_TOKEN, ROOT, STREAM_SECRET, GunicornRelay
from tests.helpers import QUIET, get, wait_until


def call_to(relay: GunicornRelay, **kwargs: Any) -> SimulatedCaller:
    target = target_from_relay(relay.ws_url, public_url=relay.ws_url, stream_secret=STREAM_SECRET)
    kwargs.setdefault("caller_audio", QUIET)
    kwargs.setdefault("hold_s", 1.0)
    return SimulatedCaller(target, auth_token=AUTH_TOKEN, **kwargs)


def test_a_call_through_gunicorn_hears_the_assistant(gunicorn_relay: Any, standin: StandinModel) -> None:
    relay = gunicorn_relay(standin.url)
    result = call_to(relay).run()
    assert result.handshake_status == 101 and result.first_audio_ms is not None
    assert result.received_audio == standin.greeting_audio[: len(result.received_audio)]
    assert result.close_code == 1000
    assert wait_until(lambda: "call.ended" in relay.log(), 3)
    log = relay.log()
    assert "call.accepted" in log and "openai.session_updated" in log and "call.first_audio" in log
    assert "reason=caller_hangup" in log


def test_a_bad_environment_stops_gunicorn_at_boot_listing_every_problem() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "OPENAI_", "TWILIO_"))}
    env.update({"PYTHONPATH": str(ROOT), "RELAY_PUBLIC_URL": "https://x.example.com", "RELAY_MAX_CALLS": "0"})
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "relay/gunicorn.conf.py", "relay.wsgi:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    for expected in ("OPENAI_API_KEY is not set", "TWILIO_AUTH_TOKEN is not set",
                     "STREAM_TOKEN_SECRET is not set", "RELAY_PUBLIC_URL must be a wss:// URL",
                     "RELAY_MAX_CALLS must be between 1 and"):
        assert expected in done.stderr


def test_sigterm_drains_live_calls_then_exits(gunicorn_relay: Any, standin: StandinModel) -> None:
    relay = gunicorn_relay(standin.url, RELAY_GRACEFUL_TIMEOUT_SECONDS="3400")
    calls = [call_to(relay) for _ in range(3)]
    for call in calls:
        assert call.begin()
    assert wait_until(lambda: json.loads(get(relay.http_url + "/healthz")[2])["active_calls"] == 3)

    relay.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: get(relay.http_url + "/healthz")[0] == 503, 5)
    status, _, body = get(relay.http_url + "/healthz")
    assert json.loads(body)["status"] == "draining" and json.loads(body)["draining"] is True
    late = call_to(relay).run()
    assert late.handshake_status == 503 and "draining" in late.handshake_body

    time.sleep(1.5)  # the live calls carry on through the drain
    assert relay.process.poll() is None
    assert all(not call.closed.is_set() for call in calls)
    for call in calls:
        result = call.finish()
        assert result.close_code == 1000  # ended by the caller, not cut by the deploy
    relay.process.wait(timeout=10)
    assert relay.process.returncode == 0
    ended = [line for line in relay.log().splitlines() if "call.ended" in line]
    assert len(ended) == 3 and all("reason=caller_hangup" in line for line in ended)


def test_two_workers_share_max_calls_and_healthz(gunicorn_relay: Any, standin: StandinModel) -> None:
    relay = gunicorn_relay(standin.url, RELAY_WORKERS="2", RELAY_MAX_CALLS="3")
    assert wait_until(lambda: relay.log().count("Booting worker") == 2, 10)
    calls = [call_to(relay, hold_s=5) for _ in range(3)]
    for call in calls:
        assert call.begin()
    assert wait_until(lambda: json.loads(get(relay.http_url + "/healthz")[2])["active_calls"] == 3)
    # Whichever worker answers, it reports the instance's total and refuses a fourth call.
    for _ in range(6):
        status, _, body = get(relay.http_url + "/healthz")
        assert status == 503 and json.loads(body)["active_calls"] == 3
    assert call_to(relay).run().handshake_status == 503
    for call in calls:
        call.finish()
    assert wait_until(lambda: json.loads(get(relay.http_url + "/healthz")[2])["active_calls"] == 0)
