"""scripts/verify_webhook.py against the real webhook app and against small misbehaving ones,
all on loopback: signed as Twilio signs, judged on the diagnosis code and the exit code (the
sentences are checked once each by test_diagnoses.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from scripts import verify_webhook
from tests.conftest import AUTH_TOKEN, free_port
from tests.scripts.conftest import SECRETS, Report, Serve, WSGIApp, failure, layer

Run = Callable[..., tuple[int, str]]
RunJson = Callable[..., tuple[int, Report]]
StartWebhook = Callable[..., str]

RELAY = "wss://relay.example.com"
LAYERS = ["unsigned_post", "signed_post", "twiml", "stream_url", "relay", "stream_token", "status_callback",
          "fallback"]
GOOD_TWIML = ('<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="{url}" '
              'statusCallback="https://webhook.example.com/twilio/status" statusCallbackMethod="POST">'
              '<Parameter name="streamToken" value="v2.{expires}.abc"/></Stream></Connect>{after}</Response>')


def twiml_app(url: str = RELAY + "/twilio/realtime", after: str = "<Say>Sorry.</Say><Hangup/>",
              check_signature: bool = True) -> WSGIApp:
    """A webhook that answers fixed TwiML; it refuses requests without a signature header, or not."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if check_signature and not environ.get("HTTP_X_TWILIO_SIGNATURE"):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"403 Forbidden: X-Twilio-Signature header missing\n"]
        body = GOOD_TWIML.format(url=url, expires=4_000_000_000, after=after).encode()
        start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def test_a_healthy_webhook_passes_every_layer(run_script: Run, start_webhook: StartWebhook) -> None:
    webhook = start_webhook(RELAY)
    code, out = run_script(verify_webhook.main, webhook, "--relay", RELAY, env=SECRETS)
    assert code == 0, out
    assert out.count("✓") == 8
    assert "✓ <Stream> URL wss://relay.example.com/twilio/realtime" in out
    assert "✓ stream token verifies with STREAM_TOKEN_SECRET for this CallSid, expires in " in out
    assert "✓ fallback after </Connect> <Say> then <Hangup>" in out
    assert AUTH_TOKEN not in out

    code, out = run_script(verify_webhook.main, webhook + "/twilio/voice", "--relay", RELAY, "--json", env=SECRETS)
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["exit_code"] == 0
    assert [item["name"] for item in report["layers"]] == LAYERS
    assert all(item["ok"] and not item["skipped"] for item in report["layers"])


def test_a_webhook_that_accepts_unsigned_requests(run_script: Run, run_json: RunJson, serve: Serve) -> None:
    port = serve(twiml_app(check_signature=False))
    code, report = run_json(verify_webhook.main, f"http://127.0.0.1:{port}", "--relay", RELAY, env=SECRETS)
    assert code == 1 and failure(report) == ("unsigned_post", "webhook_accepts_unsigned")
    assert layer(report, "unsigned_post")["detail"] == "HTTP 200 text/xml to a POST without X-Twilio-Signature"
    assert layer(report, "signed_post")["status"] == "not_run"
    # as people read it
    code, out = run_script(verify_webhook.main, f"http://127.0.0.1:{port}", "--relay", RELAY, env=SECRETS)
    assert "✗ unsigned POST → 403 HTTP 200 text/xml to a POST without X-Twilio-Signature" in out
    assert "why: the webhook accepts unsigned requests" in out
    assert "– signed POST → 200 TwiML not run: unsigned POST → 403 failed" in out


def test_nothing_listening(run_json: RunJson) -> None:
    port = free_port()
    code, report = run_json(verify_webhook.main, f"http://127.0.0.1:{port}", env=SECRETS)
    assert code == 1 and failure(report) == ("unsigned_post", "webhook_refused")
    assert f"127.0.0.1:{port}" in layer(report, "unsigned_post")["diagnosis"]


def test_a_webhook_checking_another_public_url(run_script: Run, run_json: RunJson,
                                               start_webhook: StartWebhook) -> None:
    webhook = start_webhook(RELAY, public_url="https://webhook.example.com")
    code, report = run_json(verify_webhook.main, webhook, env=SECRETS)
    assert code == 1 and failure(report) == ("signed_post", "webhook_signature_url_mismatch")
    why = layer(report, "signed_post")["diagnosis"]
    assert "https://webhook.example.com/twilio/voice" in why and f"{webhook}/twilio/voice" in why
    # Told the public URL, the same webhook passes (relay not given: skipped, exit 3).
    code, out = run_script(verify_webhook.main, webhook, "--public-url", "https://webhook.example.com", env=SECRETS)
    assert code == 3 and "– points at the relay pass --relay" in out


def test_the_wrong_relay_and_a_different_stream_secret(run_json: RunJson, start_webhook: StartWebhook) -> None:
    webhook = start_webhook(RELAY)
    code, report = run_json(verify_webhook.main, webhook, "--relay", "wss://other.example.com", env=SECRETS)
    assert code == 1 and failure(report) == ("relay", "stream_to_another_relay")
    assert layer(report, "relay")["detail"] == ("<Stream url> is wss://relay.example.com/twilio/realtime, expected "
                                                "wss://other.example.com/twilio/realtime")

    env = {**SECRETS, "STREAM_TOKEN_SECRET": "the-relays-other-secret-0123456789abcdef"}
    code, report = run_json(verify_webhook.main, webhook, "--relay", RELAY, env=env)
    assert code == 1 and failure(report) == ("stream_token", "stream_token_mismatch")
    assert layer(report, "stream_token")["detail"] == "the token does not verify: mismatch"


@pytest.mark.parametrize("app,failing", [
    (twiml_app(url="ws://relay.example.com/twilio/realtime"), ("stream_url", "stream_url_not_wss")),
    (twiml_app(url=RELAY + "/twilio/realtime?token=abc"), ("stream_url", "stream_url_has_query")),
    (twiml_app(url=RELAY + "/media"), ("stream_url", "stream_url_wrong_path")),
    (twiml_app(after=""), ("fallback", "fallback_missing")),
])
def test_twiml_problems(run_json: RunJson, serve: Serve, app: WSGIApp, failing: tuple[str, str]) -> None:
    port = serve(app)
    env = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN}  # no STREAM_TOKEN_SECRET: the fixed token is only checked for shape
    code, report = run_json(verify_webhook.main, f"http://127.0.0.1:{port}", env=env)
    assert code == 1 and failure(report) == failing


def test_without_credentials_only_the_unsigned_check_runs(run_script: Run, start_webhook: StartWebhook) -> None:
    code, out = run_script(verify_webhook.main, start_webhook(RELAY))
    assert code == 3
    assert "✓ unsigned POST → 403 refused with 403" in out
    assert "– signed POST → 200 TwiML set TWILIO_AUTH_TOKEN" in out
    assert "– TwiML parses not run: needs signed POST → 200 TwiML (skipped)" in out
