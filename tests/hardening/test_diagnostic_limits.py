"""``/diagnostic/openai`` opens a real, billable Realtime session, so it is held to a call's rules.

It runs one at a time per instance (whichever gunicorn worker is asked), at most once per
``diagnostic_interval_s``, takes a call slot while it runs (refused at capacity, and it
counts in ``/healthz``), and is refused while draining. A flood of wrong tokens writes a
few rate-limited lines, not one each. OpenAI's refusal quotes the key it was given: nothing
key-shaped reaches the diagnostic's answer or the log, from the diagnostic or from a call.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.server import StreamServer

from relay.request_limits import RequestLimits
from scripts.fakes.openai import Behaviour, StandinModel
from tests.conftest import API_KEY, DIAGNOSTIC_AUTH, RunningRelay, launch_gunicorn, stop_gunicorn
from tests.hardening.support import (
    FIGURES,
    GoodCall,
    Teardown,
    await_close,
    connect,
    refusal,
    start_with_token,
    wait_until,
)
from tests.helpers import get, get_json

DIAGNOSTIC = "/diagnostic/openai"


def _diagnose(relay: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    status, headers, body = get(relay.http_url + DIAGNOSTIC, DIAGNOSTIC_AUTH)
    return status, headers, json.loads(body)


def _all_at_once(relay: Any, count: int) -> list[int]:
    requests = [gevent.spawn(_diagnose, relay) for _ in range(count)]
    gevent.joinall(requests, timeout=20, raise_error=True)
    return sorted(request.value[0] for request in requests)


def test_twenty_at_once_open_one_realtime_session(make_relay: Any, fresh_model: StandinModel) -> None:
    relay = make_relay(fresh_model.url, request_limits=RequestLimits())  # the production interval
    statuses = _all_at_once(relay, 20)
    assert statuses == [200] + [429] * 19
    assert fresh_model.handshakes == 1
    status, headers, document = _diagnose(relay)
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 10 and "one diagnostic at a time" in document["error"]
    assert relay.app.counter.total() == 0


@pytest.mark.parametrize("max_calls", [2, 1])
def test_one_at_a_time_and_counted_as_a_call_while_it_runs(
    max_calls: int, make_relay: Any, fresh_model: StandinModel
) -> None:
    relay = make_relay(fresh_model.url, request_limits=RequestLimits(diagnostic_interval_s=0.0),
                       RELAY_MAX_CALLS=str(max_calls), OPENAI_CONNECT_TIMEOUT_SECONDS="0.5",
                       OPENAI_SESSION_TIMEOUT_SECONDS="2")
    fresh_model.behaviour = Behaviour.NEVER_UPDATE  # the first diagnostic waits out its 2 s session timeout
    first = gevent.spawn(_diagnose, relay)
    try:
        assert wait_until(lambda: fresh_model.handshakes == 1, 3)
        status, health = get_json(relay.http_url + "/healthz", DIAGNOSTIC_AUTH)
        assert health["active_calls"] == 1 and status == (503 if max_calls == 1 else 200)
        status, _, document = _diagnose(relay)
        if max_calls == 1:  # it holds the only call slot: a call, and another diagnostic, find the relay full
            assert status == 503 and "capacity" in document["error"]
            assert refusal(relay.ws_url)[0] == 503
        else:
            assert status == 429 and "one diagnostic at a time" in document["error"]
        assert fresh_model.handshakes == 1
    finally:
        first.join(5)
    assert first.value[0] == 502 and first.value[2]["stage"] == "session"
    fresh_model.behaviour = Behaviour.NORMAL
    assert _diagnose(relay)[0] == 200  # over: the next one runs
    assert relay.app.counter.total() == 0


def test_a_minimum_interval_between_two(make_relay: Any, fresh_model: StandinModel) -> None:
    relay = make_relay(fresh_model.url, request_limits=RequestLimits(diagnostic_interval_s=2.0))
    assert _diagnose(relay)[0] == 200
    status, headers, _ = _diagnose(relay)
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 2
    assert wait_until(lambda: _diagnose(relay)[0] == 200, 5, interval_s=0.1)
    assert fresh_model.handshakes == 2


def test_refused_at_capacity_and_while_draining(
    make_relay: Any, fresh_model: StandinModel, teardown: Teardown
) -> None:
    relay = make_relay(fresh_model.url, RELAY_MAX_CALLS="1")
    call = GoodCall(relay.ws_url).begin()
    teardown(call.abort)
    call.stream_for(3)
    status, _, document = _diagnose(relay)
    assert status == 503 and "capacity" in document["error"]
    assert call.hang_up().code == 1000
    relay.app.begin_drain()
    status, _, document = _diagnose(relay)
    assert status == 503 and "draining" in document["error"]
    assert fresh_model.handshakes == 1  # the call's only


def test_a_flood_of_wrong_tokens_writes_a_few_lines(
    make_relay: Any, fresh_model: StandinModel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    relay = make_relay(fresh_model.url, request_limits=RequestLimits(log_burst=5, log_per_s=0.5))
    started = time.monotonic()
    for _ in range(50):
        assert get(relay.http_url + DIAGNOSTIC, {"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("diagnostic.refused ")]
    trickled = (time.monotonic() - started) * 0.5  # what the bucket refilled meanwhile
    assert 5 <= len(refused) <= 5 + trickled + 1, refused
    assert all("reason=unauthorized status=401" in line for line in refused), refused
    assert fresh_model.handshakes == 0


# -- OpenAI quoting the key -------------------------------------------------------------------------

# OpenAI's 401 quotes the key it was given, masked but for its ends (here: the relay's own).
QUOTED_KEY = API_KEY[:8] + "*" * (len(API_KEY) - 12) + API_KEY[-4:]
REFUSAL_BODY = json.dumps({"error": {
    "message": f"Incorrect API key provided: {QUOTED_KEY}. You can find your API key at "
               "https://platform.openai.com/account/api-keys.",
    "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}).encode()


@pytest.fixture
def quoting_openai() -> Iterator[str]:
    """A stand-in for OpenAI's refusal, written by hand: every upgrade gets that 401."""

    def answer(sock: Any, _address: Any) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                return
            head += chunk
        sock.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(REFUSAL_BODY) + REFUSAL_BODY)
        sock.close()

    server = StreamServer(("127.0.0.1", 0), answer)
    server.start()
    yield f"ws://127.0.0.1:{server.server_port}/v1/realtime"
    server.stop()


def test_a_key_openai_quotes_reaches_neither_an_answer_nor_a_log(
    make_relay: Any, quoting_openai: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="relay")
    relay: RunningRelay = make_relay(quoting_openai)
    status, _, body = get(relay.http_url + DIAGNOSTIC, DIAGNOSTIC_AUTH)
    document = json.loads(body)
    assert status == 502 and (document["stage"], document["http_status"]) == ("handshake", 401)
    assert document["error_message"].startswith("Incorrect API key provided: [key redacted]. You can find")
    # A call through the same upstream fails the same way, and logs why.
    ws = connect(relay.ws_url)
    call = GoodCall(relay.ws_url)
    ws.send(call.stream.connected())
    ws.send(start_with_token(call.stream))
    assert await_close(ws, 5).code == 1011
    assert wait_until(lambda: "openai.connect_failed" in caplog.text, 3)
    for text in (body.decode(), caplog.text):
        assert "sk-" not in text and QUOTED_KEY not in text
    assert "[key redacted]" in caplog.text


def test_under_gunicorn_one_diagnostic_for_the_whole_instance(
    fresh_model: StandinModel, tmp_path: Path, teardown: Teardown
) -> None:
    relay = launch_gunicorn(fresh_model.url, tmp_path, RELAY_WORKERS="2")
    teardown(lambda: stop_gunicorn(relay))
    # Both workers loaded (and past installing their signal handlers: a SIGTERM in a worker's
    # first moments is lost, and stopping would then wait for the graceful timeout).
    assert wait_until(lambda: relay.log().count("relay.configured") == 2, 10)
    statuses = _all_at_once(relay, 10)
    assert statuses == [200] + [429] * 9, statuses
    assert fresh_model.handshakes == 1
    FIGURES["diagnostic"] = "10 at once on 2 workers: 1 Realtime session, 9 answered 429 (Retry-After)"
