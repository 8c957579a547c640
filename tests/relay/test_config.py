"""Relay configuration: every problem found at once, each with its fix; secrets kept out."""

from __future__ import annotations

import pytest

from relay.config import MAX_WORKERS, RelayConfig
from relay.errors import ConfigError

GOOD = {
    "OPENAI_API_KEY": "sk-live-secret-value",
    "TWILIO_AUTH_TOKEN": "twilio-secret-value",
    "STREAM_TOKEN_SECRET": "x" * 32,
    "RELAY_PUBLIC_URL": "wss://relay.example.com",
}


def test_minimal_production_config_and_defaults() -> None:
    config = RelayConfig.from_env(GOOD, cores=4)
    assert config.stream_url == "wss://relay.example.com/twilio/realtime"
    assert config.openai_connect_url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert config.relay_bind == "0.0.0.0:80"
    assert config.workers == 4
    assert config.max_calls == 600  # 150 per worker unless RELAY_MAX_CALLS says otherwise
    assert config.max_call_s == 3300 < config.graceful_timeout_s
    assert config.diagnostic_token is None


def test_the_default_worker_count_stays_within_what_the_call_table_holds() -> None:
    # One worker per core, but never more than RELAY_WORKERS may ask for (the call table's bound).
    assert RelayConfig.from_env(GOOD, cores=1000).workers == MAX_WORKERS


def test_every_problem_is_listed_at_once() -> None:
    env = {
        "RELAY_PUBLIC_URL": "https://relay.example.com/path?x=1",
        "STREAM_TOKEN_SECRET": "short",
        "RELAY_MAX_CALLS": "lots",
        "RELAY_BIND": "80",
        "OPENAI_VOICE": "robot",
        "OPENAI_REALTIME_URL": "ws://api.openai.com/v1/realtime",
        "RELAY_MAX_CALL_SECONDS": "7200",
    }
    with pytest.raises(ConfigError) as info:
        RelayConfig.from_env(env)
    problems = info.value.problems
    text = str(info.value)
    assert "OPENAI_API_KEY is not set" in text
    assert "TWILIO_AUTH_TOKEN is not set" in text
    assert "RELAY_PUBLIC_URL must be a wss:// URL" in text
    assert "STREAM_TOKEN_SECRET must be at least 32 characters" in text
    assert "RELAY_MAX_CALLS must be a whole number" in text
    assert "RELAY_BIND must be HOST:PORT" in text
    assert "OPENAI_VOICE must be one of" in text
    assert "OPENAI_REALTIME_URL must start with wss:// for a non-local host" in text
    assert "RELAY_MAX_CALL_SECONDS must be between" in text
    assert len(problems) == 9


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ws://relay.example.com", "must start with wss://"),
        ("wss://relay.example.com/?token=1", "query string"),
        ("wss://relay.example.com/relay", "origin only"),
        ("http://relay.example.com", "must be a wss:// URL"),
    ],
)
def test_relay_public_url_rules(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RelayConfig.from_env({**GOOD, "RELAY_PUBLIC_URL": url})


@pytest.mark.parametrize("url", ["ws://127.0.0.1:8080", "ws://localhost:8080/", "wss://relay.example.com:8443"])
def test_loopback_ws_and_explicit_ports_are_accepted(url: str) -> None:
    assert RelayConfig.from_env({**GOOD, "RELAY_PUBLIC_URL": url}).relay_public_url == url.rstrip("/")


def test_graceful_timeout_must_outlast_the_longest_call() -> None:
    with pytest.raises(ConfigError, match="must be longer than RELAY_MAX_CALL_SECONDS"):
        RelayConfig.from_env({**GOOD, "RELAY_MAX_CALL_SECONDS": "3000", "RELAY_GRACEFUL_TIMEOUT_SECONDS": "3000"})


def test_session_deadline_must_outlast_the_connect_timeout() -> None:
    # The session deadline runs from Twilio's connect and includes the Realtime handshake:
    # were it no longer, a hanging handshake would be reported as a session timeout.
    with pytest.raises(ConfigError, match="must be longer than OPENAI_CONNECT_TIMEOUT_SECONDS"):
        RelayConfig.from_env({**GOOD, "OPENAI_CONNECT_TIMEOUT_SECONDS": "12"})
    with pytest.raises(ConfigError, match=r"\(2\) must be longer"):
        RelayConfig.from_env({**GOOD, "OPENAI_CONNECT_TIMEOUT_SECONDS": "2", "OPENAI_SESSION_TIMEOUT_SECONDS": "2"})
    assert RelayConfig.from_env({**GOOD, "OPENAI_CONNECT_TIMEOUT_SECONDS": "2"}).session_timeout_s == 10


def test_empty_greeting_means_no_greeting() -> None:
    assert RelayConfig.from_env({**GOOD, "ASSISTANT_GREETING": ""}).assistant_greeting == ""
    assert RelayConfig.from_env(GOOD).assistant_greeting


def test_secrets_stay_out_of_repr_and_redacted() -> None:
    config = RelayConfig.from_env({**GOOD, "DIAGNOSTIC_TOKEN": "diagnostic-secret-value"})
    for text in (repr(config), repr(config.redacted())):
        for secret in ("sk-live-secret-value", "twilio-secret-value", "x" * 32, "diagnostic-secret-value"):
            assert secret not in text
    assert config.redacted()["openai_api_key"] == "(set)"


def test_log_format_is_text_by_default_json_on_request_and_nothing_else() -> None:
    assert RelayConfig.from_env(GOOD).log_format == "text"
    assert RelayConfig.from_env({**GOOD, "RELAY_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError) as info:
        RelayConfig.from_env({**GOOD, "RELAY_LOG_FORMAT": "JSON"})
    (problem,) = info.value.problems
    assert problem.startswith("RELAY_LOG_FORMAT must be text") and "json" in problem
