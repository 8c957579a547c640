"""Upstream (OpenAI side) faults: each ends the right way, fast, and leaks nothing.

A call that cannot continue has its Twilio socket closed with 1011 within 2 s of the
fault, so Twilio plays the fallback TwiML and the caller hears it instead of silence. The
fault's moment is taken where it happens: the stand-in's record of when it struck
mid-call, or the relay's own log line when the fault is a refusal, a failure to connect
or a silence that ran out its timeout. A recoverable error does not end the call, and
audio keeps flowing through it. Nothing hangs: the upstream socket is let go too, and
descriptors and greenlets return to their count from before the call (in-process), or
the gunicorn worker's descriptors do (/proc/<pid>/fd).
"""

from __future__ import annotations

import logging
import re
import socket
from dataclasses import dataclass
from typing import Any

import pytest

from scripts.fakes.openai import Behaviour, StandinModel
from tests.conftest import GunicornRelay, free_port
from tests.hardening.support import (
    FIGURES,
    Closed,
    GoodCall,
    LeakCheck,
    LogWatch,
    Teardown,
    fd_count,
    line_time,
    monotonic_to_wall,
    settle,
    steady,
    wait_until,
)


@dataclass(frozen=True)
class Fault:
    """One way the Realtime side fails, and how the relay must say it ended the call."""

    name: str
    behaviour: Behaviour
    reason: str  # the close reason Twilio receives (the relay's end reason)
    log: str  # regex for the relay's line about the fault; its time is the fault's unless midcall
    midcall: bool = False  # the stand-in records when it struck (SessionRecord.fault_at)
    openai_url: str = ""  # "" the stand-in; "dns" a name that does not resolve; "refused" a closed port
    handshakes: int = 1  # Realtime handshakes the stand-in sees
    waits_s: float = 0.0  # the relay's own timeout this fault runs into (1 s connect, 2 s session)


FAULTS = [
    Fault("dns_failure", Behaviour.NORMAL, "openai_dns_failed", r"openai\.connect_failed .*stage=dns",
          openai_url="dns", handshakes=0),
    Fault("connection_refused", Behaviour.NORMAL, "openai_tcp_failed", r"openai\.connect_failed .*stage=tcp",
          openai_url="refused", handshakes=0),
    Fault("handshake_hangs_past_timeout", Behaviour.HANG_HANDSHAKE, "openai_handshake_failed",
          r"openai\.connect_failed .*stage=handshake status=None .*timed out", waits_s=1.0),
    Fault("rejected_401", Behaviour.REJECT_401, "openai_handshake_failed",
          r"openai\.connect_failed .*stage=handshake status=401 code=invalid_api_key"),
    Fault("rejected_403", Behaviour.REJECT_403, "openai_handshake_failed",
          r"openai\.connect_failed .*stage=handshake status=403 code=model_not_found"),
    Fault("quota_429_at_handshake", Behaviour.REJECT_429, "openai_handshake_failed",
          r"openai\.connect_failed .*stage=handshake status=429 code=insufficient_quota"),
    Fault("session_update_rejected", Behaviour.REJECT_SESSION, "session_rejected",
          r"openai\.error .*fatal=true type=invalid_request_error code=invalid_value"),
    Fault("session_updated_never_arrives", Behaviour.NEVER_UPDATE, "session_timeout", r"openai\.session_timeout ",
          waits_s=2.0),
    Fault("closed_midcall", Behaviour.CLOSE_MIDCALL, "openai_closed", r"openai\.closed .*code=1011", midcall=True),
    Fault("fatal_error_then_close", Behaviour.FATAL_ERROR, "openai_error",
          r"openai\.error .*fatal=true .*code=session_expired", midcall=True),
    Fault("session_expired_midcall", Behaviour.SESSION_EXPIRED, "openai_error",
          r"openai\.error .*fatal=true .*code=session_expired", midcall=True),
    Fault("quota_exhausted_midcall", Behaviour.QUOTA_MIDCALL, "openai_error",
          r"openai\.response_failed .*fatal=true reason=insufficient_quota", midcall=True),
]
FAULTS_UNDER_GUNICORN = [f for f in FAULTS if f.openai_url == ""]


def _openai_url(fault: Fault, model: StandinModel) -> str:
    if fault.openai_url == "dns":
        return "wss://no-such-host.invalid/v1/realtime"  # RFC 6761: never resolves
    if fault.openai_url == "refused":
        return f"ws://127.0.0.1:{free_port()}/v1/realtime"
    return model.url


def _assert_closed_in_time(fault: Fault, call: GoodCall, closed: Closed, fault_wall: float) -> None:
    """Twilio's socket closed within 2 s of the fault, and (before the call was up) of ``start``
    plus the timeout the fault waits out: a relay that waited longer than its timeouts fails here."""
    assert 0 <= closed.wall - fault_wall < 2.0, f"Twilio closed {closed.wall - fault_wall:.2f} s after the fault"
    if not fault.midcall:
        since_start = closed.at - call.started_at
        assert fault.waits_s - 0.25 <= since_start < fault.waits_s + 2.0, (
            f"Twilio closed {since_start:.2f} s after start (the fault waits {fault.waits_s:g} s)")


def _assert_upstream_let_go(model: StandinModel, fault: Fault) -> None:
    assert model.handshakes == fault.handshakes
    assert wait_until(lambda: all(s.closed_at is not None for s in model.sessions), 2), (
        "the relay left the Realtime socket open after ending the call")
    if fault.behaviour == Behaviour.HANG_HANDSHAKE:  # the stand-in noticed the relay give up
        assert wait_until(lambda: not model.live, 2)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_an_upstream_fault_closes_twilio_within_two_seconds(
    fault: Fault, make_relay: Any, fresh_model: StandinModel, caplog: pytest.LogCaptureFixture,
    teardown: Teardown,
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    fresh_model.behaviour = fault.behaviour
    relay = make_relay(_openai_url(fault, fresh_model), OPENAI_CONNECT_TIMEOUT_SECONDS="1",
                       OPENAI_SESSION_TIMEOUT_SECONDS="2")
    socket.getaddrinfo("localhost", 80)  # the resolver's threads exist before the count
    leaks = LeakCheck()

    call = GoodCall(relay.ws_url).begin()
    teardown(call.abort)
    assert call.closed.wait(6), "the relay never closed the Twilio socket"
    closed = call.close
    assert closed is not None and (closed.code, closed.reason) == (1011, fault.reason), closed

    if fault.midcall:
        (record,) = fresh_model.sessions
        assert record.fault_at is not None and call.received, "the fault did not strike mid-call"
        fault_wall = monotonic_to_wall(record.fault_at)
    else:
        records = [r for r in caplog.records if re.search(fault.log, r.getMessage())]
        assert records, f"no log line matching {fault.log!r}"
        fault_wall = records[0].created
    _assert_closed_in_time(fault, call, closed, fault_wall)
    assert not [r for r in caplog.records if "internal_error" in r.getMessage()]

    call.hang_up()
    _assert_upstream_let_go(fresh_model, fault)
    leaks.assert_back()
    FIGURES.setdefault("upstream_faults_survived", set())
    FIGURES["upstream_faults_survived"].add(fault.name)  # type: ignore[attr-defined]
    FIGURES[f"fault_to_close_ms[{fault.name}]"] = round((closed.wall - fault_wall) * 1000)


@pytest.mark.parametrize("behaviour", [Behaviour.RECOVERABLE_ERROR])
def test_a_recoverable_error_does_not_end_the_call(
    behaviour: Behaviour, make_relay: Any, fresh_model: StandinModel, caplog: pytest.LogCaptureFixture,
    teardown: Teardown,
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    fresh_model.behaviour = behaviour
    relay = make_relay(fresh_model.url)
    leaks = LeakCheck()
    call = GoodCall(relay.ws_url).begin()
    teardown(call.abort)
    call.stream_for(10)  # audio keeps flowing, both ways, after the error
    assert call.hang_up().code == 1000
    record = call.assert_lossless(fresh_model)
    assert record.fault_at is not None
    assert any(re.search(r"openai\.error .*fatal=false .*code=response_cancel_not_active", r.getMessage())
               for r in caplog.records)
    leaks.assert_back()
    FIGURES.setdefault("upstream_faults_survived", set())
    FIGURES["upstream_faults_survived"].add("recoverable_error")  # type: ignore[attr-defined]


@pytest.mark.parametrize("fault", FAULTS_UNDER_GUNICORN, ids=[f.name for f in FAULTS_UNDER_GUNICORN])
def test_an_upstream_fault_under_gunicorn_leaks_no_descriptor(
    fault: Fault, gunicorn: GunicornRelay, normal_model: StandinModel, teardown: Teardown
) -> None:
    relay = gunicorn
    (worker,) = relay.worker_pids()
    fds_before = steady(lambda: fd_count(worker))
    watch = LogWatch(relay.log)
    normal_model.behaviour = fault.behaviour
    handshakes = normal_model.handshakes
    sessions = len(normal_model.sessions)

    call = GoodCall(relay.ws_url).begin()
    teardown(call.abort)
    assert call.closed.wait(6), "the relay never closed the Twilio socket"
    closed = call.close
    assert closed is not None and (closed.code, closed.reason) == (1011, fault.reason), closed
    line = watch.wait_for(fault.log)
    if fault.midcall:
        (record,) = normal_model.sessions[sessions:]
        assert record.fault_at is not None
        fault_wall = monotonic_to_wall(record.fault_at)
    else:
        fault_wall = line_time(line)
    _assert_closed_in_time(fault, call, closed, fault_wall)
    call.hang_up()

    assert normal_model.handshakes == handshakes + fault.handshakes
    assert wait_until(lambda: all(s.closed_at is not None for s in normal_model.sessions), 2)
    watch.wait_for(r"call\.ended ")
    assert "Traceback" not in watch.text() and "internal_error" not in watch.text()
    fds_after = settle(lambda: fd_count(worker), fds_before)
    assert fds_after == fds_before, f"worker descriptors {fds_before} -> {fds_after} after {fault.name}"
    assert relay.worker_pids() == [worker] and relay.process.poll() is None
