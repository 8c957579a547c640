"""Per-call stream tokens: minted by the webhook, verified by the relay.

This file exists twice, byte for byte: ``webhook_app/stream_token.py`` and
``relay/stream_token.py``. The two packages are separate deployables (a Lambda zip
and a VM bundle) and never import each other, so each carries its own copy;
``tests/test_stream_token_agreement.py`` fails if the copies drift and proves that a
token minted by one verifies in the other.

Format (version 1)::

    v1.<expires>.<mac>

    expires  Unix time in whole seconds after which the token is refused (decimal).
    mac      base64url, unpadded, of HMAC-SHA256(STREAM_TOKEN_SECRET,
             "liveline-stream-v1|<CallSid>|<expires>")

The CallSid is not carried in the token: the relay takes it from Twilio's ``start``
message, so a token minted for one call does not verify for another. The token
travels as a ``<Parameter name="streamToken">`` of ``<Connect><Stream>`` and arrives
in ``start.customParameters`` (never in the URL: Twilio drops query strings).

Pure: standard library only, no clock of its own (callers pass ``now``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = [
    "PARAMETER_NAME",
    "StreamTokenError",
    "mint",
    "verify",
]

#: The ``<Parameter>`` name that carries the token to ``start.customParameters``.
PARAMETER_NAME = "streamToken"

_VERSION = "v1"
_CONTEXT = "liveline-stream-v1"
# A token is a few dozen characters; anything longer is not ours.
_MAX_TOKEN_LENGTH = 200
# Clocks on the webhook (Lambda) and the relay (VM) differ a little.
_CLOCK_SKEW_S = 30


class StreamTokenError(ValueError):
    """A stream token was refused; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _mac(secret: str, call_sid: str, expires: int) -> str:
    message = f"{_CONTEXT}|{call_sid}|{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mint(secret: str, call_sid: str, now: float, ttl_s: int) -> str:
    """Return a token for ``call_sid`` that expires ``ttl_s`` seconds after ``now``."""
    if not secret:
        raise ValueError("stream token secret is empty")
    if not call_sid:
        raise ValueError("call_sid is empty")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    expires = int(now) + ttl_s
    return f"{_VERSION}.{expires}.{_mac(secret, call_sid, expires)}"


def verify(secret: str, token: str | None, call_sid: str, now: float) -> int:
    """Check ``token`` for ``call_sid`` at time ``now``; return its expiry time.

    Raises StreamTokenError with reason ``missing``, ``malformed``, ``expired`` or
    ``mismatch`` (forged, or minted for another CallSid: the two are indistinguishable
    by design).
    """
    if not token:
        raise StreamTokenError("missing", "no stream token in start.customParameters")
    if len(token) > _MAX_TOKEN_LENGTH:
        raise StreamTokenError("malformed", "stream token is too long")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _VERSION or not (parts[1].isascii() and parts[1].isdigit()):
        raise StreamTokenError("malformed", "stream token is not in v1.<expires>.<mac> form")
    expires = int(parts[1])
    if not call_sid:
        raise StreamTokenError("mismatch", "start carries no CallSid to check the token against")
    expected = _mac(secret, call_sid, expires)
    if not hmac.compare_digest(expected.encode(), parts[2].encode("ascii", "replace")):
        raise StreamTokenError(
            "mismatch", "stream token signature does not match (forged, or for another call)"
        )
    if now > expires + _CLOCK_SKEW_S:
        raise StreamTokenError("expired", f"stream token expired {int(now - expires)} s ago")
    return expires
