"""scripts/verify_webhook.py against the real webhook app and against small misbehaving ones,
all on loopback: signed as Twilio signs, judged on the diagnosis and the exit code."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from scripts import verify_webhook
from tests.conftest import AUTH_TOKEN, free_port
from tests.scripts.conftest import SECRETS, Serve, WSGIApp

Run = Callable[..., tuple[int, str]]
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


def test_a_webhook_that_accepts_unsigned_requests(run_script: Run, serve: Serve) -> None:
    port = serve(twiml_app(check_signature=False))
    code, out = run_script(verify_webhook.main, f"http://127.0.0.1:{port}", "--relay", RELAY, env=SECRETS)
    assert code == 1
    assert "✗ unsigned POST → 403 HTTP 200 text/xml to a POST without X-Twilio-Signature" in out
    assert ("why: the webhook accepts unsigned requests — anyone can start calls on your OpenAI bill"
            in out)
    assert "– signed POST → 200 TwiML not run: unsigned POST → 403 failed" in out


def test_nothing_listening(run_script: Run) -> None:
    port = free_port()
    code, out = run_script(verify_webhook.main, f"http://127.0.0.1:{port}", env=SECRETS)
    assert code == 1
    assert f"why: nothing is listening on 127.0.0.1:{port} — the webhook is not running" in out


def test_a_webhook_checking_another_public_url(run_script: Run, start_webhook: StartWebhook) -> None:
    webhook = start_webhook(RELAY, public_url="https://webhook.example.com")
    code, out = run_script(verify_webhook.main, webhook, env=SECRETS)
    assert code == 1
    assert ("why: signature check failed: WEBHOOK_PUBLIC_URL differs from the URL Twilio calls, or the auth "
            "token is wrong — the webhook checks signatures for https://webhook.example.com/twilio/voice, this "
            f"check signed for {webhook}/twilio/voice") in out
    # Told the public URL, the same webhook passes (relay not given: skipped, exit 3).
    code, out = run_script(verify_webhook.main, webhook, "--public-url", "https://webhook.example.com", env=SECRETS)
    assert code == 3 and "– points at the relay pass --relay" in out


def test_the_wrong_relay_and_a_different_stream_secret(run_script: Run, start_webhook: StartWebhook) -> None:
    webhook = start_webhook(RELAY)
    code, out = run_script(verify_webhook.main, webhook, "--relay", "wss://other.example.com", env=SECRETS)
    assert code == 1
    assert ("✗ points at the relay <Stream url> is wss://relay.example.com/twilio/realtime, expected "
            "wss://other.example.com/twilio/realtime") in out

    env = {**SECRETS, "STREAM_TOKEN_SECRET": "the-relays-other-secret-0123456789abcdef"}
    code, out = run_script(verify_webhook.main, webhook, "--relay", RELAY, env=env)
    assert code == 1
    assert "✗ stream token the token does not verify: mismatch" in out
    assert "STREAM_TOKEN_SECRET differs between the webhook and the relay" in out


@pytest.mark.parametrize("app,failing,why", [
    (twiml_app(url="ws://relay.example.com/twilio/realtime"), "<Stream> URL", "31922 URL Schema Not Supported"),
    (twiml_app(url=RELAY + "/twilio/realtime?token=abc"), "<Stream> URL", "Twilio drops it"),
    (twiml_app(url=RELAY + "/media"), "<Stream> URL", "the relay streams at /twilio/realtime"),
    (twiml_app(after=""), "fallback after </Connect>", "the caller hears silence and the call drops"),
])
def test_twiml_problems(run_script: Run, serve: Serve, app: WSGIApp, failing: str, why: str) -> None:
    port = serve(app)
    env = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN}  # no STREAM_TOKEN_SECRET: the fixed token is only checked for shape
    code, out = run_script(verify_webhook.main, f"http://127.0.0.1:{port}", env=env)
    assert code == 1
    assert f"FAILED at {failing}" in out and why in out


def test_without_credentials_only_the_unsigned_check_runs(run_script: Run, start_webhook: StartWebhook) -> None:
    code, out = run_script(verify_webhook.main, start_webhook(RELAY))
    assert code == 3
    assert "✓ unsigned POST → 403 refused with 403" in out
    assert "– signed POST → 200 TwiML set TWILIO_AUTH_TOKEN" in out
    assert "– TwiML parses not run: needs signed POST → 200 TwiML (skipped)" in out
