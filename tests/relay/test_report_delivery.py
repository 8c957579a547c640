"""Call reports on loopback, against the report receiver (scripts/fakes/report_receiver.py) which
checks each signature with its own lines: submit returns at once, failures are retried within
bounds, 4xx is not, a draining worker can wait, and the logs name the call and nothing else."""

from __future__ import annotations

import io
import itertools
import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from relay.report_delivery import DeliveryLimits, ReportDelivery
from scripts.fakes.report_receiver import ReportReceiver, render

SECRET = "report-signing-secret-0123456789abcd"
CALL_SID = "CA" + "7" * 32
REPORT = {
    "call_sid": CALL_SID, "from": "+15550001111", "to": "+15550002222",
    "started_at": "2026-12-14T14:02:03Z", "ended_at": "2026-12-14T14:02:45Z", "duration_s": 42.0,
    "end_reason": "assistant_hung_up", "first_audio_ms": 820, "barge_ins": 1,
    "transcript": [{"role": "assistant", "text": "Hello, Acme orders.", "at_ms": 1200},
                   {"role": "caller", "text": "My address is 12 Private Lane.", "at_ms": 4800}],
    "tool_calls": [{"name": "lookup_order", "ok": True, "ms": 120}], "transfer": None,
    "usage": {"input_tokens": 1234, "output_tokens": 567}, "model": "gpt-realtime", "voice": "marin",
}
FAST = DeliveryLimits(attempts=4, total_s=5.0, first_backoff_s=0.01, max_backoff_s=0.05, attempt_timeout_s=1.0)


@pytest.fixture
def receiver() -> Iterator[ReportReceiver]:
    server = ReportReceiver(SECRET, delay_s=2).start()
    yield server
    server.stop()


@pytest.fixture
def deliveries() -> Iterator[list[ReportDelivery]]:
    made: list[ReportDelivery] = []
    yield made
    for delivery in made:  # leak check: nothing still running after a test
        delivery.cancel()


def delivery(made: list[ReportDelivery], url: str, limits: DeliveryLimits = FAST, **kwargs: object) -> ReportDelivery:
    made.append(ReportDelivery(url, SECRET, limits=limits, **kwargs))  # type: ignore[arg-type]
    return made[-1]


def test_submit_returns_at_once_and_the_report_arrives_signed(
        receiver: ReportReceiver, deliveries: list[ReportDelivery], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="relay.report_delivery")
    reports = delivery(deliveries, receiver.url)
    reports.submit(CALL_SID, REPORT)
    assert reports.pending() == 1 and receiver.deliveries == []  # nothing sent before submit returned
    assert reports.wait(5) and reports.pending() == 0
    [sent] = receiver.deliveries
    assert sent.signature_ok and json.loads(sent.body) == REPORT
    assert receiver.reports == [REPORT]
    assert caplog.records[-1].getMessage().startswith(f"report.delivered call_sid={CALL_SID} attempts=1 status=200")


def test_5xx_and_timeouts_are_retried_each_attempt_signed_afresh(
        receiver: ReportReceiver, deliveries: list[ReportDelivery], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="relay.report_delivery")
    receiver.plan(503, "slow", 500)
    clock = itertools.count(int(time.time()))
    reports = delivery(deliveries, receiver.url, DeliveryLimits(attempts=5, total_s=10, first_backoff_s=0.01,
                                                                 max_backoff_s=0.05, attempt_timeout_s=0.3),
                       wall_clock=lambda: float(next(clock)))
    reports.submit(CALL_SID, REPORT)
    assert reports.wait(10)
    # The slow answer is still on its way (the receiver records a request once it has answered it).
    assert [d.status for d in receiver.deliveries] == [503, 500, 200]
    assert f"report.delivered call_sid={CALL_SID} attempts=4 status=200" in caplog.text
    assert receiver.reports == [REPORT]
    timestamps = {d.signature.split(",")[0] for d in receiver.deliveries}
    assert len(timestamps) == 3 and all(d.signature_ok for d in receiver.deliveries)


def test_a_4xx_is_not_retried(receiver: ReportReceiver, deliveries: list[ReportDelivery],
                              caplog: pytest.LogCaptureFixture) -> None:
    receiver.plan(400)
    reports = delivery(deliveries, receiver.url)
    reports.submit(CALL_SID, REPORT)
    assert reports.wait(5)
    assert [d.status for d in receiver.deliveries] == [400]
    assert f"report.undelivered call_sid={CALL_SID} attempts=1 error=HTTP 400" in caplog.text


def test_a_bad_signature_is_refused_and_not_retried(receiver: ReportReceiver, deliveries: list[ReportDelivery]) -> None:
    reports = ReportDelivery(receiver.url, "a-different-secret-0123456789abcdef", limits=FAST)
    deliveries.append(reports)
    reports.submit(CALL_SID, REPORT)
    assert reports.wait(5)
    assert [(d.signature_ok, d.status) for d in receiver.deliveries] == [(False, 401)]


def test_attempts_are_bounded(receiver: ReportReceiver, deliveries: list[ReportDelivery],
                              caplog: pytest.LogCaptureFixture) -> None:
    receiver.plan(*[503] * 10)
    reports = delivery(deliveries, receiver.url)
    reports.submit(CALL_SID, REPORT)
    assert reports.wait(5)
    assert len(receiver.deliveries) == FAST.attempts == 4
    assert f"report.undelivered call_sid={CALL_SID} attempts=4 error=HTTP 503" in caplog.text


def test_total_time_bounds_the_retries(receiver: ReportReceiver, deliveries: list[ReportDelivery],
                                       caplog: pytest.LogCaptureFixture) -> None:
    # Backoffs of 0.2 s (no jitter) within 0.5 s: three attempts, where ten are allowed.
    receiver.plan(*[503] * 10)
    reports = delivery(deliveries, receiver.url, DeliveryLimits(attempts=10, total_s=0.5, first_backoff_s=0.2,
                                                                 max_backoff_s=0.2, attempt_timeout_s=1.0),
                       jitter=lambda: 1.0)
    reports.submit(CALL_SID, REPORT)
    assert reports.wait(5)
    assert 1 <= len(receiver.deliveries) <= 3
    assert f"attempts={len(receiver.deliveries)} error=HTTP 503" in caplog.text


def test_total_time_cuts_an_attempt_short(receiver: ReportReceiver, deliveries: list[ReportDelivery],
                                          caplog: pytest.LogCaptureFixture) -> None:
    receiver.plan("slow")  # answers 200 after 2 s, past the 0.3 s the whole delivery may take
    reports = delivery(deliveries, receiver.url, DeliveryLimits(attempts=3, total_s=0.3, attempt_timeout_s=5.0))
    reports.submit(CALL_SID, REPORT)
    assert reports.wait(1.5)
    assert f"report.undelivered call_sid={CALL_SID} attempts=1 error=timeout" in caplog.text


def test_a_receiver_that_is_down(deliveries: list[ReportDelivery], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="relay.report_delivery")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        reports = delivery(deliveries, f"http://127.0.0.1:{sock.getsockname()[1]}/calls")
        reports.submit(CALL_SID, REPORT)
        assert reports.wait(5)
    assert f"report.undelivered call_sid={CALL_SID} attempts=4 error=connect" in caplog.text
    assert caplog.text.count("report.retry") == 3


def test_a_draining_worker_waits_then_cancels(receiver: ReportReceiver, deliveries: list[ReportDelivery],
                                              caplog: pytest.LogCaptureFixture) -> None:
    receiver.plan("slow")
    reports = delivery(deliveries, receiver.url, DeliveryLimits(attempts=1, attempt_timeout_s=5))
    reports.submit(CALL_SID, REPORT)
    assert not reports.wait(0.2) and reports.pending() == 1
    assert reports.cancel() == 1
    assert reports.pending() == 0 and reports.wait(0)
    assert f"report.undelivered call_sid={CALL_SID} attempts=1 error=stopped before it was delivered" in caplog.text


def test_several_reports_at_once(receiver: ReportReceiver, deliveries: list[ReportDelivery]) -> None:
    reports = delivery(deliveries, receiver.url)
    for number in range(5):
        reports.submit(f"CA{number}", {**REPORT, "call_sid": f"CA{number}"})
    assert reports.pending() == 5
    assert reports.wait(5)
    assert sorted(report["call_sid"] for report in receiver.reports) == [f"CA{n}" for n in range(5)]


def test_the_logs_never_hold_the_report(receiver: ReportReceiver, deliveries: list[ReportDelivery],
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.plan(503, 400)
    reports = delivery(deliveries, receiver.url)
    reports.submit(CALL_SID, REPORT)
    assert reports.wait(5)
    for private in ("Private Lane", "+15550001111", "Hello, Acme"):
        assert private not in caplog.text


def test_the_receiver_prints_a_readable_record() -> None:
    text = render(REPORT)
    assert "call CA7777" in text and "ended: assistant_hung_up" in text
    assert "[00:01.2] assistant: Hello, Acme orders." in text
    assert "[00:04.8]    caller: My address is 12 Private Lane." in text
    assert "lookup_order ok 120 ms" in text


def test_the_receiver_prints_what_it_accepts(deliveries: list[ReportDelivery]) -> None:
    out = io.StringIO()
    server = ReportReceiver(SECRET, out=out).start()
    try:
        reports = delivery(deliveries, server.url)
        reports.submit(CALL_SID, REPORT)
        assert reports.wait(5)
    finally:
        server.stop()
    assert out.getvalue().strip() == render(REPORT)
