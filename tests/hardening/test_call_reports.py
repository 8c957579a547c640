"""End-of-call reports, delivered from outside: signed, retried, never delaying a call, kept through a drain.

A report receiver (scripts/fakes/report_receiver.py: it checks X-Liveline-Signature with
its own lines) stands at CALL_REPORT_URL. Each case places real calls on a relay (in
process with delivery limits injected small, or under gunicorn for the drain) and looks
only at what the receiver got and at the relay's log.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from relay import stream_token
from relay.report_delivery import DeliveryLimits
from scripts.fakes.openai import StandinModel
from scripts.fakes.report_receiver import ReportReceiver
from tests.conftest import STREAM_SECRET
from tests.hardening.support import FIGURES, GoodCall, Teardown
from tests.helpers import wait_until

SIGNING = "report-signing-secret-0123456789abcdef"
CALLER, CALLED = "+15550001111", "+15550002222"
QUICK = DeliveryLimits(attempts=4, total_s=5.0, first_backoff_s=0.05, max_backoff_s=0.2, attempt_timeout_s=1.0)


@pytest.fixture
def receiver() -> Iterator[ReportReceiver]:
    running = ReportReceiver(SIGNING, delay_s=1.0).start()
    yield running
    running.stop()


def numbered_call(relay: Any, call_sid: str | None = None) -> GoodCall:
    """A call whose TwiML parameters carry the caller's and the called number, as the webhook's do."""
    call = GoodCall(relay.ws_url, call_sid=call_sid)
    call.params = stream_token.mint_parameters(STREAM_SECRET, call.call_sid, time.time(), 30,
                                               caller_number=CALLER, called_number=CALLED)
    return call.begin()


def test_a_call_leaves_a_signed_report(make_relay: Any, standin: StandinModel, receiver: ReportReceiver,
                                       teardown: Teardown) -> None:
    relay = make_relay(standin.url, delivery_limits=QUICK, CALL_REPORT_URL=receiver.url,
                       RELAY_SIGNING_SECRET=SIGNING)
    call = numbered_call(relay)
    teardown(call.abort)
    assert call.first_audio.wait(5)
    call.stream_for(5)
    assert call.hang_up().code == 1000
    assert receiver.wait_for(1, 5), "no report arrived"
    (delivery,) = receiver.deliveries
    assert delivery.signature_ok and delivery.status == 200
    report = json.loads(delivery.body)
    assert (report["call_sid"], report["from"], report["to"]) == (call.call_sid, CALLER, CALLED)
    assert report["end_reason"] == "caller_hangup" and report["first_audio_ms"] > 0
    assert report["started_at"].endswith("Z") and report["ended_at"] >= report["started_at"]
    assert report["duration_s"] > 0 and report["barge_ins"] == 0
    assert set(report) >= {"transcript", "tool_calls", "transfer", "usage", "model", "voice"}
    assert {"input_tokens", "output_tokens"} <= set(report["usage"])


def test_a_receiver_that_fails_twice_gets_the_report_on_the_third_try(
        make_relay: Any, standin: StandinModel, receiver: ReportReceiver, teardown: Teardown) -> None:
    relay = make_relay(standin.url, delivery_limits=QUICK, CALL_REPORT_URL=receiver.url,
                       RELAY_SIGNING_SECRET=SIGNING)
    receiver.plan(503, 502)
    call = numbered_call(relay)
    teardown(call.abort)
    assert call.first_audio.wait(5)
    call.stream_for(3)
    call.hang_up()
    assert receiver.wait_for(1, 5)
    assert [d.status for d in receiver.deliveries] == [503, 502, 200]
    assert len({d.body for d in receiver.deliveries}) == 1, "every attempt sends the same record"


def test_a_dead_receiver_never_holds_up_the_call_and_the_loss_is_logged(
        make_relay: Any, standin: StandinModel, teardown: Teardown, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    relay = make_relay(standin.url, delivery_limits=QUICK, CALL_REPORT_URL="http://127.0.0.1:9/calls",
                       RELAY_SIGNING_SECRET=SIGNING)
    call = numbered_call(relay)
    teardown(call.abort)
    assert call.first_audio.wait(5)
    call.stream_for(3)
    hung_up = time.monotonic()
    call.hang_up()
    assert wait_until(lambda: not relay.app.registry.calls, 2), "the call waited for its report"
    assert time.monotonic() - hung_up < 1.5
    assert wait_until(lambda: relay.app.reports.pending() == 0, 6)
    lost = [r.getMessage() for r in caplog.records if r.getMessage().startswith("report.undelivered")]
    assert len(lost) == 1 and f"call_sid={call.call_sid}" in lost[0]
    assert all(CALLER not in r.getMessage() and CALLED not in r.getMessage() for r in caplog.records)


def test_a_draining_relay_delivers_its_last_reports_before_it_exits(
        gunicorn_relay: Any, standin: StandinModel, receiver: ReportReceiver, teardown: Teardown) -> None:
    relay = gunicorn_relay(standin.url, CALL_REPORT_URL=receiver.url, RELAY_SIGNING_SECRET=SIGNING)
    receiver.plan("slow")  # the receiver takes a second to answer
    call = numbered_call(relay)
    teardown(call.abort)
    assert call.first_audio.wait(5)
    call.stream_for(3)
    relay.process.send_signal(signal.SIGTERM)
    call.hang_up()
    relay.process.wait(15)
    assert relay.process.returncode == 0
    assert [d.status for d in receiver.deliveries] == [200]
    assert json.loads(receiver.deliveries[0].body)["call_sid"] == call.call_sid
    # The receiver took a second: the worker waited for its answer before it exited.
    assert f"report.delivered call_sid={call.call_sid}" in relay.log(), "the worker exited before the report's answer"
    FIGURES["call_reports"] = ("signed; retried after 503/502; a dead receiver costs the call nothing; "
                               "kept through a drain")
