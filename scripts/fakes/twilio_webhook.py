"""Where a simulated call goes, found as Twilio finds it.

Twilio posts a signed incoming-call form to the voice webhook and streams to the TwiML's
``<Connect><Stream url>``, passing its ``<Parameter>``s in ``start.customParameters``
(``target_from_webhook``). A call can also dial a relay directly, with the stream token the
webhook would have minted (``target_from_relay``). The facts are in
docs/twilio-media-streams.md.

The stream token is minted with ``relay.stream_token``: its format is Liveline's own
contract between the webhook and the relay (tests/test_stream_token_agreement.py holds the
two copies together), not a wire protocol the relay could get wrong in the same way.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from twilio.request_validator import RequestValidator

from relay import stream_token
from scripts.fakes.twilio_messages import TEST_ACCOUNT_SID, new_sid

STREAM_PATH = "/twilio/realtime"
VOICE_PATH = "/twilio/voice"
CALLED, CALLER = "+15550100", "+15550199"


@dataclass
class StreamTarget:
    """Where to stream and what Twilio would put in ``start``."""

    url: str  # the ws(s):// URL to dial
    signed_url: str  # the URL the signature is computed over (RELAY_PUBLIC_URL + path)
    parameters: dict[str, str]
    call_sid: str
    via: str = "relay"  # how the target was found: straight at the relay, or the webhook's TwiML


def target_from_relay(relay_url: str, *, public_url: str | None, stream_secret: str | None,
                      call_sid: str | None = None, ttl_s: int = 300) -> StreamTarget:
    """Dial a relay directly, minting the stream token the webhook would have minted."""
    base = relay_url.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    url = base if base.endswith(STREAM_PATH) else base + STREAM_PATH
    signed = (public_url.rstrip("/") + STREAM_PATH) if public_url else url
    sid = call_sid or new_sid("CA")
    params = {"calledNumber": CALLED, "callerNumber": CALLER}
    if stream_secret:
        params[stream_token.PARAMETER_NAME] = stream_token.mint(stream_secret, sid, time.time(), ttl_s,
                                                                caller_number=CALLER, called_number=CALLED)
    return StreamTarget(url, signed, params, sid, via="relay directly (stream token minted locally)")


def call_form(call_sid: str) -> dict[str, str]:
    """The incoming-call form Twilio posts to the voice webhook."""
    return {"AccountSid": TEST_ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": call_sid,
            "CallStatus": "ringing", "Called": CALLED, "Caller": CALLER, "Direction": "inbound",
            "From": CALLER, "To": CALLED}


def target_from_webhook(webhook_url: str, *, auth_token: str, public_url: str | None = None,
                        call_sid: str | None = None, timeout_s: float = 10.0) -> StreamTarget:
    """POST a signed incoming-call webhook as Twilio does; stream where the TwiML says."""
    url = webhook_url.rstrip("/")
    if not url.endswith(VOICE_PATH):
        url += VOICE_PATH
    signed_url = (public_url.rstrip("/") + VOICE_PATH) if public_url else url
    sid = call_sid or new_sid("CA")
    form = call_form(sid)
    signature = RequestValidator(auth_token).compute_signature(signed_url, form)
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        twiml = response.read().decode()
    root = ET.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    if stream is None:
        raise ValueError(f"webhook TwiML has no <Connect><Stream>: {twiml[:300]}")
    stream_url = stream.attrib["url"]
    params = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    return StreamTarget(stream_url, stream_url, params, sid, via=f"webhook {url} (TwiML <Connect><Stream>)")
