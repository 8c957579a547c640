"""The webhook's configuration: the only place that reads the environment.

``WebhookConfig.from_env(environ)`` validates every variable, gathers every problem and
raises one ConfigError that lists them all with their fixes, so a bad deploy stops at
boot (gunicorn start-up, or the Lambda cold start) instead of failing the first caller.

=========================  ========  ===========================================================
variable                   required  meaning
=========================  ========  ===========================================================
TWILIO_AUTH_TOKEN          yes       checks ``X-Twilio-Signature`` on every request
WEBHOOK_PUBLIC_URL         yes       ``https://`` origin Twilio calls (the URL it signs)
RELAY_PUBLIC_URL           yes       ``wss://`` origin of the relay (``<Stream url>``)
STREAM_TOKEN_SECRET        yes       >= 32 chars, shared with the relay; signs stream tokens
FALLBACK_MESSAGE           no        spoken after ``</Connect>`` if the relay fails or closes
STREAM_TOKEN_TTL_SECONDS   no        how long a minted stream token stays valid (default 30)
=========================  ========  ===========================================================

``http://`` and ``ws://`` are accepted for a loopback host only (127.0.0.1, ::1,
localhost), for ``make run``; the relay's config applies the same rule.

Pure: imports only the standard library (and the pure ``stream_token``); ``os.environ`` is
passed in, never read here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from webhook_app import stream_token

__all__ = [
    "DEFAULT_FALLBACK_MESSAGE",
    "DEFAULT_STREAM_TOKEN_TTL_S",
    "ConfigError",
    "WebhookConfig",
]

DEFAULT_FALLBACK_MESSAGE = (
    "Sorry, our assistant can't take your call right now. "
    "Please try again in a few minutes. Goodbye."
)
# The token only has to outlive the gap between our TwiML answer and Twilio's ``start`` on
# the relay. <Connect><Stream> is the TwiML's first verb, so Twilio dials the relay as soon
# as it has read the answer: DNS, TCP, TLS and the upgrade, well under a second in
# practice. How long Twilio keeps trying before it gives up (error 31901) is not
# documented; for the webhook request itself it allows 10 s to connect and 15 s in all
# (https://www.twilio.com/docs/errors/11205). 30 s is twice that worst case, and the relay
# accepts a token CLOCK_SKEW_S (30 s) past its expiry on top. Every second more is a
# second in which a token read from a log still opens a session on another instance (the
# replay guard is per instance): see the README, "Stream tokens and replays".
DEFAULT_STREAM_TOKEN_TTL_S = 30
# At least the 15 s Twilio may take; at most what the relay's replay guard is sized for.
_TTL_RANGE_S = (15, stream_token.MAX_TTL_S)
# A fallback is a sentence or two read to a caller whose call just failed.
_MAX_FALLBACK_CHARS = 1000


class ConfigError(Exception):
    """The environment does not describe a runnable webhook; ``problems`` lists each fix."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_stray_whitespace(name: str, value: str) -> None:
    # A newline pasted into a secret store makes every signature fail, silently.
    if value != value.strip():
        raise ValueError(f"{name} has leading or trailing whitespace (a pasted newline?): remove it")


def _origin(name: str, value: str, *, secure: str, insecure: str, example: str, why: str) -> str:
    """Validate a bare origin ``scheme://host[:port]``; the insecure scheme only for loopback."""
    _no_stray_whitespace(name, value)
    parts = urlsplit(value)
    if parts.scheme not in (secure, insecure) or not parts.hostname:
        raise ValueError(f"{name} must start with {secure}://: {why} (got {value!r}, want like {example})")
    if parts.scheme == insecure and not _is_loopback(parts.hostname):
        raise ValueError(
            f"{name} must start with {secure}://: {why} "
            f"({insecure}:// is accepted for 127.0.0.1/localhost only; got {value!r})"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"{name} must not carry a query string or fragment (got {value!r}): "
            f"Twilio drops query strings; give the origin only, like {example}"
        )
    if parts.path not in ("", "/"):
        raise ValueError(
            f"{name} must be an origin only, like {example} (got path {parts.path!r}): "
            f"the webhook adds the route paths itself"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{name} must not contain user:password@ credentials")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{name} has an invalid port: {exc}") from None
    return value.rstrip("/")


def _webhook_url(value: str) -> str:
    return _origin(
        "WEBHOOK_PUBLIC_URL", value, secure="https", insecure="http",
        example="https://abc123.lambda-url.eu-west-1.on.aws",
        why="the TwiML answer carries the per-call stream token and callers' numbers, "
            "which must not cross the network in clear text",
    )


def _relay_url(value: str) -> str:
    return _origin(
        "RELAY_PUBLIC_URL", value, secure="wss", insecure="ws",
        example="wss://relay.example.com",
        why="Twilio only streams over TLS (error 31922 for ws://)",
    )


def _auth_token(value: str) -> str:
    _no_stray_whitespace("TWILIO_AUTH_TOKEN", value)
    if len(value) < 8:
        raise ValueError(
            "TWILIO_AUTH_TOKEN is too short to be an Auth Token: copy it from the Twilio "
            "Console (Account > API keys & tokens; 32 characters)"
        )
    return value


def _stream_secret(value: str) -> str:
    _no_stray_whitespace("STREAM_TOKEN_SECRET", value)
    if len(value) < 32:
        raise ValueError(
            f"STREAM_TOKEN_SECRET must be at least 32 characters long (got {len(value)}); "
            f"generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))' "
            f"and give the relay the same value"
        )
    return value


def _fallback(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("FALLBACK_MESSAGE is blank: unset it for the default, or give a sentence to say")
    if len(text) > _MAX_FALLBACK_CHARS:
        raise ValueError(
            f"FALLBACK_MESSAGE is {len(text)} characters: keep it under {_MAX_FALLBACK_CHARS} "
            f"(a sentence or two for a caller whose call just failed)"
        )
    return text


def _ttl(value: str) -> int:
    low, high = _TTL_RANGE_S
    try:
        number = int(value)
    except ValueError:
        raise ValueError(
            f"STREAM_TOKEN_TTL_SECONDS must be a whole number of seconds (got {value!r})"
        ) from None
    if not low <= number <= high:
        raise ValueError(f"STREAM_TOKEN_TTL_SECONDS must be between {low} and {high} (got {number})")
    return number


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Everything the webhook needs, validated. Secrets are kept out of ``repr``."""

    twilio_auth_token: str = field(repr=False)
    stream_token_secret: str = field(repr=False)
    webhook_public_url: str
    relay_public_url: str
    fallback_message: str = DEFAULT_FALLBACK_MESSAGE
    stream_token_ttl_s: int = DEFAULT_STREAM_TOKEN_TTL_S

    @property
    def stream_url(self) -> str:
        """The ``<Stream url>``: RELAY_PUBLIC_URL + /twilio/realtime (the URL the relay checks)."""
        return self.relay_public_url + "/twilio/realtime"

    @property
    def status_callback_url(self) -> str:
        """The ``<Stream statusCallback>``: WEBHOOK_PUBLIC_URL + /twilio/status."""
        return self.webhook_public_url + "/twilio/status"

    def redacted(self) -> dict[str, Any]:
        """Return the settings safe to log: secrets reduced to whether they are set."""
        out: dict[str, Any] = {}
        for name, spec in self.__dataclass_fields__.items():
            value = getattr(self, name)
            out[name] = value if spec.repr else ("(set)" if value else "(unset)")
        return out

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WebhookConfig:
        """Build a config from environment variables, or raise ConfigError listing all problems."""
        problems: list[str] = []
        values: dict[str, Any] = {}

        def take(attr: str, env: str, parse: Callable[[str], Any], *, required: str = "") -> None:
            raw = environ.get(env, "")
            if raw == "":
                if required:
                    problems.append(f"{env} is not set: {required}")
                return
            try:
                values[attr] = parse(raw)
            except ValueError as exc:
                problems.append(str(exc))

        take("twilio_auth_token", "TWILIO_AUTH_TOKEN", _auth_token,
             required="the webhook checks X-Twilio-Signature on every request with it")
        take("stream_token_secret", "STREAM_TOKEN_SECRET", _stream_secret,
             required="the same value as the relay's; it signs the per-call stream token")
        take("webhook_public_url", "WEBHOOK_PUBLIC_URL", _webhook_url,
             required="the https:// origin Twilio calls (the URL it signs), like "
                      "https://abc123.lambda-url.eu-west-1.on.aws")
        take("relay_public_url", "RELAY_PUBLIC_URL", _relay_url,
             required="the wss:// origin of the relay, like wss://relay.example.com")
        take("fallback_message", "FALLBACK_MESSAGE", _fallback)
        take("stream_token_ttl_s", "STREAM_TOKEN_TTL_SECONDS", _ttl)
        if problems:
            raise ConfigError(problems)
        return cls(**values)
