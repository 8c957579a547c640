"""A call slot taken at admission always comes back, however the handshake fails.

``X-Twilio-Signature`` on the upgrade covers only the URL, so it is the same for every call:
anyone who has seen one upgrade's headers can replay it. Each way a signed handshake can
go wrong is sent many times to a relay with ``RELAY_MAX_CALLS=2`` (in process and under
gunicorn): a bad, missing or non-base64 ``Sec-WebSocket-Key``, an unsupported
``Sec-WebSocket-Version``, HTTP/1.0, a POST, a missing ``Connection: Upgrade``, a caller
that hangs up in the middle of its head, right after it (FIN) or resets the connection
(RST) before the ``101`` is written. Each answer is a plain 4xx (never 500, never a 101
for a draft version), nothing reaches OpenAI, ``/healthz`` counts 0 calls afterwards, and
a good call still gets through, byte for byte.
"""

from __future__ import annotations

import base64
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websocket

from scripts.fakes.openai import StandinModel
from tests.conftest import DIAGNOSTIC_AUTH, launch_gunicorn, stop_gunicorn
from tests.hardening.support import (
    FIGURES,
    GoodCall,
    Teardown,
    raw_head,
    send_raw,
    start_with_token,
    status_of,
    wait_until,
)
from tests.helpers import get_json

MAX_CALLS = 2
TRIES = 3 * MAX_CALLS  # each way, three times what would fill the relay if a slot leaked


@dataclass(frozen=True)
class Failure:
    """One way a signed handshake fails: what is sent, how the caller leaves, what it must get."""

    fields: dict[str, str | None] = field(default_factory=dict)
    then: str = "read"  # read the answer, or leave: "close" (FIN) / "reset" (RST), reading nothing
    status: int | None = None  # the answer expected (None: the caller is gone before any)
    reason: str | None = None  # the log line's reason
    head: dict[str, Any] = field(default_factory=dict)  # method, path, protocol
    cut: bool = False  # hang up halfway through the head


FAILURES = {
    "key_not_base64": Failure({"Sec_WebSocket_Key": "!!!not-base64!!!"}, status=400, reason="bad_key"),
    "key_not_16_bytes": Failure({"Sec_WebSocket_Key": base64.b64encode(b"short").decode()}, status=400,
                                reason="bad_key"),
    "key_not_ascii": Failure({"Sec_WebSocket_Key": "d\xe9lIHNhbXBsZSBub25jZQ=="}, status=400, reason="bad_key"),
    "key_missing": Failure({"Sec_WebSocket_Key": None}, status=400, reason="no_key"),
    "draft_version_8": Failure({"Sec_WebSocket_Version": "8"}, status=426, reason="websocket_version"),
    "unknown_version": Failure({"Sec_WebSocket_Version": "99"}, status=426, reason="websocket_version"),
    "version_missing": Failure({"Sec_WebSocket_Version": None}, status=426, reason="websocket_version"),
    "http_1_0": Failure(head={"protocol": "HTTP/1.0"}, status=400, reason="http_version"),
    "post": Failure(head={"method": "POST"}, status=405, reason="not_get"),
    "no_connection_upgrade": Failure({"Connection": "keep-alive"}, status=400, reason="no_connection_upgrade"),
    "hang_up_mid_head": Failure(cut=True, then="close"),
    "hang_up_after_head": Failure(then="close"),
    "reset_after_head": Failure(then="reset"),
}


def _try(url: str, ws_base: str, failure: Failure) -> int | None:
    """Send one failing handshake; the status it got (None when the caller left first)."""
    data = raw_head(ws_base, **failure.head, **failure.fields)
    if failure.cut:
        data = data[: len(data) // 2]
    answer = send_raw(url, data, then=failure.then)
    return status_of(answer) if failure.then == "read" else None


def _slots_back_and_a_good_call(http_url: str, ws_url: str, model: StandinModel, teardown: Teardown) -> None:
    health = http_url + "/healthz"
    assert wait_until(lambda: get_json(health, DIAGNOSTIC_AUTH)[1]["active_calls"] == 0, 5), get_json(
        health, DIAGNOSTIC_AUTH)
    assert get_json(health)[0] == 200
    call = GoodCall(ws_url).begin()
    teardown(call.abort)
    call.stream_for(5)
    assert call.hang_up().code == 1000
    call.assert_lossless(model)


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failed_handshake_answers_4xx_and_gives_its_slot_back(
    case: str, make_relay: Any, fresh_model: StandinModel, caplog: pytest.LogCaptureFixture,
    teardown: Teardown,
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    relay = make_relay(fresh_model.url, RELAY_MAX_CALLS=str(MAX_CALLS))
    failure = FAILURES[case]
    statuses = [_try(relay.http_url, relay.ws_url, failure) for _ in range(TRIES)]
    assert statuses == [failure.status] * TRIES
    if failure.reason:
        refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("call.refused ")]
        assert len(refused) == TRIES and all(f"reason={failure.reason} status={failure.status}" in line
                                             for line in refused), refused
    assert wait_until(lambda: relay.app.counter.total() == 0, 5), "a failed handshake kept its call slot"
    assert fresh_model.handshakes == 0, "a failed handshake reached OpenAI"
    _slots_back_and_a_good_call(relay.http_url, relay.ws_url, fresh_model, teardown)
    FIGURES.setdefault("failed_handshakes", [])
    FIGURES["failed_handshakes"].append(case)  # type: ignore[attr-defined]


def test_under_gunicorn_every_failed_handshake_gives_its_slot_back(
    fresh_model: StandinModel, tmp_path: Path, teardown: Teardown
) -> None:
    relay = launch_gunicorn(fresh_model.url, tmp_path, RELAY_MAX_CALLS=str(MAX_CALLS))
    teardown(lambda: stop_gunicorn(relay))
    for case, failure in FAILURES.items():
        statuses = [_try(relay.http_url, relay.ws_url, failure) for _ in range(TRIES)]
        assert statuses == [failure.status] * TRIES, (case, statuses)
    assert " 500 " not in relay.log() and "Traceback" not in relay.log(), relay.log()
    assert fresh_model.handshakes == 0
    _slots_back_and_a_good_call(relay.http_url, relay.ws_url, fresh_model, teardown)
    FIGURES["failed_handshakes_gunicorn"] = (f"{len(FAILURES)} kinds x {TRIES} at RELAY_MAX_CALLS={MAX_CALLS}: "
                                             f"all 4xx or gone, 0 calls left, a good call lossless")


def test_frames_sent_right_behind_the_upgrade_reach_the_call(
    make_relay: Any, normal_model: StandinModel
) -> None:
    # A client may send its first frames before the 101 arrives: they belong to the call, and
    # reading the head must not swallow them.
    relay = make_relay(normal_model.url)
    call = GoodCall(relay.ws_url)
    frames = b"".join(websocket.ABNF.create_frame(text, websocket.ABNF.OPCODE_TEXT).format()
                      for text in (call.stream.connected(), start_with_token(call.stream)))
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
        sock.sendall(raw_head(relay.ws_url) + frames)
        answer = b""
        while b'"event":"media"' not in answer.replace(b" ", b""):
            chunk = sock.recv(65536)
            assert chunk, f"the relay hung up before the greeting: {answer[:200]!r}"
            answer += chunk
    assert status_of(answer) == 101
    assert wait_until(lambda: relay.app.counter.total() == 0, 5)
