"""WebhookConfig.from_env: every problem at once, each naming its fix; loopback for local runs."""

from __future__ import annotations

import pytest

from tests.conftest import AUTH_TOKEN, STREAM_SECRET
from tests.webhook.conftest import PUBLIC_URL, RELAY_URL, webhook_env
from webhook_app.config import DEFAULT_FALLBACK_MESSAGE, ConfigError, WebhookConfig


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        WebhookConfig.from_env(env)
    error = caught.value
    assert f"({len(error.problems)} problem(s))" in str(error)
    assert all(problem in str(error) for problem in error.problems)
    return error.problems


def test_a_complete_environment_with_defaults() -> None:
    config = WebhookConfig.from_env(webhook_env())

    assert config.twilio_auth_token == AUTH_TOKEN
    assert config.stream_token_secret == STREAM_SECRET
    assert config.webhook_public_url == PUBLIC_URL
    assert config.relay_public_url == RELAY_URL
    assert config.stream_url == "wss://relay.example.com/twilio/realtime"
    assert config.status_callback_url == "https://webhook.example.com/twilio/status"
    assert config.fallback_message == DEFAULT_FALLBACK_MESSAGE
    assert config.stream_token_ttl_s == 30


def test_optional_values_and_a_trailing_slash() -> None:
    config = WebhookConfig.from_env(webhook_env(
        WEBHOOK_PUBLIC_URL="https://abc123.lambda-url.eu-west-1.on.aws/",
        RELAY_PUBLIC_URL="wss://relay.example.com:8443/",
        FALLBACK_MESSAGE="  We are closed. Goodbye.  ",
        STREAM_TOKEN_TTL_SECONDS="120",
    ))

    assert config.webhook_public_url == "https://abc123.lambda-url.eu-west-1.on.aws"
    assert config.stream_url == "wss://relay.example.com:8443/twilio/realtime"
    assert config.fallback_message == "We are closed. Goodbye."
    assert config.stream_token_ttl_s == 120


@pytest.mark.parametrize(("webhook", "relay"), [
    ("http://127.0.0.1:5050", "ws://127.0.0.1:8080"),  # exactly what `make run` sets
    ("http://localhost:5050", "ws://localhost:8080"),
    ("http://[::1]:5050", "ws://[::1]:8080"),
])
def test_plain_http_and_ws_are_accepted_for_loopback_only(webhook: str, relay: str) -> None:
    config = WebhookConfig.from_env(webhook_env(WEBHOOK_PUBLIC_URL=webhook, RELAY_PUBLIC_URL=relay))

    assert config.stream_url == relay + "/twilio/realtime"
    assert config.status_callback_url == webhook + "/twilio/status"


def test_every_problem_is_reported_at_once_with_its_fix() -> None:
    found = problems({
        "WEBHOOK_PUBLIC_URL": "http://webhook.example.com",
        "RELAY_PUBLIC_URL": "ws://relay.example.com",
        "STREAM_TOKEN_SECRET": "too-short",
        "STREAM_TOKEN_TTL_SECONDS": "5",
        "FALLBACK_MESSAGE": "   ",
    })

    assert len(found) == 6, found
    text = "\n".join(found)
    assert "TWILIO_AUTH_TOKEN is not set" in text
    assert "WEBHOOK_PUBLIC_URL must start with https://" in text
    assert "RELAY_PUBLIC_URL must start with wss://: Twilio only streams over TLS" in text
    assert "STREAM_TOKEN_SECRET must be at least 32 characters" in text and "secrets.token_urlsafe" in text
    assert "STREAM_TOKEN_TTL_SECONDS must be between 15 and 600" in text
    assert "FALLBACK_MESSAGE is blank" in text
    assert "127.0.0.1/localhost only" in text


def test_an_empty_environment_names_every_required_variable() -> None:
    found = problems({})

    assert [p.split()[0] for p in found] == [
        "TWILIO_AUTH_TOKEN", "STREAM_TOKEN_SECRET", "WEBHOOK_PUBLIC_URL", "RELAY_PUBLIC_URL"]
    assert all(" is not set: " in p for p in found)


@pytest.mark.parametrize(("value", "fix"), [
    ("https://relay.example.com", "must start with wss://"),
    ("relay.example.com", "must start with wss://"),
    ("wss://relay.example.com/twilio/realtime", "origin only"),
    ("wss://relay.example.com?token=x", "query string"),
    ("wss://relay.example.com#x", "query string or fragment"),
    ("wss://user:pw@relay.example.com", "credentials"),
    ("wss://relay.example.com:99999", "invalid port"),
    ("wss://relay.example.com\n", "whitespace"),
])
def test_relay_url_problems(value: str, fix: str) -> None:
    (problem,) = problems(webhook_env(RELAY_PUBLIC_URL=value))

    assert problem.startswith("RELAY_PUBLIC_URL ")
    assert fix in problem


@pytest.mark.parametrize(("value", "fix"), [
    ("wss://webhook.example.com", "must start with https://"),
    ("https://webhook.example.com/twilio/voice", "origin only"),
    ("https://webhook.example.com/?a=1", "query string"),
])
def test_webhook_url_problems(value: str, fix: str) -> None:
    (problem,) = problems(webhook_env(WEBHOOK_PUBLIC_URL=value))

    assert problem.startswith("WEBHOOK_PUBLIC_URL ")
    assert fix in problem


@pytest.mark.parametrize(("name", "value", "fix"), [
    ("TWILIO_AUTH_TOKEN", "abc1234", "Twilio Console"),
    ("TWILIO_AUTH_TOKEN", AUTH_TOKEN + "\n", "whitespace"),
    ("STREAM_TOKEN_SECRET", " " + STREAM_SECRET, "whitespace"),
    ("STREAM_TOKEN_TTL_SECONDS", "five", "whole number"),
    ("STREAM_TOKEN_TTL_SECONDS", "601", "between 15 and 600"),
    ("STREAM_TOKEN_TTL_SECONDS", "14", "between 15 and 600"),
    ("FALLBACK_MESSAGE", "x" * 1001, "under 1000"),
])
def test_value_problems(name: str, value: str, fix: str) -> None:
    (problem,) = problems(webhook_env(**{name: value}))

    assert problem.startswith(name + " ")
    assert fix in problem
    if name in ("TWILIO_AUTH_TOKEN", "STREAM_TOKEN_SECRET"):
        assert value.strip() not in problem  # a secret is never echoed, even a wrong one


def test_secrets_stay_out_of_repr_and_redacted() -> None:
    config = WebhookConfig.from_env(webhook_env())

    for text in (repr(config), str(config.redacted())):
        assert AUTH_TOKEN not in text
        assert STREAM_SECRET not in text
    assert config.redacted()["twilio_auth_token"] == "(set)"
    assert config.redacted()["relay_public_url"] == RELAY_URL


def test_config_is_read_only() -> None:
    config = WebhookConfig.from_env(webhook_env())

    with pytest.raises(AttributeError):
        config.relay_public_url = "wss://elsewhere.example.com"  # type: ignore[misc]
