"""The signature on what the relay sends out: tool requests and call reports.

``X-Liveline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``, keyed
with RELAY_SIGNING_SECRET. The timestamp is inside the signed text, so a receiver that
checks it is recent also refuses a replayed request (the shape Stripe, Svix and Slack use:
https://docs.stripe.com/webhooks#verify-manually). docs/tools.md shows a receiver's check.

Pure: the standard library only; the caller passes the clock's reading.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Liveline-Signature"


def signature_header(secret: str, body: bytes, now: int) -> str:
    """The header value signing ``body`` at unix time ``now`` (whole seconds)."""
    timestamp = str(int(now))
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"
