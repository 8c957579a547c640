"""Who gets in: nobody without Twilio's signature and a valid, unused stream token.

A Realtime session costs money from its first second and carries the caller's audio, so
none of these may open one (the stand-in counts every handshake and session) or get a
single frame of audio upstream, even when they keep sending media after being refused:

- stream tokens: missing, forged, expired, for another CallSid, malformed, empty,
  oversized, tampered with, under another parameter name, replayed (after the first
  call and while it is still live);
- the upgrade: unsigned, forged, signed for another URL or with another auth token, for
  another path, malformed;
- the webhook: an unsigned or forged incoming-call POST gets no TwiML and no token;
- the diagnostic endpoint without its exact bearer token.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import websocket
from twilio.request_validator import RequestValidator

from relay import stream_token
from scripts.fakes.openai import StandinModel
from scripts.fakes.twilio_messages import InboundStream, new_sid
from tests.conftest import AUTH_TOKEN, DIAGNOSTIC_TOKEN, RunningRelay
from tests.hardening.support import (
    FIGURES,
    STREAM_PATH,
    GoodCall,
    Teardown,
    await_close,
    connect,
    mint,
    quiet_frame,
    refusal,
    signature_for,
    start_with_token,
    wait_until,
)
from tests.helpers import get_json
from tests.webhook.conftest import PUBLIC_URL, sign, voice_form, webhook_env
from webhook_app import create_app
from webhook_app.config import WebhookConfig


@pytest.fixture
def standin(fresh_model: StandinModel) -> StandinModel:
    """A stand-in of this test's own: its handshake count starts at zero."""
    return fresh_model


@pytest.fixture
def relay(make_relay: Any, fresh_model: StandinModel) -> RunningRelay:
    """An in-process relay aimed at it."""
    return make_relay(fresh_model.url)  # type: ignore[no-any-return]


def _tokens(call_sid: str) -> dict[str, tuple[dict[str, str], str]]:
    """Each bad token: (customParameters, the close reason the relay must give)."""
    good = mint(call_sid)
    version, expires, mac = good.split(".")
    name = stream_token.PARAMETER_NAME
    return {
        "missing": ({}, "token_missing"),
        "empty": ({name: ""}, "token_missing"),
        "forged": ({name: mint(call_sid, secret="attacker-secret-" * 3)}, "token_mismatch"),
        "expired": ({name: mint(call_sid, now=time.time() - 900)}, "token_expired"),
        "other_call": ({name: mint(new_sid("CA"))}, "token_mismatch"),
        "expiry_extended": ({name: f"{version}.{int(expires) + 86400}.{mac}"}, "token_mismatch"),
        "malformed": ({name: "v1.not-a-number.x"}, "token_malformed"),
        "other_version": ({name: f"v1.{expires}.{mac}"}, "token_malformed"),
        "unicode_digits": ({name: f"v2.{'١٢٣'}.{mac}"}, "token_malformed"),
        "called_number_altered": ({name: good, stream_token.CALLED_PARAMETER: "+15550003333"}, "token_mismatch"),
        "oversized": ({name: good + "A" * 300}, "token_malformed"),
        "wrong_parameter_name": ({"token": good}, "token_missing"),
    }


TOKEN_CASES = list(_tokens("CA" + "0" * 32)) + ["replayed_after_the_call", "replayed_during_the_call"]


def _start_and_push_audio(relay: RunningRelay, call_sid: str, params: dict[str, str]) -> tuple[int | None, str]:
    """A signed stream whose start carries ``params``, then media anyway; how it was closed."""
    stream = InboundStream(call_sid)
    ws = connect(relay.ws_url)
    ws.send(stream.connected())
    ws.send(start_with_token(stream, params))
    try:
        for _ in range(20):  # it keeps talking, as if it had been let in
            ws.send(stream.media(quiet_frame()))
    except (websocket.WebSocketException, OSError):
        pass  # the relay has hung up already
    closed = await_close(ws, 3)
    return closed.code, closed.reason


@pytest.mark.parametrize("case", TOKEN_CASES)
def test_no_valid_unused_stream_token_no_openai_session(
    case: str, relay: RunningRelay, standin: StandinModel, caplog: pytest.LogCaptureFixture,
    teardown: Teardown,
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    call_sid = new_sid("CA")
    if case.startswith("replayed"):
        first = GoodCall(relay.ws_url, call_sid=call_sid).begin()  # the real call, with its token
        teardown(first.abort)
        first.stream_for(3)
        params = {stream_token.PARAMETER_NAME: mint(call_sid)}
        if case == "replayed_after_the_call":
            assert first.hang_up().code == 1000
        code, reason = _start_and_push_audio(relay, call_sid, params)
        assert (code, reason) == (1008, "token_replayed")
        if case == "replayed_during_the_call":
            first.stream_for(len(first.sent) + 3)  # the real call goes on, untouched
            assert first.hang_up().code == 1000
        first.assert_lossless(standin)
        assert standin.handshakes == 1 and len(standin.sessions) == 1
        assert "call.rejected" in caplog.text and "reason=token_replayed" in caplog.text
    else:
        params, expected = _tokens(call_sid)[case]
        code, reason = _start_and_push_audio(relay, call_sid, params)
        assert (code, reason) == (1008, expected)
        assert standin.handshakes == 0 and standin.sessions == [], "a Realtime session was opened"
        assert "call.rejected" in caplog.text and f"reason={expected}" in caplog.text
    token_texts = [p for p in params.values() if len(p) > 8]
    assert not any(t in caplog.text for t in token_texts), "a stream token was logged"
    FIGURES.setdefault("refused_stream_tokens", [])
    FIGURES["refused_stream_tokens"].append(case)  # type: ignore[attr-defined]


# -- the upgrade -----------------------------------------------------------------------------------


def _signature(kind: str, ws_base: str) -> str | None:
    validator = RequestValidator(AUTH_TOKEN)
    return {
        "unsigned": None,
        "forged": "bm90IGEgc2lnbmF0dXJl",
        "empty": "",
        "another_url": validator.compute_signature("wss://somewhere-else.example.com" + STREAM_PATH, {}),
        "another_auth_token": signature_for(ws_base, "another-auth-token-0123456789"),
        "with_a_query_string": validator.compute_signature(ws_base + STREAM_PATH + "?x=1", {}),
        "with_form_params": validator.compute_signature(ws_base + STREAM_PATH, {"CallSid": "CA" + "1" * 32}),
    }[kind]


UPGRADE_CASES = ["unsigned", "forged", "empty", "another_url", "another_auth_token", "with_a_query_string",
                 "with_form_params"]


@pytest.mark.parametrize("case", UPGRADE_CASES)
def test_an_unsigned_or_forged_upgrade_is_refused_before_the_handshake(
    case: str, relay: RunningRelay, standin: StandinModel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    status, body = refusal(relay.ws_url, signature=_signature(case, relay.ws_url))
    assert status == 403 and "X-Twilio-Signature missing or invalid" in body
    assert "call.refused reason=bad_signature" in caplog.text
    assert standin.handshakes == 0 and standin.sessions == []
    assert relay.app.counter.total() == 0  # no call slot was taken
    FIGURES.setdefault("refused_upgrades", [])
    FIGURES["refused_upgrades"].append(case)  # type: ignore[attr-defined]


def test_a_signed_upgrade_elsewhere_or_malformed_gets_no_call(relay: RunningRelay, standin: StandinModel) -> None:
    # Another path, signed for it: 404 before any upgrade.
    other = RequestValidator(AUTH_TOKEN).compute_signature(relay.ws_url + "/other", {})
    try:
        websocket.create_connection(relay.ws_url + "/other", header=[f"X-Twilio-Signature: {other}"],
                                    suppress_origin=True, timeout=5).shutdown()
        raise AssertionError("an upgrade to /other was accepted")
    except websocket.WebSocketBadStatusException as exc:
        assert exc.status_code == 404
    # A signed upgrade the WebSocket layer itself rejects (no Sec-WebSocket-Key): its slot
    # must come back, or a few of these would fill the relay.
    request = urllib.request.Request(relay.http_url + STREAM_PATH, headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "X-Twilio-Signature": signature_for(relay.ws_url)})
    for _ in range(5):
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                raise AssertionError(f"a malformed upgrade got {response.status}")
        except urllib.error.HTTPError as exc:
            with exc:
                assert exc.code in (400, 426)
    assert wait_until(lambda: relay.app.counter.total() == 0, 2), "a malformed upgrade kept its call slot"
    assert standin.handshakes == 0
    FIGURES.setdefault("refused_upgrades", [])
    FIGURES["refused_upgrades"] += ["another_path", "malformed_handshake"]  # type: ignore[operator]


# -- the webhook ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["unsigned", "forged", "signed_for_another_url", "another_auth_token"])
def test_an_unsigned_webhook_gets_no_twiml_and_no_token(case: str) -> None:
    app = create_app(WebhookConfig.from_env(webhook_env()))
    call_sid = new_sid("CA")
    form = voice_form(call_sid)
    headers = {
        "unsigned": {},
        "forged": {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        "signed_for_another_url": {"X-Twilio-Signature": sign("https://elsewhere.example.com/twilio/voice", form)},
        "another_auth_token": {"X-Twilio-Signature": sign(PUBLIC_URL + "/twilio/voice", form, "x" * 32)},
    }[case]
    response = app.test_client().post("/twilio/voice", data=form, headers=headers)
    assert response.status_code == 403
    assert b"<Stream" not in response.data and stream_token.PARAMETER_NAME.encode() not in response.data
    FIGURES.setdefault("refused_webhooks", [])
    FIGURES["refused_webhooks"].append(case)  # type: ignore[attr-defined]


# -- the diagnostic endpoint ----------------------------------------------------------------------

DIAGNOSTIC_CASES: dict[str, tuple[dict[str, str], str]] = {
    "no_header": ({}, ""),
    "wrong_token": ({"Authorization": "Bearer wrong-token-0123456789"}, ""),
    "no_scheme": ({"Authorization": DIAGNOSTIC_TOKEN}, ""),
    "lowercase_scheme": ({"Authorization": f"bearer {DIAGNOSTIC_TOKEN}"}, ""),
    "basic_auth": ({"Authorization": f"Basic {DIAGNOSTIC_TOKEN}"}, ""),
    "token_prefix_only": ({"Authorization": f"Bearer {DIAGNOSTIC_TOKEN[:-1]}"}, ""),
    "token_in_query": ({}, f"?token={DIAGNOSTIC_TOKEN}"),
    "token_in_another_header": ({"X-Diagnostic-Token": DIAGNOSTIC_TOKEN}, ""),
}


@pytest.mark.parametrize("case", list(DIAGNOSTIC_CASES))
def test_the_diagnostic_opens_nothing_without_its_token(
    case: str, relay: RunningRelay, standin: StandinModel
) -> None:
    headers, query = DIAGNOSTIC_CASES[case]
    status, document = get_json(relay.http_url + "/diagnostic/openai" + query, headers)
    assert status == 401 and document["ok"] is False
    assert standin.handshakes == 0 and standin.sessions == []
    FIGURES.setdefault("refused_diagnostics", [])
    FIGURES["refused_diagnostics"].append(case)  # type: ignore[attr-defined]


def test_a_disabled_diagnostic_opens_nothing_whatever_it_is_sent(make_relay: Any, standin: StandinModel) -> None:
    relay = make_relay(standin.url, DIAGNOSTIC_TOKEN="")
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {DIAGNOSTIC_TOKEN}"}):
        status, document = get_json(relay.http_url + "/diagnostic/openai", headers)
        assert status == 404 and "DIAGNOSTIC_TOKEN" in document["error"]
    assert standin.handshakes == 0 and standin.sessions == []

