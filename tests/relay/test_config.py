"""Relay configuration: every problem found at once, each with its fix; secrets kept out."""

from __future__ import annotations

from pathlib import Path

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
        RelayConfig.from_env({**GOOD, "OPENAI_CONNECT_TIMEOUT_SECONDS": "6"})
    with pytest.raises(ConfigError, match=r"\(2\) must be longer"):
        RelayConfig.from_env({**GOOD, "OPENAI_CONNECT_TIMEOUT_SECONDS": "2", "OPENAI_SESSION_TIMEOUT_SECONDS": "2"})
    assert RelayConfig.from_env({**GOOD, "OPENAI_CONNECT_TIMEOUT_SECONDS": "2"}).session_timeout_s == 5


def test_empty_greeting_means_no_greeting() -> None:
    assert RelayConfig.from_env({**GOOD, "ASSISTANT_GREETING": ""}).assistant_greeting == ""
    assert RelayConfig.from_env(GOOD).assistant_greeting


def test_secrets_stay_out_of_repr_and_redacted() -> None:
    config = RelayConfig.from_env({**GOOD, "DIAGNOSTIC_TOKEN": "diagnostic-secret-value"})
    for text in (repr(config), repr(config.redacted())):
        for secret in ("sk-live-secret-value", "twilio-secret-value", "x" * 32, "diagnostic-secret-value"):
            assert secret not in text
    assert config.redacted()["openai_api_key"] == "(set)"


# -- the assistant, signing, Twilio's REST API and reports (issues 16 and 17) -------------------

SIGNING = "s" * 32
TOOL_FILE = '''
voice = "cedar"
[[tools]]
name = "lookup_order"
description = "Look up an order."
url = "https://tools.example.com/lookup"
'''


def assistant_file(tmp_path: Path, text: str = TOOL_FILE) -> str:
    path = tmp_path / "assistant.toml"
    path.write_text(text)
    return str(path)


def test_without_an_assistant_file_the_environment_describes_the_assistant() -> None:
    config = RelayConfig.from_env({**GOOD, "ASSISTANT_INSTRUCTIONS": "Be Acme.", "ASSISTANT_GREETING": "Hi.",
                                   "OPENAI_VOICE": "ash"})
    assistant = config.assistants.for_called("+15550002222")
    assert (assistant.instructions, assistant.greeting, assistant.voice) == ("Be Acme.", "Hi.", "ash")
    assert [tool["name"] for tool in assistant.session_tools()] == ["end_call"]
    assert config.openai_transcription_model == "gpt-4o-mini-transcribe"
    assert config.twilio_api_base_url == "https://api.twilio.com"
    assert config.signing_secret is None and config.call_report_url is None


def test_the_assistant_file_overrides_the_environment(tmp_path: Path) -> None:
    config = RelayConfig.from_env({**GOOD, "ASSISTANT_CONFIG": assistant_file(tmp_path),
                                   "ASSISTANT_INSTRUCTIONS": "Be Acme.", "OPENAI_VOICE": "ash",
                                   "RELAY_SIGNING_SECRET": SIGNING})
    default = config.assistants.default
    assert (default.instructions, default.voice) == ("Be Acme.", "cedar")
    assert default.tool("lookup_order") is not None
    assert "lookup_order" in repr(config.redacted())


def test_the_files_problems_are_listed_with_the_environments(tmp_path: Path) -> None:
    path = assistant_file(tmp_path, 'voice = "robot"\ngretting = "x"\n')
    with pytest.raises(ConfigError) as info:
        RelayConfig.from_env({**GOOD, "ASSISTANT_CONFIG": path, "RELAY_MAX_CALLS": "lots"})
    text = str(info.value)
    assert "RELAY_MAX_CALLS must be a whole number" in text
    assert f"ASSISTANT_CONFIG ({path}): voice must be one of" in text
    assert f"ASSISTANT_CONFIG ({path}): gretting is not a known key" in text
    assert len(info.value.problems) == 3


def test_a_missing_assistant_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        RelayConfig.from_env({**GOOD, "ASSISTANT_CONFIG": str(tmp_path / "nope.toml")})


def test_the_signing_secret_is_required_for_tools_and_reports(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RELAY_SIGNING_SECRET is not set, but ASSISTANT_CONFIG has tools:"):
        RelayConfig.from_env({**GOOD, "ASSISTANT_CONFIG": assistant_file(tmp_path)})
    with pytest.raises(ConfigError, match="RELAY_SIGNING_SECRET is not set, but CALL_REPORT_URL is set:"):
        RelayConfig.from_env({**GOOD, "CALL_REPORT_URL": "https://reports.example.com/calls"})
    with pytest.raises(ConfigError, match="RELAY_SIGNING_SECRET must be at least 32 characters"):
        RelayConfig.from_env({**GOOD, "CALL_REPORT_URL": "https://reports.example.com/calls",
                              "RELAY_SIGNING_SECRET": "short"})
    # Neither tools nor reports: nothing to sign, no secret needed.
    assert RelayConfig.from_env({**GOOD, "ASSISTANT_CONFIG": assistant_file(tmp_path, 'voice = "ash"')})
    config = RelayConfig.from_env({**GOOD, "CALL_REPORT_URL": "http://127.0.0.1:9000/calls",
                                   "RELAY_SIGNING_SECRET": SIGNING})
    assert (config.call_report_url, config.signing_secret) == ("http://127.0.0.1:9000/calls", SIGNING)


@pytest.mark.parametrize(("env", "message"), [
    ({"TWILIO_API_KEY_SID": "SK" + "a" * 32}, "go together: set both"),
    ({"TWILIO_API_KEY_SECRET": "k" * 32}, "go together: set both"),
    ({"TWILIO_API_KEY_SID": "AC" + "a" * 32, "TWILIO_API_KEY_SECRET": "k" * 32}, "must be an API key SID"),
    ({"TWILIO_API_BASE_URL": "http://api.twilio.com"}, "must start with https:// for a non-local host"),
    ({"TWILIO_API_BASE_URL": "https://api.twilio.com/2010-04-01"}, "must be an origin only"),
    ({"CALL_REPORT_URL": "ftp://reports.example.com", "RELAY_SIGNING_SECRET": SIGNING}, "must be an https:// URL"),
    ({"OPENAI_TRANSCRIPTION_MODEL": "gpt 4o"}, "OPENAI_TRANSCRIPTION_MODEL is not a model name"),
])
def test_rest_report_and_transcription_settings_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RelayConfig.from_env({**GOOD, **env})


def test_twilio_and_transcription_settings() -> None:
    config = RelayConfig.from_env({**GOOD, "TWILIO_API_KEY_SID": "SK" + "a" * 32,
                                   "TWILIO_API_KEY_SECRET": "api-key-secret-value",
                                   "TWILIO_API_BASE_URL": "http://127.0.0.1:9999/",
                                   "OPENAI_TRANSCRIPTION_MODEL": ""})
    assert (config.twilio_api_key_sid, config.twilio_api_key_secret) == ("SK" + "a" * 32, "api-key-secret-value")
    assert config.twilio_api_base_url == "http://127.0.0.1:9999"
    assert config.openai_transcription_model == ""  # empty: transcription off


def test_new_secrets_stay_out_of_repr_and_redacted() -> None:
    config = RelayConfig.from_env({**GOOD, "RELAY_SIGNING_SECRET": SIGNING, "TWILIO_API_KEY_SID": "SK" + "a" * 32,
                                   "TWILIO_API_KEY_SECRET": "api-key-secret-value",
                                   "CALL_REPORT_URL": "https://reports.example.com/calls?key=report-key"})
    for text in (repr(config), repr(config.redacted())):
        for secret in (SIGNING, "api-key-secret-value", "report-key"):
            assert secret not in text
    assert config.redacted()["signing_secret"] == "(set)"


def test_log_format_is_text_by_default_json_on_request_and_nothing_else() -> None:
    assert RelayConfig.from_env(GOOD).log_format == "text"
    assert RelayConfig.from_env({**GOOD, "RELAY_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError) as info:
        RelayConfig.from_env({**GOOD, "RELAY_LOG_FORMAT": "JSON"})
    (problem,) = info.value.problems
    assert problem.startswith("RELAY_LOG_FORMAT must be text") and "json" in problem
