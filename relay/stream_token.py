"""Per-call stream tokens: minted by the webhook, verified by the relay.

This file exists twice, byte for byte: ``webhook_app/stream_token.py`` and
``relay/stream_token.py``. The two packages are separate deployables (a Lambda zip
and a VM bundle) and never import each other, so each carries its own copy;
``tests/test_stream_token_agreement.py`` fails if the copies drift and proves that a
token minted by one verifies in the other.

Format (version 2)::

    v2.<expires>.<mac>

    expires  Unix time in whole seconds after which the token is refused (decimal).
    mac      base64url, unpadded, of HMAC-SHA256(STREAM_TOKEN_SECRET, message), where
             message is the compact JSON array
             ["liveline-stream-v2", <CallSid>, <expires>, <callerNumber>, <calledNumber>]

What it binds, and where each value travels (all as ``<Parameter>``s of
``<Connect><Stream>``, which arrive in ``start.customParameters``; never in the URL:
Twilio drops query strings):

- the CallSid is not carried: the relay takes it from Twilio's ``start``, so a token
  minted for one call does not verify for another;
- ``callerNumber`` and ``calledNumber`` (the webhook's ``From`` and ``To``) travel as
  their own parameters, because the relay reads them (it picks the assistant by the
  called number); the MAC covers them, so a ``start`` whose numbers were altered is
  refused. An absent parameter is the empty string on both sides (the TwiML leaves out
  empty values). The message is a JSON array, not a joined string, because the numbers
  can be SIP URIs or ``client:`` names holding any separator;
- ``expires``: the webhook's ``STREAM_TOKEN_TTL_SECONDS`` (at most ``MAX_TTL_S``) after
  minting. The relay accepts a token up to ``CLOCK_SKEW_S`` past it, and refuses one that
  expires further ahead than any webhook can mint (a wrong clock).

A verified token proves the webhook answered Twilio for this call with these numbers; it
does not prove it is the first use: the relay's replay guard (``relay/replay_guard.py``)
refuses a second stream for a CallSid.

Pure: standard library only, no clock of its own (callers pass ``now``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import NamedTuple

__all__ = [
    "CALLED_PARAMETER",
    "CALLER_PARAMETER",
    "CLOCK_SKEW_S",
    "MAX_TTL_S",
    "PARAMETER_NAME",
    "StreamTokenError",
    "VerifiedStream",
    "is_call_sid",
    "mint",
    "mint_parameters",
    "verify",
    "verify_parameters",
]

#: The ``<Parameter>`` name that carries the token to ``start.customParameters``.
PARAMETER_NAME = "streamToken"
#: The ``<Parameter>`` names of the numbers the token binds (the webhook's From and To).
CALLER_PARAMETER = "callerNumber"
CALLED_PARAMETER = "calledNumber"

#: The longest lifetime a webhook may give a token (STREAM_TOKEN_TTL_SECONDS's maximum).
MAX_TTL_S = 600
#: Clocks on the webhook (Lambda) and the relay (VM) differ a little: a token verifies
#: this long past its expiry.
CLOCK_SKEW_S = 30

_VERSION = "v2"
_CONTEXT = "liveline-stream-v2"
# A token is a few dozen characters; anything longer is not ours.
_MAX_TOKEN_LENGTH = 200
# Twilio's CallSid: "CA" and 32 hex digits (Twilio's API definitions: ^CA[0-9a-fA-F]{32}$).
_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")


class StreamTokenError(ValueError):
    """A stream token was refused; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class VerifiedStream(NamedTuple):
    """What a verified token vouches for: its expiry and the call's two numbers."""

    expires: int
    caller_number: str
    called_number: str


def is_call_sid(value: str) -> bool:
    """True for exactly ``CA`` + 32 hex digits (no trailing newline, nothing else)."""
    return _CALL_SID.fullmatch(value) is not None


def _mac(secret: str, call_sid: str, expires: int, caller_number: str, called_number: str) -> str:
    message = json.dumps([_CONTEXT, call_sid, expires, caller_number, called_number],
                         separators=(",", ":"), ensure_ascii=True).encode("ascii")
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mint(secret: str, call_sid: str, now: float, ttl_s: int, *,
         caller_number: str = "", called_number: str = "") -> str:
    """Return a token for ``call_sid`` and its numbers that expires ``ttl_s`` seconds after ``now``."""
    if not secret:
        raise ValueError("stream token secret is empty")
    if not is_call_sid(call_sid):
        raise ValueError("call_sid is not a Twilio CallSid (CA and 32 hex digits)")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be between 1 and {MAX_TTL_S}")
    expires = int(now) + ttl_s
    return f"{_VERSION}.{expires}.{_mac(secret, call_sid, expires, caller_number, called_number)}"


def mint_parameters(secret: str, call_sid: str, now: float, ttl_s: int, *,
                    caller_number: str, called_number: str) -> dict[str, str]:
    """The three ``<Parameter>``s of one call: its token and the numbers the token binds."""
    token = mint(secret, call_sid, now, ttl_s, caller_number=caller_number, called_number=called_number)
    return {PARAMETER_NAME: token, CALLER_PARAMETER: caller_number, CALLED_PARAMETER: called_number}


def verify(secret: str, token: str | None, call_sid: str, now: float, *,
           caller_number: str = "", called_number: str = "") -> int:
    """Check ``token`` for ``call_sid`` and its numbers at time ``now``; return its expiry time.

    Raises StreamTokenError with reason ``missing``, ``malformed``, ``expired``,
    ``future`` (expires further ahead than any webhook mints: a wrong clock) or
    ``mismatch`` (forged, minted for another CallSid, or the numbers were altered: these
    are indistinguishable by design).
    """
    if not token:
        raise StreamTokenError("missing", "no stream token in start.customParameters")
    if len(token) > _MAX_TOKEN_LENGTH:
        raise StreamTokenError("malformed", "stream token is too long")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _VERSION or not (parts[1].isascii() and parts[1].isdigit()):
        raise StreamTokenError(
            "malformed", f"stream token is not in {_VERSION}.<expires>.<mac> form "
                         f"(a webhook and a relay of different versions?)")
    expires = int(parts[1])
    if not is_call_sid(call_sid):
        raise StreamTokenError("mismatch", "start carries no valid CallSid to check the token against")
    expected = _mac(secret, call_sid, expires, caller_number, called_number)
    if not hmac.compare_digest(expected.encode(), parts[2].encode("ascii", "replace")):
        raise StreamTokenError(
            "mismatch",
            "stream token signature does not match (forged, for another call, or its numbers altered)",
        )
    if now > expires + CLOCK_SKEW_S:
        raise StreamTokenError("expired", f"stream token expired {int(now - expires)} s ago")
    if expires > now + MAX_TTL_S + CLOCK_SKEW_S:
        raise StreamTokenError(
            "future", f"stream token expires {int(expires - now)} s from now, more than any "
                      f"webhook mints: check both clocks (NTP)")
    return expires


def verify_parameters(secret: str, parameters: Mapping[str, str], call_sid: str,
                      now: float) -> VerifiedStream:
    """Verify the token in ``start.customParameters`` against the numbers beside it."""
    caller_number = parameters.get(CALLER_PARAMETER, "")
    called_number = parameters.get(CALLED_PARAMETER, "")
    expires = verify(secret, parameters.get(PARAMETER_NAME), call_sid, now,
                     caller_number=caller_number, called_number=called_number)
    return VerifiedStream(expires, caller_number, called_number)
