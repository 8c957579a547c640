"""Fixtures for the webhook: a config passed in (never patched), a fixed clock, signing helpers."""

from __future__ import annotations

import base64
import secrets
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from gevent.pywsgi import WSGIServer
from twilio.request_validator import RequestValidator

from tests.conftest import AUTH_TOKEN, STREAM_SECRET
from webhook_app import create_app
from webhook_app.config import WebhookConfig

PUBLIC_URL = "https://webhook.example.com"
RELAY_URL = "wss://relay.example.com"
NOW = 1_800_000_000.0
CALLER = "+15550199"
CALLED = "+15550100"


def new_call_sid() -> str:
    """A Twilio-shaped CallSid."""
    return "CA" + secrets.token_hex(16)


def voice_form(call_sid: str, **extra: str) -> dict[str, str]:
    """The incoming-call form Twilio posts (docs/twilio-media-streams.md#the-incoming-call-webhook)."""
    form = {
        "AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01", "CallSid": call_sid,
        "CallStatus": "ringing", "Called": CALLED, "Caller": CALLER, "Direction": "inbound",
        "From": CALLER, "FromCountry": "US", "To": CALLED, "ToCountry": "US",
    }
    form.update(extra)
    return form


def sign(url: str, params: Mapping[str, str], token: str = AUTH_TOKEN) -> str:
    """X-Twilio-Signature as Twilio computes it, by twilio's own RequestValidator."""
    return str(RequestValidator(token).compute_signature(url, params))


def webhook_env(**overrides: str) -> dict[str, str]:
    """A complete, valid webhook environment."""
    env = {
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "STREAM_TOKEN_SECRET": STREAM_SECRET,
        "WEBHOOK_PUBLIC_URL": PUBLIC_URL,
        "RELAY_PUBLIC_URL": RELAY_URL,
    }
    env.update(overrides)
    return env


def function_url_event(
    method: str,
    path: str,
    *,
    form: Mapping[str, str] | None = None,
    signature: str | None = None,
    host: str = "abc123.lambda-url.eu-west-1.on.aws",
    query: str = "",
) -> dict[str, Any]:
    """A Lambda Function URL event, payload format 2.0, as AWS delivers Twilio's POST.

    https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads
    Header names arrive lower-cased; a form body arrives base64-encoded.
    """
    body = urllib.parse.urlencode(form or {}).encode()
    headers = {
        "accept": "*/*",
        "host": host,
        "user-agent": "TwilioProxy/1.1",
        "x-amzn-trace-id": "Root=1-6744a0f2-0123456789abcdef01234567",
        "x-forwarded-for": "54.172.60.1",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        "i-twilio-idempotency-token": "2c0e4b6a-5d1f-4e8a-9b3c-7f6d5e4c3b2a",
    }
    if form is not None:
        headers["content-type"] = "application/x-www-form-urlencoded"
        headers["content-length"] = str(len(body))
    if signature is not None:
        headers["x-twilio-signature"] = signature
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": host.split(".")[0],
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "54.172.60.1",
                "userAgent": "TwilioProxy/1.1",
            },
            "requestId": "8b1e6f4c-1d2e-4f3a-9b8c-7d6e5f4a3b2c",
            "routeKey": "$default",
            "stage": "$default",
            "time": "25/Nov/2026:13:45:00 +0000",
            "timeEpoch": 1795614300000,
        },
        "isBase64Encoded": form is not None,
    }
    if form is not None:
        event["body"] = base64.b64encode(body).decode()
    if query:
        event["queryStringParameters"] = dict(urllib.parse.parse_qsl(query))
    return event


class Clock:
    """A settable Unix clock for stream-token expiry."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def config() -> WebhookConfig:
    return WebhookConfig.from_env(webhook_env())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(config: WebhookConfig, clock: Clock) -> Flask:
    return create_app(config, clock=clock)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def post_signed(client: FlaskClient) -> Callable[..., Any]:
    """POST ``form`` to ``path`` signed for the PUBLIC url (the test client itself is http://localhost)."""

    def post(path: str, form: Mapping[str, str], *, signed_url: str | None = None,
             token: str = AUTH_TOKEN, query: str = "") -> Any:
        url = signed_url or (PUBLIC_URL + path + (f"?{query}" if query else ""))
        target = path + (f"?{query}" if query else "")
        return client.post(target, data=dict(form), headers={"X-Twilio-Signature": sign(url, form, token)})

    return post


StartWebhook = Callable[..., str]


@pytest.fixture
def start_webhook() -> Iterator[StartWebhook]:
    """Factory: the real webhook app on a loopback port; returns its http:// origin.

    ``start(relay_public_url, public_url=None, **env overrides)``. The socket is bound first
    so WEBHOOK_PUBLIC_URL can name the real port (as `make run` does), unless the test
    passes a public URL of its own (a proxy in front). tests/scripts uses it too.
    """
    servers: list[WSGIServer] = []

    def start(relay_public_url: str, public_url: str | None = None, **overrides: str) -> str:
        server = WSGIServer(("127.0.0.1", 0), None, log=None, error_log=None)
        server.init_socket()
        local_url = f"http://127.0.0.1:{server.server_port}"
        config = WebhookConfig.from_env(webhook_env(
            WEBHOOK_PUBLIC_URL=public_url or local_url, RELAY_PUBLIC_URL=relay_public_url, **overrides))
        server.application = create_app(config)
        server.start()
        servers.append(server)
        return local_url

    yield start
    for server in servers:
        server.stop(timeout=1)
