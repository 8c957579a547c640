"""The relay's configuration: the only place that reads the environment.

``RelayConfig.from_env(os.environ)`` validates every variable, gathers every problem
and raises one ConfigError that lists them all with their fixes, so a bad deploy
stops at boot instead of failing the first caller. ``relay/wsgi.py`` and
``relay/gunicorn.conf.py`` both call it, so gunicorn's master refuses to start too.

Pure: imports only the standard library, ``relay.errors`` and the assistant modules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from relay.assistant import VOICES as VOICES  # re-exported: tests and scripts name them here
from relay.assistant import Assistant, AssistantBook, http_url_problem, is_voice
from relay.assistant import is_loopback as is_loopback
from relay.assistant_file import load_file
from relay.errors import ConfigError

DEFAULT_INSTRUCTIONS = (
    "You are Liveline, a friendly phone assistant. You are speaking with a caller on a "
    "telephone line, so keep every answer short, warm and spoken: no lists, no markdown, "
    "no URLs read out character by character. If you did not understand the caller, ask "
    "them to repeat. If the caller wants to end the call, say goodbye briefly."
)
DEFAULT_GREETING = "Hello, you've reached Liveline. How can I help you today?"

# OpenAI closes a Realtime session after 60 minutes (docs/openai-realtime.md#limits-and-errors)
# and the load balancer drains for at most 3600 s (docs/aws-deployment.md#draining-and-instance-refresh):
# calls must end before both.
_OPENAI_SESSION_LIMIT_S = 3600
DEFAULT_MAX_CALL_S = 3300  # 55 minutes
# Calls one worker (one core) holds within the latency line, measured by make bench (README:
# Performance); RELAY_MAX_CALLS defaults to this many per worker.
CALLS_PER_WORKER = 150
MAX_WORKERS = 256  # RELAY_WORKERS's upper bound (the call table has a slot for twice as many)
DEFAULT_GRACEFUL_TIMEOUT_S = 3600
# Every second of these is a second a caller may hear nothing but the comfort tone before
# the spoken fallback. Opening a Realtime session normally takes well under a second
# (a few round trips for TCP, TLS and the upgrade, then session.updated); reports of
# slow ones are 2-3 s in total. So: 3 s to connect (DNS + TCP + TLS + the upgrade), 5 s
# from Twilio's connect to session.updated, and Twilio's own start, which follows its
# connect at once, within 5 s (docs/openai-realtime.md).
DEFAULT_CONNECT_TIMEOUT_S = 3.0  # DNS + TCP + TLS + Realtime handshake
DEFAULT_SESSION_TIMEOUT_S = 5.0  # Twilio's connect -> session.updated, the connect included
DEFAULT_START_TIMEOUT_S = 5.0  # Twilio's connect -> a verified start
DEFAULT_VOICE = "marin"
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
DEFAULT_TWILIO_API_BASE_URL = "https://api.twilio.com"

T = TypeVar("T")


def _ws_url(name: str, value: str, *, path_allowed: bool) -> str:
    """Validate a ws(s):// URL; ``ws://`` is accepted only for a loopback host."""
    parts = urlsplit(value)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{name} must be a wss:// URL (got {value!r})")
    if parts.scheme == "ws" and not is_loopback(parts.hostname):
        raise ValueError(
            f"{name} must start with wss:// for a non-local host: Twilio only streams "
            f"over TLS and OpenAI keys must not cross the network in clear text "
            f"(ws:// is accepted for 127.0.0.1/localhost only)"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"{name} must not carry a query string or fragment: Twilio drops query "
            f"strings (put values in <Parameter> instead)"
        )
    if not path_allowed and parts.path not in ("", "/"):
        raise ValueError(
            f"{name} must be the relay's origin only, like wss://relay.example.com "
            f"(got path {parts.path!r}); the relay adds /twilio/realtime itself"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{name} has an invalid port: {exc}") from None
    return value.rstrip("/")


def _bind(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"RELAY_BIND must be HOST:PORT, like 0.0.0.0:80 (got {value!r})")
    return value


def _int_in(name: str, low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{name} must be a whole number (got {value!r})") from None
        if not low <= number <= high:
            raise ValueError(f"{name} must be between {low} and {high} (got {number})")
        return number

    return parse


def _float_in(name: str, low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number of seconds (got {value!r})") from None
        if not low <= number <= high:
            raise ValueError(f"{name} must be between {low:g} and {high:g} s (got {number:g})")
        return number

    return parse


def _secret(name: str, min_length: int) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if len(value) < min_length:
            raise ValueError(
                f"{name} must be at least {min_length} characters long "
                f"(generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    return parse


def _model(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", value):
        raise ValueError(f"OPENAI_REALTIME_MODEL is not a model name (got {value!r})")
    return value


def _voice(value: str) -> str:
    if not is_voice(value):
        raise ValueError(
            f"OPENAI_VOICE must be one of {', '.join(VOICES)} or a custom voice id "
            f"voice_... (got {value!r})"
        )
    return value


def _http_url(name: str, *, origin_only: bool = False) -> Callable[[str], str]:
    def parse(value: str) -> str:
        problem = http_url_problem(value)
        if problem:
            raise ValueError(f"{name} {problem}")
        parts = urlsplit(value)
        if origin_only and (parts.path not in ("", "/") or parts.query):
            raise ValueError(f"{name} must be an origin only, like https://api.twilio.com (got {value!r})")
        return value.rstrip("/") if origin_only else value

    return parse


def _api_key_sid(value: str) -> str:
    if not re.fullmatch(r"SK[0-9a-fA-F]{32}", value):
        raise ValueError(f"TWILIO_API_KEY_SID must be an API key SID: SK and 32 hex digits (got {value!r}); "
                         f"create one in the Twilio console under API keys")
    return value


def _transcription_model(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", value):
        raise ValueError(f"OPENAI_TRANSCRIPTION_MODEL is not a model name (got {value!r}); "
                         f"set it empty to turn transcription off")
    return value


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ValueError(
            f"RELAY_LOG_FORMAT must be text (one key=value line per event, the default) or json "
            f"(one JSON object per line, for log shippers) (got {value!r})"
        )
    return value


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"RELAY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR (got {value!r})")
    return level


def available_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Everything the relay needs, validated. Secrets are kept out of ``repr``."""

    openai_api_key: str = field(repr=False)
    twilio_auth_token: str = field(repr=False)
    stream_token_secret: str = field(repr=False)
    relay_public_url: str
    diagnostic_token: str | None = field(default=None, repr=False)
    openai_realtime_url: str = "wss://api.openai.com/v1/realtime"
    openai_realtime_model: str = "gpt-realtime"
    openai_voice: str = DEFAULT_VOICE
    assistant_instructions: str = DEFAULT_INSTRUCTIONS
    assistant_greeting: str = DEFAULT_GREETING
    relay_bind: str = "0.0.0.0:80"
    max_calls: int = CALLS_PER_WORKER
    workers: int = 1
    max_call_s: int = DEFAULT_MAX_CALL_S
    graceful_timeout_s: int = DEFAULT_GRACEFUL_TIMEOUT_S
    openai_connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    log_level: str = "INFO"
    # Issues 16 and 17: what the assistant may do, and where calls are reported.
    assistant_config: str | None = None  # the ASSISTANT_CONFIG path
    assistant_book: AssistantBook | None = None  # what that file describes (None: the environment's)
    signing_secret: str | None = field(default=None, repr=False)
    twilio_api_key_sid: str | None = None
    twilio_api_key_secret: str | None = field(default=None, repr=False)
    twilio_api_base_url: str = DEFAULT_TWILIO_API_BASE_URL
    call_report_url: str | None = field(default=None, repr=False)  # its query may hold a key
    openai_transcription_model: str = DEFAULT_TRANSCRIPTION_MODEL  # "" = no transcription
    log_format: str = "text"

    @property
    def stream_url(self) -> str:
        """The URL Twilio dials and signs: RELAY_PUBLIC_URL + /twilio/realtime."""
        return self.relay_public_url + "/twilio/realtime"

    @property
    def openai_connect_url(self) -> str:
        """The Realtime URL with the model query parameter (GA interface)."""
        return f"{self.openai_realtime_url}?model={self.openai_realtime_model}"

    @property
    def assistants(self) -> AssistantBook:
        """The assistants: ASSISTANT_CONFIG's, or the environment's alone (with end_call)."""
        if self.assistant_book is not None:
            return self.assistant_book
        return AssistantBook(Assistant(instructions=self.assistant_instructions, greeting=self.assistant_greeting,
                                       voice=self.openai_voice))

    def redacted(self) -> dict[str, Any]:
        """Settings safe to log or print: secrets reduced to whether they are set."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if self.__dataclass_fields__[name].repr:
                out[name] = value
            else:
                out[name] = "(set)" if value else "(unset)"
        return out

    @classmethod
    def from_env(cls, environ: Mapping[str, str], cores: int | None = None) -> RelayConfig:
        """Build a config from environment variables, or raise ConfigError listing all problems."""
        problems: list[str] = []
        values: dict[str, Any] = {}

        def take(attr: str, env: str, parse: Callable[[str], T], *, required: bool = False,
                 hint: str = "") -> None:
            raw = environ.get(env, "")
            if raw == "":
                if required:
                    problems.append(f"{env} is not set{': ' + hint if hint else ''}")
                return
            try:
                values[attr] = parse(raw)
            except ValueError as exc:
                problems.append(str(exc))

        take("openai_api_key", "OPENAI_API_KEY", str, required=True,
             hint="the relay needs it to open Realtime sessions")
        take("twilio_auth_token", "TWILIO_AUTH_TOKEN", _secret("TWILIO_AUTH_TOKEN", 8),
             required=True, hint="the relay checks X-Twilio-Signature on every stream with it")
        take("stream_token_secret", "STREAM_TOKEN_SECRET", _secret("STREAM_TOKEN_SECRET", 32),
             required=True, hint="the same value as the webhook's; it verifies per-call tokens")
        take("relay_public_url", "RELAY_PUBLIC_URL",
             lambda v: _ws_url("RELAY_PUBLIC_URL", v, path_allowed=False), required=True,
             hint="the wss:// origin Twilio dials, like wss://relay.example.com")
        take("diagnostic_token", "DIAGNOSTIC_TOKEN", _secret("DIAGNOSTIC_TOKEN", 16))
        take("openai_realtime_url", "OPENAI_REALTIME_URL",
             lambda v: _ws_url("OPENAI_REALTIME_URL", v, path_allowed=True))
        take("openai_realtime_model", "OPENAI_REALTIME_MODEL", _model)
        take("openai_voice", "OPENAI_VOICE", _voice)
        take("assistant_instructions", "ASSISTANT_INSTRUCTIONS", str)
        if "ASSISTANT_GREETING" in environ:  # set but empty means: no greeting
            values["assistant_greeting"] = environ["ASSISTANT_GREETING"]
        take("relay_bind", "RELAY_BIND", _bind)
        take("max_calls", "RELAY_MAX_CALLS", _int_in("RELAY_MAX_CALLS", 1, 100_000))
        take("workers", "RELAY_WORKERS", _int_in("RELAY_WORKERS", 1, MAX_WORKERS))
        take("max_call_s", "RELAY_MAX_CALL_SECONDS",
             _int_in("RELAY_MAX_CALL_SECONDS", 10, _OPENAI_SESSION_LIMIT_S - 60))
        take("graceful_timeout_s", "RELAY_GRACEFUL_TIMEOUT_SECONDS",
             _int_in("RELAY_GRACEFUL_TIMEOUT_SECONDS", 1, 7200))
        take("openai_connect_timeout_s", "OPENAI_CONNECT_TIMEOUT_SECONDS",
             _float_in("OPENAI_CONNECT_TIMEOUT_SECONDS", 0.1, 60))
        take("session_timeout_s", "OPENAI_SESSION_TIMEOUT_SECONDS",
             _float_in("OPENAI_SESSION_TIMEOUT_SECONDS", 0.1, 60))
        take("start_timeout_s", "TWILIO_START_TIMEOUT_SECONDS",
             _float_in("TWILIO_START_TIMEOUT_SECONDS", 0.1, 60))
        take("log_level", "RELAY_LOG_LEVEL", _log_level)
        take("signing_secret", "RELAY_SIGNING_SECRET", _secret("RELAY_SIGNING_SECRET", 32))
        take("twilio_api_key_sid", "TWILIO_API_KEY_SID", _api_key_sid)
        take("twilio_api_key_secret", "TWILIO_API_KEY_SECRET", _secret("TWILIO_API_KEY_SECRET", 16))
        take("twilio_api_base_url", "TWILIO_API_BASE_URL", _http_url("TWILIO_API_BASE_URL", origin_only=True))
        take("call_report_url", "CALL_REPORT_URL", _http_url("CALL_REPORT_URL"))
        if "OPENAI_TRANSCRIPTION_MODEL" in environ:  # set but empty means: no transcription
            raw_model = environ["OPENAI_TRANSCRIPTION_MODEL"]
            try:
                values["openai_transcription_model"] = _transcription_model(raw_model) if raw_model else ""
            except ValueError as exc:
                problems.append(str(exc))
        if environ.get("ASSISTANT_CONFIG"):
            values["assistant_config"] = environ["ASSISTANT_CONFIG"]
            environment = Assistant(  # what the file's top-level keys override
                instructions=values.get("assistant_instructions", DEFAULT_INSTRUCTIONS),
                greeting=values.get("assistant_greeting", DEFAULT_GREETING),
                voice=values.get("openai_voice", DEFAULT_VOICE))
            try:
                values["assistant_book"] = load_file(environ["ASSISTANT_CONFIG"], environment)
            except ConfigError as exc:
                problems.extend(exc.problems)
        if bool(environ.get("TWILIO_API_KEY_SID")) != bool(environ.get("TWILIO_API_KEY_SECRET")):
            problems.append("TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET go together: set both (an API key's "
                            "SID and secret), or neither to use TWILIO_AUTH_TOKEN")
        signed = [what for what, present in (
            ("ASSISTANT_CONFIG has tools", "assistant_book" in values and values["assistant_book"].has_tools),
            ("CALL_REPORT_URL is set", bool(environ.get("CALL_REPORT_URL")))) if present]
        if signed and not environ.get("RELAY_SIGNING_SECRET"):
            problems.append(
                f"RELAY_SIGNING_SECRET is not set, but {' and '.join(signed)}: tool requests and call reports "
                f"are signed with it, at least 32 characters (generate one with: "
                f"python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
        take("log_format", "RELAY_LOG_FORMAT", _log_format)

        if "workers" not in values:
            values["workers"] = min(cores if cores is not None else available_cores(), MAX_WORKERS)
        if "max_calls" not in values:
            values["max_calls"] = CALLS_PER_WORKER * values["workers"]
        max_call_s = values.get("max_call_s", DEFAULT_MAX_CALL_S)
        graceful_s = values.get("graceful_timeout_s", DEFAULT_GRACEFUL_TIMEOUT_S)
        if graceful_s <= max_call_s:
            problems.append(
                f"RELAY_GRACEFUL_TIMEOUT_SECONDS ({graceful_s}) must be longer than "
                f"RELAY_MAX_CALL_SECONDS ({max_call_s}), or a deploy cuts live calls"
            )
        connect_s = values.get("openai_connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S)
        session_s = values.get("session_timeout_s", DEFAULT_SESSION_TIMEOUT_S)
        if session_s <= connect_s:
            problems.append(
                f"OPENAI_SESSION_TIMEOUT_SECONDS ({session_s:g}) must be longer than "
                f"OPENAI_CONNECT_TIMEOUT_SECONDS ({connect_s:g}): the session deadline includes the connect"
            )
        if problems:
            raise ConfigError(problems)
        return cls(**values)
