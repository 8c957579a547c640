"""The relay as deployed: ``gunicorn -c relay/gunicorn.conf.py relay.wsgi:app`` in a
subprocess, the stand-in model in this process, simulated callers over loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import gevent.pool

from scripts.fakes.openai import StandinModel
from scripts.fakes.twilio_caller import SimulatedCaller
from scripts.fakes.twilio_messages import InboundStream
from scripts.fakes.twilio_webhook import target_from_relay
from tests.conftest import AUTH_TOKEN, DIAGNOSTIC_AUTH, ROOT, STREAM_SECRET, GunicornRelay
from tests.hardening.support import await_close, connect
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
    assert wait_until(lambda: json.loads(get(relay.http_url + "/healthz", DIAGNOSTIC_AUTH)[2])["active_calls"] == 3)

    relay.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: get(relay.http_url + "/healthz")[0] == 503, 5)
    status, _, body = get(relay.http_url + "/healthz", DIAGNOSTIC_AUTH)
    assert json.loads(body)["status"] == "draining" and json.loads(body)["draining"] is True
    status, _, body = get(relay.http_url + "/livez")
    assert (status, body) == (200, b"ok\n")  # draining, but alive: nothing to restart
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
    # Both loaded: "Booting worker" comes before a worker handles SIGTERM, and one lost there
    # would hold the teardown's stop for its whole timeout.
    assert wait_until(lambda: relay.log().count("relay.configured") == 2, 10)
    calls = [call_to(relay, hold_s=5) for _ in range(3)]
    for call in calls:
        assert call.begin()
    assert wait_until(lambda: json.loads(get(relay.http_url + "/healthz", DIAGNOSTIC_AUTH)[2])["active_calls"] == 3)
    # Whichever worker answers, it reports the instance's total and refuses a fourth call.
    for _ in range(6):
        status, _, body = get(relay.http_url + "/healthz", DIAGNOSTIC_AUTH)
        assert status == 503 and json.loads(body)["active_calls"] == 3
    assert call_to(relay).run().handshake_status == 503
    for call in calls:
        call.finish()
    assert wait_until(lambda: json.loads(get(relay.http_url + "/healthz", DIAGNOSTIC_AUTH)[2])["active_calls"] == 0)


def _replay(relay: GunicornRelay, call_sid: str, parameters: dict[str, str]) -> tuple[int | None, str]:
    """A signed stream whose start replays another call's CallSid and parameters; how it was closed."""
    stream = InboundStream(call_sid)
    ws = connect(relay.ws_url)
    ws.send(stream.connected())
    ws.send(stream.start(parameters))
    closed = await_close(ws, 5)
    return closed.code, closed.reason


def test_a_replayed_token_is_refused_whichever_worker_takes_it(
    gunicorn_relay: Any, standin: StandinModel
) -> None:
    relay = gunicorn_relay(standin.url, RELAY_WORKERS="2")
    assert wait_until(lambda: relay.log().count("relay.configured") == 2, 10)  # both loaded (see above)
    workers = set(relay.worker_pids())
    call = call_to(relay, hold_s=30)
    assert call.begin()
    target = call.target

    def refused_by() -> set[int]:
        found = re.findall(r"call\.rejected conn=(\d+)-\d+ \S+ \S+ reason=token_replayed", relay.log())
        return {int(pid) for pid in found}

    # The kernel hands each connection to either worker: replay until both have refused
    # (bounded), four at a time so that both are woken.
    for _ in range(15):
        verdicts = gevent.pool.Pool(4).map(lambda _n: _replay(relay, target.call_sid, target.parameters), range(4))
        assert verdicts == [(1008, "token_replayed")] * 4
        if wait_until(lambda: refused_by() == workers, 0.5):
            break
    assert refused_by() == workers, f"refused by {refused_by()} of {workers}: the replays never reached both"

    result = call.finish()
    assert result.close_code == 1000  # the real call went on, untouched
    assert _replay(relay, target.call_sid, target.parameters) == (1008, "token_replayed")  # and after it
    assert standin.handshakes == 1 and len(standin.sessions) == 1


def test_json_logs_are_one_object_per_line_with_the_calls_fields(
    gunicorn_relay: Any, standin: StandinModel
) -> None:
    relay = gunicorn_relay(standin.url, RELAY_LOG_FORMAT="json")
    call = call_to(relay)
    result = call.run()
    assert result.close_code == 1000
    assert wait_until(lambda: '"call.ended"' in relay.log(), 3)

    lines = relay.log().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert all(line.startswith("[") for line in lines if not line.startswith("{")), "only gunicorn's own lines"
    ended = next(r for r in records if r["event"] == "call.ended")
    assert ended["logger"] == "relay.live_call" and ended["level"] == "INFO"
    assert ended["call_sid"] == call.target.call_sid and ended["stream_sid"].startswith("MZ")
    assert ended["reason"] == "caller_hangup" and isinstance(ended["duration_s"], float)
    assert {r["event"] for r in records} >= {"relay.configured", "call.accepted", "twilio.start",
                                             "openai.session_updated", "call.first_audio"}


def test_a_peer_cannot_write_a_log_line_of_its_own(gunicorn_relay: Any, standin: StandinModel) -> None:
    relay = gunicorn_relay(standin.url, RELAY_LOG_LEVEL="DEBUG")
    forged = "2026-01-01T00:00:00.000Z WARNING relay.bridge call.rejected reason=forged"
    ws = connect(relay.ws_url)
    ws.send(json.dumps({"event": "connected", "protocol": f"Call\r\n{forged}\u2028{forged}", "version": "1.0.0"}))
    ws.send(json.dumps({"event": f"x\n{forged}"}))  # an unknown event, named by the peer
    ws.send(InboundStream(f"CA{'0' * 32}\n").start({}))  # a CallSid with a newline: refused, logged quoted
    await_close(ws, 5)
    assert wait_until(lambda: "call.ended" in relay.log(), 5)

    log = relay.log()
    assert "twilio.connected" in log and "twilio.unknown_event" in log and "invalid_start" in log
    assert not any(line.startswith("2026-01-01") for line in log.splitlines()), log
