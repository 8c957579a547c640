"""What the verify scripts check: the relay's and the webhook's URLs, parsed once.

A target knows where to connect, what Twilio signs (the public URL), the credentials the
checks may use (never in its ``repr``), the timeouts, and the CA to trust for TLS (the
public ones unless ``--ca-file``). Malformed URLs raise ValueError saying what to give.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from scripts.verify.diagnoses import STREAM_PATH, VOICE_PATH
from scripts.verify.settings import host_port

HEALTH_PATH = "/healthz"
DIAGNOSTIC_PATH = "/diagnostic/openai"
# Twilio waits at most 15 s for the webhook's answer (error 11200, docs/twilio-media-streams.md).
TWILIO_WAIT_S = 15.0


@dataclass(frozen=True)
class RelayTarget:
    """The relay to check and what the checks may use. No secret appears in ``repr``."""

    url: str
    host: str
    port: int
    secure: bool
    http_base: str  # http(s)://host[:port] for plain requests
    ws_base: str  # ws(s)://host[:port] for the handshake and the call
    signed_url: str  # what X-Twilio-Signature covers: wss://<public host>/twilio/realtime
    signed_url_source: str
    auth_token: str | None = None
    diagnostic_token: str | None = None
    stream_secret: str | None = None
    webhook_url: str | None = None
    webhook_public_url: str | None = None
    timeout_s: float = 5.0
    call_timeout_s: float = 10.0
    diagnostic_timeout_s: float = 30.0
    ca_file: str | None = None

    def __repr__(self) -> str:
        return f"RelayTarget({self.url!r}, signed_url={self.signed_url!r})"

    @classmethod
    def create(cls, url: str, *, public_url: str | None = None, auth_token: str | None = None,
               diagnostic_token: str | None = None, stream_secret: str | None = None,
               webhook_url: str | None = None, webhook_public_url: str | None = None,
               timeout_s: float = 5.0, call_timeout_s: float = 10.0, diagnostic_timeout_s: float = 30.0,
               ca_file: str | None = None) -> RelayTarget:
        """Parse the relay's URL (http, https, ws or wss); ValueError says what is wrong."""
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError(f"{url!r} is not a relay URL: give one like https://relay.example.com, "
                             f"wss://relay.example.com or http://127.0.0.1:8080")
        if parts.path.rstrip("/") not in ("", STREAM_PATH) or parts.query or parts.fragment:
            raise ValueError(f"{url!r}: give the relay's origin only (it serves {STREAM_PATH}, "
                             f"{HEALTH_PATH} and {DIAGNOSTIC_PATH} itself)")
        secure = scheme in ("https", "wss")
        port = parts.port or (443 if secure else 80)
        shown = host_port(parts.hostname, port, "https" if secure else "http")
        ws_base = f"{'wss' if secure else 'ws'}://{shown}"
        if public_url:
            signed_url, source = _signed_url(public_url), "from RELAY_PUBLIC_URL"
        else:
            signed_url = ws_base + STREAM_PATH
            source = "from the URL given; set RELAY_PUBLIC_URL if Twilio dials another"
        return cls(url=url, host=parts.hostname, port=port, secure=secure,
                   http_base=f"{'https' if secure else 'http'}://{shown}", ws_base=ws_base,
                   signed_url=signed_url, signed_url_source=source, auth_token=auth_token,
                   diagnostic_token=diagnostic_token, stream_secret=stream_secret, webhook_url=webhook_url,
                   webhook_public_url=webhook_public_url, timeout_s=timeout_s, call_timeout_s=call_timeout_s,
                   diagnostic_timeout_s=diagnostic_timeout_s, ca_file=ca_file)

    def ssl_context(self) -> ssl.SSLContext:
        """The public CAs, or only ``--ca-file``."""
        return ssl.create_default_context(cafile=self.ca_file)

    @property
    def host_header(self) -> str:
        """The Host header, as Twilio would send it."""
        return host_port(self.host, self.port, "https" if self.secure else "http")


def _signed_url(public_url: str) -> str:
    parts = urlsplit(public_url.strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("ws", "wss") or not parts.hostname or parts.path.rstrip("/") not in ("", STREAM_PATH):
        raise ValueError(f"RELAY_PUBLIC_URL {public_url!r} must be the relay's wss:// origin, "
                         f"like wss://relay.example.com")
    return f"{scheme}://{parts.netloc}{STREAM_PATH}"


@dataclass(frozen=True)
class WebhookTarget:
    """The webhook to check and what the checks may use."""

    voice_url: str  # where the POST goes
    signed_url: str  # what the signature covers: WEBHOOK_PUBLIC_URL + /twilio/voice
    signed_url_source: str
    public_origin: str  # the origin Twilio calls (for the status callback check)
    relay_origin: str | None = None  # the expected <Stream> origin, ws(s)://host[:port]
    auth_token: str | None = None
    stream_secret: str | None = None
    timeout_s: float = TWILIO_WAIT_S
    ca_file: str | None = None

    def __repr__(self) -> str:
        return f"WebhookTarget({self.voice_url!r}, signed_url={self.signed_url!r})"

    @classmethod
    def create(cls, url: str, *, public_url: str | None = None, relay: str | None = None,
               auth_token: str | None = None, stream_secret: str | None = None,
               timeout_s: float = TWILIO_WAIT_S, ca_file: str | None = None) -> WebhookTarget:
        """Parse the webhook URL (its origin or the full /twilio/voice URL)."""
        base = _origin(url, "the webhook URL", ("http", "https"), VOICE_PATH)
        if public_url:
            public, source = _origin(public_url, "WEBHOOK_PUBLIC_URL", ("http", "https")), "from WEBHOOK_PUBLIC_URL"
        else:
            public, source = base, "from the URL given; set WEBHOOK_PUBLIC_URL if Twilio calls another"
        relay_origin = None
        if relay:
            relay_origin = _origin(relay, "the relay URL", ("http", "https", "ws", "wss"), STREAM_PATH)
            relay_origin = re.sub(r"^http", "ws", relay_origin)
        return cls(base + VOICE_PATH, public + VOICE_PATH, source, public, relay_origin, auth_token,
                   stream_secret, timeout_s, ca_file)

    def ssl_context(self) -> ssl.SSLContext:
        """The public CAs, or only ``--ca-file``."""
        return ssl.create_default_context(cafile=self.ca_file)


def _origin(url: str, what: str, schemes: tuple[str, ...], path: str = "") -> str:
    """``scheme://host[:port]`` of ``url``, which may end with ``path``; ValueError otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in schemes or not parts.hostname or parts.query \
            or parts.path.rstrip("/") not in ("", path):
        raise ValueError(f"{what} {url!r} must be an origin like {schemes[-1]}://host[:port]")
    return f"{parts.scheme.lower()}://{parts.netloc}"
