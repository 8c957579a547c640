"""Acting on a live call through Twilio's REST API: hang it up, or send it elsewhere.

Both are an update of the Call resource
(https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource):
``POST {TWILIO_API_BASE_URL}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``, form
encoded, with ``Status=completed`` (hang up) or ``Twiml=<Response><Dial>...</Dial></Response>``
(transfer; ``<Dial><Sip>`` for a SIP URI). Redirecting a call that is inside
``<Connect><Stream>`` ends the stream: Twilio sends ``stop`` and closes the socket.
Authentication is HTTP basic with an API key (TWILIO_API_KEY_SID/SECRET) when one is
configured, else the call's AccountSid and TWILIO_AUTH_TOKEN.

What we use of the twilio helper library, and what not: its ``VoiceResponse`` builds the
TwiML (so a destination is escaped as XML). Its REST ``Client`` does not fit: its base URL
is fixed per product (``https://api.twilio.com``, changed only through the generated
classes' attributes), it reads TWILIO_* variables from the environment on its own, and it
sends through requests, with no total deadline. The request goes through
``relay/outbound.py`` instead, like the relay's other outbound requests.

Logged: the action, HTTP status, Twilio's error code and the duration; never credentials.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from twilio.twiml.voice_response import VoiceResponse

from relay.config import RelayConfig
from relay.outbound import HttpClient, OutboundError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 64 * 1024  # a Call resource is a few KiB of JSON
# The SIDs come from Twilio's signed ``start`` message; checked anyway, as they go into a URL path.
_ACCOUNT_SID = re.compile(r"AC[0-9A-Za-z]{1,62}")
_CALL_SID = re.compile(r"CA[0-9A-Za-z]{1,62}")

Action = Literal["complete", "redirect"]


def dial_twiml(destination: str) -> str:
    """``<Response><Dial>number</Dial></Response>``, or ``<Dial><Sip>uri</Sip></Dial>`` for ``sip:``."""
    response = VoiceResponse()
    if destination.startswith("sip:"):
        response.dial().sip(destination)
    else:
        response.dial(destination)
    return str(response.to_xml(xml_declaration=False))


@dataclass(frozen=True, slots=True)
class RestResult:
    """How one update went. ``error`` is "" on success, else what failed (an outbound error kind)."""

    action: Action
    ok: bool
    status: int | None
    duration_ms: float
    error: str = ""
    twilio_code: int | None = None  # e.g. 21220: the call is no longer in progress


class TwilioRest:
    """Updates live calls through Twilio's REST API at ``base_url``."""

    def __init__(self, base_url: str, *, auth_token: str, api_key_sid: str | None = None,
                 api_key_secret: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 client: HttpClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth_token = auth_token
        self._api_key = (api_key_sid, api_key_secret) if api_key_sid and api_key_secret else None
        self.timeout_s = timeout_s
        self._client = client or HttpClient()

    @classmethod
    def from_config(cls, config: RelayConfig, **kwargs: Any) -> TwilioRest:
        """The client the configuration describes."""
        return cls(config.twilio_api_base_url, auth_token=config.twilio_auth_token,
                   api_key_sid=config.twilio_api_key_sid, api_key_secret=config.twilio_api_key_secret, **kwargs)

    def complete(self, account_sid: str, call_sid: str, *,
                 call_log: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> RestResult:
        """Hang the call up (``Status=completed``)."""
        return self._update("complete", account_sid, call_sid, {"Status": "completed"}, call_log or log)

    def redirect(self, account_sid: str, call_sid: str, twiml: str, *,
                 call_log: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> RestResult:
        """Replace what the call is doing with ``twiml`` (this ends its stream)."""
        return self._update("redirect", account_sid, call_sid, {"Twiml": twiml}, call_log or log)

    def transfer(self, account_sid: str, call_sid: str, destination: str, *,
                 call_log: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> RestResult:
        """Dial ``destination`` (an E.164 number or a ``sip:`` URI) for the caller."""
        return self.redirect(account_sid, call_sid, dial_twiml(destination), call_log=call_log)

    def _update(self, action: Action, account_sid: str, call_sid: str, form: dict[str, str],
                out: logging.Logger | logging.LoggerAdapter[Any]) -> RestResult:
        if not _ACCOUNT_SID.fullmatch(account_sid) or not _CALL_SID.fullmatch(call_sid):
            out.error("twilio.rest action=%s ok=False error=bad_sid: the call's start named no AccountSid "
                      "or CallSid to act on", action)
            return RestResult(action, False, None, 0.0, "bad_sid")
        user, password = self._api_key or (account_sid, self._auth_token)
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        url = f"{self.base_url}/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json"
        headers = {"Authorization": f"Basic {credentials}", "Accept": "application/json",
                   "Content-Type": "application/x-www-form-urlencoded"}
        started = time.monotonic()
        try:
            response = self._client.post(url, urlencode(form).encode("ascii"), headers,
                                         timeout_s=self.timeout_s, max_body_bytes=MAX_ANSWER_BYTES)
        except OutboundError as exc:
            result = RestResult(action, False, exc.status, _ms_since(started), exc.kind, _twilio_code(exc.body))
            out.warning("twilio.rest action=%s ok=False status=%s twilio_code=%s error=%s duration_ms=%.0f detail=%r",
                        action, result.status or "-", result.twilio_code or "-", result.error, result.duration_ms,
                        exc.detail)
            return result
        result = RestResult(action, True, response.status, _ms_since(started))
        out.info("twilio.rest action=%s ok=True status=%s duration_ms=%.0f", action, result.status, result.duration_ms)
        return result


def _twilio_code(body: bytes) -> int | None:
    """The ``code`` of Twilio's error document, if the body is one."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    code = document.get("code") if isinstance(document, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000
