"""Answering a call as Twilio does: the signed webhook POST, and the TwiML it returns.

- ``answer()`` POSTs Twilio's incoming-call form to the voice webhook, signed with
  ``X-Twilio-Signature`` over the webhook's public URL (the one Twilio would call) and the
  form, and reads the TwiML: the ``<Connect><Stream>`` URL and ``<Parameter>`` values,
  used exactly as given, and the verbs after ``</Connect>``, which Twilio runs once the
  stream ends (https://www.twilio.com/docs/voice/twiml/stream);
- ``post_stream_status()`` sends the ``<Stream statusCallback>`` requests Twilio sends
  (``stream-started``, ``stream-stopped``), signed the same way.

Every failure is a ``CallFailed`` whose text says what is wrong and what to do, for the
page to show. Standard library and twilio's RequestValidator only; nothing of relay/.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime

from twilio.request_validator import RequestValidator

VOICE_PATH = "/twilio/voice"
SIGNATURE_HEADER = "X-Twilio-Signature"
MAX_TWIML_BYTES = 64 * 1024


class CallFailed(Exception):
    """The call could not be placed; the message is the plain sentence the page shows."""


@dataclass(frozen=True)
class Webhook:
    """Where to POST (``url``, the local address) and the URL Twilio signs (``public_url``)."""

    url: str
    public_url: str
    auth_token: str = field(repr=False)

    @property
    def voice_url(self) -> str:
        """The URL the POST goes to."""
        return self.url.rstrip("/") + VOICE_PATH

    @property
    def signed_voice_url(self) -> str:
        """The URL the signature covers: Twilio signs the URL it was configured with."""
        return self.public_url.rstrip("/") + VOICE_PATH

    def sign(self, url: str, form: dict[str, str]) -> str:
        """``X-Twilio-Signature`` for a POST of ``form`` to ``url`` (or a GET upgrade, form {})."""
        return str(RequestValidator(self.auth_token).compute_signature(url, form))


@dataclass(frozen=True)
class StreamInstructions:
    """What the TwiML asks for: stream to ``url`` with ``parameters``, then ``afterwards``."""

    url: str
    parameters: dict[str, str] = field(repr=False)  # carries the stream token: never printed
    status_callback: str | None = None
    afterwards: tuple[str, ...] = ()  # the verbs after </Connect>, in words ("say: ...", "hang up")


def incoming_call_form(call_sid: str, account_sid: str, caller: str, called: str) -> dict[str, str]:
    """The form Twilio posts to the voice webhook for a new inbound call."""
    return {"AccountSid": account_sid, "ApiVersion": "2010-04-01", "CallSid": call_sid,
            "CallStatus": "ringing", "Called": called, "Caller": caller, "Direction": "inbound",
            "From": caller, "To": called}


def answer(webhook: Webhook, form: dict[str, str], timeout_s: float) -> StreamInstructions:
    """POST the signed incoming-call webhook; the stream its TwiML asks for."""
    request = urllib.request.Request(
        webhook.voice_url, data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={SIGNATURE_HEADER: webhook.sign(webhook.signed_voice_url, form),
                 "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read(MAX_TWIML_BYTES + 1)
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read(300).decode("utf-8", "replace").strip()
        hint = (" (the signature did not match: TWILIO_AUTH_TOKEN or WEBHOOK_PUBLIC_URL differ between "
                "the softphone and the webhook; restart make run)") if exc.code == 403 else ""
        raise CallFailed(f"the webhook refused the call: HTTP {exc.code} {detail[:200]}{hint}") from None
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise CallFailed(f"could not reach the webhook at {webhook.voice_url} ({reason}): "
                         f"is the local stack running? Start it with make run") from None
    if len(body) > MAX_TWIML_BYTES:
        raise CallFailed(f"the webhook's answer is over {MAX_TWIML_BYTES // 1024} KiB: that is not TwiML")
    return read_twiml(body.decode("utf-8", "replace"))


def read_twiml(text: str) -> StreamInstructions:
    """The ``<Connect><Stream>`` of a TwiML document, and the verbs after ``</Connect>``."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        raise CallFailed(f"the webhook did not answer with TwiML (not XML): {text[:120]!r}") from None
    if root.tag != "Response":
        raise CallFailed(f"the webhook's TwiML has <{root.tag}> at the top, not <Response>")
    verbs = list(root)
    connect = next((i for i, verb in enumerate(verbs) if verb.tag == "Connect"), None)
    stream = verbs[connect].find("Stream") if connect is not None else None
    if connect is None or stream is None or not stream.get("url"):
        said = ", ".join(describe(verb) for verb in verbs) or "nothing"
        raise CallFailed(f"the webhook's TwiML streams nothing (no <Connect><Stream url>): "
                         f"Twilio would {said}")
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return StreamInstructions(
        url=stream.get("url", ""), parameters=parameters, status_callback=stream.get("statusCallback"),
        afterwards=tuple(describe(verb) for verb in verbs[connect + 1:]))


def describe(verb: ET.Element) -> str:
    """A TwiML verb in a few words: ``say "Sorry…"``, ``hang up``, ``dial +1555…``."""
    text = " ".join((verb.text or "").split())
    if len(text) > 80:
        text = text[:77] + "..."
    words = {"Say": f'say "{text}"', "Hangup": "hang up", "Dial": f"dial {text}".strip(),
             "Pause": "pause", "Redirect": f"redirect to {text}", "Play": f"play {text}"}
    return words.get(verb.tag, f"<{verb.tag}>")


def post_stream_status(webhook: Webhook, url: str, form: dict[str, str], timeout_s: float) -> str | None:
    """One signed ``<Stream>`` status callback; None if it was accepted, else what went wrong."""
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={SIGNATURE_HEADER: webhook.sign(url, form),
                 "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(1024)
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"HTTP {exc.code}"
    except OSError as exc:
        return str(getattr(exc, "reason", exc))
    return None


def stream_status_form(account_sid: str, call_sid: str, stream_sid: str, event: str) -> dict[str, str]:
    """The fields of a ``<Stream>`` status callback (``stream-started`` / ``stream-stopped``)."""
    return {"AccountSid": account_sid, "CallSid": call_sid, "StreamSid": stream_sid,
            "StreamName": stream_sid, "StreamEvent": event,
            "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds")}
