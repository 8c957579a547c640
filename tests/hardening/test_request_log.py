"""Every request the relay answers without a call leaves exactly one log line, rate-limited.

"Does the VM show any log from /twilio/realtime?" is the first question an operator asks.
Each kind of request (a plain GET's 426, a wrong path's 404, a wrong method's 405, each
refused upgrade, a head too large) leaves one line with its reason, status, method, path
and peer; probes (``/healthz``, ``/livez``) and calls (``call.accepted`` ...) log their own
way. A flood of one kind writes its burst of lines, then one now and then, each saying how
many were dropped before it, and never silences another kind. Peer-chosen values cannot
forge a line (CR/LF and spaces are escaped).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import websocket

from relay.request_limits import RequestLimits
from scripts.fakes.openai import StandinModel
from tests.conftest import RunningRelay, launch_gunicorn, stop_gunicorn
from tests.hardening.support import (
    FIGURES,
    GoodCall,
    LogWatch,
    Teardown,
    raw_head,
    refusal,
    send_raw,
    status_of,
    wait_until,
)
from tests.helpers import get


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The relay's request lines (one per answered request), as logged since this test's relay started.

    (An earlier test's relay may still be closing its connections when this one starts: its lines
    come before this relay's ``relay.configured``.)
    """
    messages = [record.getMessage() for record in caplog.records]
    starts = [i for i, message in enumerate(messages) if message.startswith("relay.configured ")]
    return [message for message in messages[starts[-1] if starts else 0:]
            if message.startswith(("http.request ", "call.refused ", "diagnostic.refused ", "call.upgrade_failed "))]


REQUESTS: dict[str, tuple[str, str]] = {
    # name: (what is sent, the one line expected)
    "plain_get": ("GET /twilio/realtime", "http.request reason=not_websocket status=426 method=GET "
                                          "path=/twilio/realtime remote=127.0.0.1"),
    "wrong_path": ("GET /wp-login.php", "http.request reason=unknown_path status=404 method=GET path=/wp-login.php"),
    "wrong_method": ("POST /twilio/realtime", "http.request reason=method status=405 method=POST"),
    "unsigned_upgrade": ("upgrade unsigned", "call.refused reason=bad_signature status=403 method=GET "
                                             "path=/twilio/realtime"),
    "upgrade_elsewhere": ("upgrade /other", "call.refused reason=unknown_path status=404 method=GET path=/other"),
    "broken_key": ("upgrade broken key", "call.refused reason=bad_key status=400"),
    "draining": ("upgrade draining", "call.refused reason=draining status=503"),
    "bad_request_line": ("garbage", "http.request reason=bad_request status=400"),
    "head_too_large": ("huge head", "http.request reason=headers_too_large status=431"),
    "request_line_too_long": ("long line", "http.request reason=request_line_too_long status=414"),
}


def _send(relay: RunningRelay, what: str) -> int:
    if what.startswith(("GET ", "POST ")):
        method, path = what.split()
        return get(relay.http_url + path, method=method, data=b"x" if method == "POST" else None)[0]
    if what == "upgrade unsigned":
        return refusal(relay.ws_url, signature=None)[0]
    if what == "upgrade /other":
        return status_of(send_raw(relay.http_url, raw_head(relay.ws_url, path="/other")))
    if what == "upgrade broken key":
        return status_of(send_raw(relay.http_url, raw_head(relay.ws_url, Sec_WebSocket_Key="%%%")))
    if what == "upgrade draining":
        relay.app.begin_drain()
        return refusal(relay.ws_url)[0]
    if what == "garbage":
        return status_of(send_raw(relay.http_url, b"HELLO\r\n\r\n"))
    if what == "long line":
        return status_of(send_raw(relay.http_url, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert what == "huge head"
    return status_of(send_raw(relay.http_url, raw_head(relay.ws_url, X_Pad="a" * 20_000)))


@pytest.mark.parametrize("case", list(REQUESTS))
def test_each_request_answered_without_a_call_leaves_one_line(
    case: str, make_relay: Any, fresh_model: StandinModel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    relay = make_relay(fresh_model.url)
    what, expected = REQUESTS[case]
    status = _send(relay, what)
    assert f"status={status}" in expected
    assert wait_until(lambda: len(_lines(caplog)) >= 1, 2)
    (line,) = _lines(caplog)
    assert line.startswith(expected), line
    FIGURES.setdefault("request_lines", [])
    FIGURES["request_lines"].append(case)  # type: ignore[attr-defined]


def test_probes_and_calls_leave_no_request_line(
    relay: RunningRelay, normal_model: StandinModel, caplog: pytest.LogCaptureFixture, teardown: Teardown
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    for path in ("/healthz", "/livez"):
        assert get(relay.http_url + path)[0] == 200
    call = GoodCall(relay.ws_url).begin()
    teardown(call.abort)
    call.stream_for(3)
    assert call.hang_up().code == 1000
    assert _lines(caplog) == []
    assert "call.accepted" in caplog.text  # a call's own lines say it arrived


@pytest.fixture
def relay(make_relay: Any, normal_model: StandinModel) -> RunningRelay:
    return make_relay(normal_model.url)  # type: ignore[no-any-return]


def test_a_flood_writes_its_burst_then_says_how_many_were_dropped(
    make_relay: Any, fresh_model: StandinModel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    relay = make_relay(fresh_model.url, request_limits=RequestLimits(log_burst=5, log_per_s=4.0))
    started = time.monotonic()
    for _ in range(50):
        assert get(relay.http_url + "/wp-login.php")[0] == 404
    assert get(relay.http_url + "/twilio/realtime")[0] == 426  # another kind: its own bucket
    lines = _lines(caplog)
    flood = [line for line in lines if "reason=unknown_path" in line]
    trickled = (time.monotonic() - started) * 4.0  # what the bucket refilled during the flood
    assert 5 <= len(flood) <= 5 + trickled + 1, flood
    assert any("reason=not_websocket" in line for line in lines)
    time.sleep(0.3)  # one line's worth of quiet
    assert get(relay.http_url + "/wp-login.php")[0] == 404
    last = _lines(caplog)[-1]
    dropped = 50 - len(flood)
    assert "reason=unknown_path" in last and last.endswith(f" suppressed={dropped}"), last


def test_peer_values_cannot_forge_a_log_line(relay: RunningRelay, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    # The path is URL-decoded before it is logged: %0d%0a would be a line break.
    assert get(relay.http_url + "/x%0d%0a2026-01-01T00:00:00.000Z%20INFO%20relay.server%20call.accepted")[0] == 404
    (line,) = _lines(caplog)
    assert "\n" not in line and "\r" not in line and " INFO " not in line
    assert "path=/x\\r\\n2026-01-01T00:00:00.000Z\\x20INFO" in line


def test_under_gunicorn_a_plain_get_and_a_refused_upgrade_are_in_the_log(
    fresh_model: StandinModel, tmp_path: Path, teardown: Teardown
) -> None:
    relay = launch_gunicorn(fresh_model.url, tmp_path)
    teardown(lambda: stop_gunicorn(relay))
    watch = LogWatch(relay.log)
    assert get(relay.http_url + "/twilio/realtime")[0] == 426
    watch.wait_for(r"INFO relay\.server http\.request reason=not_websocket status=426 method=GET "
                   r"path=/twilio/realtime remote=127\.0\.0\.1$")
    try:
        websocket.create_connection(relay.ws_url + "/twilio/realtime", suppress_origin=True, timeout=5)
    except websocket.WebSocketBadStatusException as exc:
        assert exc.status_code == 403
    watch.wait_for(r"WARNING relay\.server call\.refused reason=bad_signature status=403 ")
    assert len(watch.text().splitlines()) == 2, watch.text()  # one line each, and nothing else
