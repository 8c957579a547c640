"""POST /twilio/voice: signatures, the TwiML element by element, bad input."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator

from relay import stream_token as relay_token
from tests.conftest import AUTH_TOKEN, STREAM_SECRET
from tests.webhook.conftest import (
    CALLED,
    CALLER,
    NOW,
    PUBLIC_URL,
    RELAY_URL,
    Clock,
    new_call_sid,
    sign,
    voice_form,
    webhook_env,
)
from webhook_app import create_app
from webhook_app.config import DEFAULT_FALLBACK_MESSAGE, DEFAULT_STREAM_TOKEN_TTL_S, WebhookConfig

VOICE_URL = PUBLIC_URL + "/twilio/voice"
PostSigned = Callable[..., Any]


def stream_of(response: Any) -> ET.Element:
    root = ET.fromstring(response.data)
    stream = root.find("./Connect/Stream")
    assert stream is not None, response.data
    return stream


def parameters(stream: ET.Element) -> dict[str, str]:
    params = stream.findall("Parameter")
    assert all(set(p.attrib) == {"name", "value"} for p in params)
    return {p.attrib["name"]: p.attrib["value"] for p in params}


# -- signatures ---------------------------------------------------------------------------


def test_a_twilio_signed_call_is_answered_with_twiml(post_signed: PostSigned) -> None:
    response = post_signed("/twilio/voice", voice_form(new_call_sid()))

    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    assert response.data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')


def test_a_tampered_form_is_refused(client: FlaskClient) -> None:
    form = voice_form(new_call_sid())
    signature = sign(VOICE_URL, form)
    form["From"] = "+15550666"

    response = client.post("/twilio/voice", data=form, headers={"X-Twilio-Signature": signature})

    assert response.status_code == 403
    assert b"does not match" in response.data


def test_an_added_parameter_is_refused(client: FlaskClient) -> None:
    form = voice_form(new_call_sid())
    signature = sign(VOICE_URL, form)

    response = client.post("/twilio/voice", data={**form, "Digits": "1"},
                           headers={"X-Twilio-Signature": signature})

    assert response.status_code == 403


def test_a_signature_made_with_another_auth_token_is_refused(post_signed: PostSigned) -> None:
    response = post_signed("/twilio/voice", voice_form(new_call_sid()),
                           token="another-accounts-auth-token-000")

    assert response.status_code == 403


def test_a_request_without_signature_is_refused(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhook_app")

    response = client.post("/twilio/voice", data=voice_form(new_call_sid()))

    assert response.status_code == 403
    assert response.mimetype == "text/plain"
    assert b"X-Twilio-Signature header missing" in response.data
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split()[0] for r in warnings] == ["twilio.signature_rejected"]
    assert "reason=missing" in warnings[0].getMessage()
    assert AUTH_TOKEN not in caplog.text


def test_a_shared_key_signature_is_refused_with_its_reason(client: FlaskClient) -> None:
    form = voice_form(new_call_sid())
    response = client.post("/twilio/voice", data=form, headers={
        "X-Twilio-Signature": sign(VOICE_URL, form, "shared-key-secret-0123456789"),
        "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
    })

    assert response.status_code == 403
    assert b"Auth Token signatures only" in response.data


def test_behind_a_proxy_the_public_url_is_what_counts(client: FlaskClient) -> None:
    """The test client requests http://localhost/...; Twilio signed the public https URL."""
    form = voice_form(new_call_sid())

    signed_for_public = client.post("/twilio/voice", data=form,
                                    headers={"X-Twilio-Signature": sign(VOICE_URL, form)})
    internal_signature = sign("http://localhost/twilio/voice", form)
    signed_for_internal = client.post("/twilio/voice", data=form,
                                      headers={"X-Twilio-Signature": internal_signature})

    assert signed_for_public.status_code == 200
    assert signed_for_internal.status_code == 403


def test_forwarded_headers_do_not_change_the_url_checked(client: FlaskClient) -> None:
    form = voice_form(new_call_sid())
    attacker_host = "https://evil.example.net/twilio/voice"

    response = client.post("/twilio/voice", data=form, headers={
        "X-Twilio-Signature": sign(attacker_host, form),
        "Host": "evil.example.net", "X-Forwarded-Host": "evil.example.net", "X-Forwarded-Proto": "https",
    })

    assert response.status_code == 403


def test_the_query_string_is_part_of_the_signed_url(post_signed: PostSigned) -> None:
    form = voice_form(new_call_sid())

    with_query = post_signed("/twilio/voice", form, query="tenant=acme&x=1")
    signed_without_query = post_signed("/twilio/voice", form, query="tenant=acme&x=1", signed_url=VOICE_URL)

    assert with_query.status_code == 200
    assert signed_without_query.status_code == 403


def test_a_signature_over_the_url_with_explicit_port_is_accepted(post_signed: PostSigned) -> None:
    # Twilio is inconsistent about :443; RequestValidator tries both (docs/twilio-media-streams.md#signatures).
    response = post_signed("/twilio/voice", voice_form(new_call_sid()),
                           signed_url="https://webhook.example.com:443/twilio/voice")

    assert response.status_code == 200


# -- the TwiML, element by element ----------------------------------------------------------


def test_twiml_streams_to_the_relay_then_falls_back_to_say_and_hangup(post_signed: PostSigned) -> None:
    response = post_signed("/twilio/voice", voice_form(new_call_sid()))

    root = ET.fromstring(response.data)
    assert root.tag == "Response"
    assert [child.tag for child in root] == ["Connect", "Say", "Hangup"]
    connect, say, hangup = list(root)
    assert connect.attrib == {}
    assert [child.tag for child in connect] == ["Stream"]
    assert say.text == DEFAULT_FALLBACK_MESSAGE
    assert hangup.attrib == {} and list(hangup) == [] and not (hangup.text or "").strip()


def test_stream_attributes(post_signed: PostSigned) -> None:
    stream = stream_of(post_signed("/twilio/voice", voice_form(new_call_sid())))

    assert stream.attrib == {
        "url": RELAY_URL + "/twilio/realtime",
        "statusCallback": PUBLIC_URL + "/twilio/status",
        "statusCallbackMethod": "POST",
    }
    url = urlsplit(stream.attrib["url"])
    assert url.scheme == "wss"
    assert url.query == "" and url.fragment == ""
    assert "track" not in stream.attrib  # only inbound_track is valid with <Connect> (31941)
    assert [child.tag for child in stream] == ["Parameter"] * 3


def test_parameters_carry_the_token_and_the_numbers(post_signed: PostSigned) -> None:
    call_sid = new_call_sid()
    params = parameters(stream_of(post_signed("/twilio/voice", voice_form(call_sid))))

    assert list(params) == ["streamToken", "callerNumber", "calledNumber"]
    assert params["callerNumber"] == CALLER
    assert params["calledNumber"] == CALLED


def test_the_token_verifies_with_the_relays_verifier_for_this_call_only(post_signed: PostSigned) -> None:
    call_sid = new_call_sid()
    params = parameters(stream_of(post_signed("/twilio/voice", voice_form(call_sid))))

    assert relay_token.verify_parameters(STREAM_SECRET, params, call_sid, now=NOW + 1) == (
        int(NOW) + DEFAULT_STREAM_TOKEN_TTL_S, CALLER, CALLED)
    with pytest.raises(relay_token.StreamTokenError) as other_call:
        relay_token.verify_parameters(STREAM_SECRET, params, new_call_sid(), now=NOW + 1)
    assert other_call.value.reason == "mismatch"
    with pytest.raises(relay_token.StreamTokenError) as other_secret:
        relay_token.verify_parameters("another-stream-secret-0123456789abcdef", params, call_sid, now=NOW + 1)
    assert other_secret.value.reason == "mismatch"


def test_the_token_binds_the_numbers_the_twiml_carries(post_signed: PostSigned) -> None:
    """The relay picks the assistant by the called number: a caller must not be able to change it."""
    call_sid = new_call_sid()
    params = parameters(stream_of(post_signed("/twilio/voice", voice_form(call_sid))))

    for name, value in (("calledNumber", "+15550003333"), ("callerNumber", "+15550009999")):
        with pytest.raises(relay_token.StreamTokenError) as altered:
            relay_token.verify_parameters(STREAM_SECRET, {**params, name: value}, call_sid, now=NOW + 1)
        assert altered.value.reason == "mismatch"


def test_the_token_expires_after_the_configured_ttl() -> None:
    clock = Clock()
    app = create_app(WebhookConfig.from_env(webhook_env(STREAM_TOKEN_TTL_SECONDS="60")), clock=clock)
    call_sid = new_call_sid()
    form = voice_form(call_sid)
    response = app.test_client().post("/twilio/voice", data=form,
                                      headers={"X-Twilio-Signature": sign(VOICE_URL, form)})
    params = parameters(stream_of(response))

    assert relay_token.verify_parameters(STREAM_SECRET, params, call_sid, now=NOW + 60).expires == int(NOW) + 60
    with pytest.raises(relay_token.StreamTokenError) as expired:
        relay_token.verify_parameters(STREAM_SECRET, params, call_sid, now=NOW + 60 + 31)  # relay allows 30 s skew
    assert expired.value.reason == "expired"


def test_each_call_gets_its_own_token(post_signed: PostSigned) -> None:
    first = parameters(stream_of(post_signed("/twilio/voice", voice_form(new_call_sid()))))
    second = parameters(stream_of(post_signed("/twilio/voice", voice_form(new_call_sid()))))

    assert first["streamToken"] != second["streamToken"]


def test_values_are_escaped_not_spliced_into_xml() -> None:
    message = 'Sorry & goodbye <for now> "friend"'
    app = create_app(WebhookConfig.from_env(webhook_env(FALLBACK_MESSAGE=message)), clock=Clock())
    form = voice_form(new_call_sid(), From="client:alice&bob<x>")
    response = app.test_client().post("/twilio/voice", data=form,
                                      headers={"X-Twilio-Signature": sign(VOICE_URL, form)})

    root = ET.fromstring(response.data)
    assert root.findtext("Say") == message
    assert parameters(stream_of(response))["callerNumber"] == "client:alice&bob<x>"


def test_an_absent_caller_id_leaves_out_the_parameter(post_signed: PostSigned) -> None:
    form = voice_form(new_call_sid())
    del form["From"]

    params = parameters(stream_of(post_signed("/twilio/voice", form)))

    assert list(params) == ["streamToken", "calledNumber"]


# -- bad input ----------------------------------------------------------------------------


def test_get_is_405(client: FlaskClient) -> None:
    response = client.get("/twilio/voice")

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert b"HTTP POST" in response.data


def test_a_signed_form_without_callsid_is_400_with_a_clear_message(post_signed: PostSigned) -> None:
    form = voice_form("x")
    del form["CallSid"]

    response = post_signed("/twilio/voice", form)

    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert b"CallSid is missing" in response.data


def test_a_re_cut_signed_form_mints_nothing(client: FlaskClient) -> None:
    """Twilio's signature runs names and values together, so it cannot tell these two forms apart."""
    call_sid = new_call_sid()
    form = voice_form(call_sid)
    signature = sign(VOICE_URL, form)
    re_cut = {k: v for k, v in form.items() if k != "CallStatus"}
    re_cut["CallSid"] = call_sid + "CallStatus" + form["CallStatus"]
    assert RequestValidator(AUTH_TOKEN).validate(VOICE_URL, re_cut, signature)  # the same signature holds

    response = client.post("/twilio/voice", data=re_cut, headers={"X-Twilio-Signature": signature})

    assert response.status_code == 400
    assert b"CA and 32 hex digits" in response.data and b"<Stream" not in response.data


@pytest.mark.parametrize("call_sid", ["CA1", "CA" + "a" * 31, "CA" + "a" * 32 + "\n", "CA" + "z" * 32,
                                      "XX" + "a" * 32])
def test_only_a_twilio_shaped_call_sid_gets_a_token(post_signed: PostSigned, call_sid: str) -> None:
    response = post_signed("/twilio/voice", voice_form(call_sid))

    assert response.status_code == 400
    assert b"streamToken" not in response.data


def test_an_unsigned_form_without_callsid_is_403_not_400(client: FlaskClient) -> None:
    assert client.post("/twilio/voice", data={"From": CALLER}).status_code == 403


def test_an_oversized_body_is_413(client: FlaskClient) -> None:
    form = voice_form(new_call_sid(), Padding="x" * (65 * 1024))

    response = client.post("/twilio/voice", data=form, headers={"X-Twilio-Signature": sign(VOICE_URL, form)})

    assert response.status_code == 413
    assert b"1-2 KB" in response.data


def test_an_unknown_path_is_404_naming_the_routes(client: FlaskClient) -> None:
    response = client.post("/voice")

    assert response.status_code == 404
    assert b"/twilio/voice" in response.data


# -- logging ------------------------------------------------------------------------------


def test_logs_name_the_call_but_no_secret_token_or_number(
    post_signed: PostSigned, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    call_sid = new_call_sid()

    token = parameters(stream_of(post_signed("/twilio/voice", voice_form(call_sid))))["streamToken"]

    lines = [r.getMessage() for r in caplog.records if r.name.startswith("webhook_app")]
    assert any(line.startswith("twilio.voice ") and f"call_sid={call_sid}" in line for line in lines)
    for secret in (AUTH_TOKEN, STREAM_SECRET, token, token.rsplit(".", 1)[1], CALLER, CALLED):
        assert secret not in caplog.text

