"""The webhook's three routes and its plain-text error pages.

- ``POST /twilio/voice``: Twilio's "A call comes in" webhook. Signed; answers TwiML
  that streams the call to the relay with a freshly minted stream token.
- ``POST /twilio/status``: the ``<Stream statusCallback>``. Signed; logs one line.
- ``GET /healthz``: liveness, with the version.

Signatures are checked against ``WEBHOOK_PUBLIC_URL`` + the request path (+ query), never
``request.url``: behind a Lambda Function URL or a proxy, the URL the app sees is not the
one Twilio signed (https://www.twilio.com/docs/usage/security#validating-requests). The
signature is checked before the form's content is looked at (only routing's 404/405 and
the 413 for an oversized body come earlier), so an unsigned caller learns nothing but "403".

No network calls while answering: Twilio waits at most 15 s for the whole answer
(error 11200), and a cold Lambda has already spent part of that.
Logging never carries secrets, the stream token, or the callers' numbers (PII).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping

from flask import Flask, Response, jsonify, request
from twilio.request_validator import RequestValidator
from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
)

from webhook_app import stream_token, twiml
from webhook_app.config import WebhookConfig

log = logging.getLogger(__name__)

VOICE_PATH = "/twilio/voice"
STATUS_PATH = "/twilio/status"
HEALTH_PATH = "/healthz"

SIGNATURE_HEADER = "X-Twilio-Signature"
# Present when the account signs webhooks with a SharedKey instead of the Auth Token.
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"

# StreamEvent values of the <Stream> status callback
# (https://www.twilio.com/docs/voice/twiml/stream#statuscallback).
STREAM_ERROR = "stream-error"
# What a logged request value may hold unquoted: URL characters, no spaces, no controls.
_PLAIN = re.compile(r"[A-Za-z0-9._~:/?#@!$&()*+,;=%-]*")


class Webhook:
    """The view functions, sharing one validated config and one RequestValidator."""

    def __init__(self, config: WebhookConfig, clock: Callable[[], float], version: str) -> None:
        self.config = config
        self.clock = clock
        self.version = version
        self._validator = RequestValidator(config.twilio_auth_token)

    def register(self, app: Flask) -> None:
        """Add the routes and the plain-text error handler to ``app``."""
        # No automatic OPTIONS: nothing but Twilio (and a health check) should talk to this app.
        app.add_url_rule(VOICE_PATH, "voice", self.voice, methods=["POST"],
                         provide_automatic_options=False)
        app.add_url_rule(STATUS_PATH, "status", self.status, methods=["POST"],
                         provide_automatic_options=False)
        app.add_url_rule(HEALTH_PATH, "healthz", self.healthz, methods=["GET"],
                         provide_automatic_options=False)
        app.register_error_handler(HTTPException, _plain_error)

    # -- signature ------------------------------------------------------------------------

    def signed_url(self) -> str:
        """Return the URL Twilio requested, as it signed it: the public origin, never ``request.url``."""
        url = self.config.webhook_public_url + request.path
        query = request.query_string.decode("latin-1")  # WSGI carries the raw query as latin-1
        return f"{url}?{query}" if query else url

    def require_signature(self) -> None:
        """Abort with 403 unless ``X-Twilio-Signature`` matches the public URL and the form."""
        signature = request.headers.get(SIGNATURE_HEADER, "")
        url = self.signed_url()
        # request.form reads the body: an oversized one raises 413 here, before any check.
        params = request.form
        if signature and self._validator.validate(url, params, signature):
            return
        settings = request.headers.get(SIGNATURE_SETTINGS_HEADER, "")
        reason = "missing" if not signature else "shared_key" if settings else "mismatch"
        log.warning(  # a caller chooses the path (and %0A decodes to a newline): see _loggable
            "twilio.signature_rejected path=%s reason=%s signed_url=%s remote=%s",
            _loggable(request.path), reason, _loggable(url), request.remote_addr,
        )
        if reason == "missing":
            raise Forbidden(f"{SIGNATURE_HEADER} header missing: only Twilio may call this URL")
        if reason == "shared_key":
            raise Forbidden(
                f"{SIGNATURE_HEADER} made with a SharedKey ({SIGNATURE_SETTINGS_HEADER}): this "
                f"webhook checks Auth Token signatures only"
            )
        raise Forbidden(
            f"{SIGNATURE_HEADER} does not match {url}: check that TWILIO_AUTH_TOKEN is this "
            f"account's Auth Token and that Twilio calls exactly WEBHOOK_PUBLIC_URL"
        )

    # -- routes ---------------------------------------------------------------------------

    def voice(self) -> Response:
        """Answer an incoming call: TwiML streaming it to the relay, then a spoken fallback."""
        self.require_signature()
        call_sid = _call_sid(request.form)
        now = self.clock()
        # The token binds the CallSid and both numbers: the relay refuses a start whose
        # numbers differ from these (it picks the assistant by the called number).
        parameters = stream_token.mint_parameters(
            self.config.stream_token_secret, call_sid, now=now, ttl_s=self.config.stream_token_ttl_s,
            caller_number=request.form.get("From", ""), called_number=request.form.get("To", ""),
        )
        document = twiml.connect_stream(
            stream_url=self.config.stream_url,
            status_callback_url=self.config.status_callback_url,
            parameters=parameters,
            fallback_message=self.config.fallback_message,
        )
        log.info(
            "twilio.voice call_sid=%s stream_url=%s token_ttl_s=%d",
            call_sid, self.config.stream_url, self.config.stream_token_ttl_s,
        )
        return Response(document, status=200, mimetype="text/xml")

    def status(self) -> Response:
        """Log a ``<Stream>`` status callback (stream-started / stream-stopped / stream-error)."""
        self.require_signature()
        form = request.form
        call_sid = _call_sid(form)
        event = _loggable(form.get("StreamEvent", "") or "-")
        stream_sid = _loggable(form.get("StreamSid", "") or "-")
        if event == STREAM_ERROR:
            log.warning(
                "stream.status event=%s call_sid=%s stream_sid=%s error=%r",
                event, call_sid, stream_sid, form.get("StreamError", ""),
            )
        else:
            log.info("stream.status event=%s call_sid=%s stream_sid=%s", event, call_sid, stream_sid)
        return Response(status=204)

    def healthz(self) -> Response:
        """Liveness: 200 with the version. Checks nothing remote, by design."""
        response = jsonify(status="ok", version=self.version)
        response.headers["Cache-Control"] = "no-store"
        return response


def _loggable(value: str) -> str:
    """``value`` as is if it is one plain word of URL characters, else quoted (``repr``).

    A request's values reach our log lines; quoting escapes CR, LF and every other
    character that could split a line or forge one (the Lambda runtime's handler formats
    these lines, so the escaping happens here, not in a formatter).
    """
    return value if _PLAIN.fullmatch(value) else repr(value)


def _call_sid(form: Mapping[str, str]) -> str:
    """The form's CallSid if it is exactly Twilio's ``CA`` + 32 hex digits; else 400.

    Twilio's signature concatenates each name and value with no separator, so a signed
    form can be re-cut (``CallSid=CA…CallStatusringing`` with ``CallStatus`` dropped
    signs the same): only the exact shape is accepted.
    """
    call_sid = form.get("CallSid", "")
    if not call_sid:
        raise BadRequest(
            "CallSid is missing from the form: this URL expects a Twilio webhook "
            "(POST, application/x-www-form-urlencoded)"
        )
    if not stream_token.is_call_sid(call_sid):
        raise BadRequest("CallSid is not a Twilio CallSid (CA and 32 hex digits)")
    return call_sid


def _plain_error(error: HTTPException) -> Response:
    """Answer every HTTP error with one plain-text line (Twilio's debugger shows the body)."""
    code = error.code or 500
    description = error.description
    if isinstance(error, NotFound):
        description = (
            f"nothing at {request.path}; this webhook serves POST {VOICE_PATH}, "
            f"POST {STATUS_PATH} and GET {HEALTH_PATH}"
        )
    elif isinstance(error, MethodNotAllowed):
        allowed = ", ".join(error.valid_methods or ())
        description = f"{request.method} not allowed on {request.path}; use {allowed}"
        if request.path in (VOICE_PATH, STATUS_PATH):
            description += " (set the webhook's method to HTTP POST in the Twilio Console)"
    elif isinstance(error, RequestEntityTooLarge):
        description = (
            f"request body over {request.max_content_length} bytes: Twilio's webhook forms "
            f"are 1-2 KB"
        )
    response = Response(f"{code} {error.name}: {description}\n", status=code, mimetype="text/plain")
    for name, value in error.get_headers():
        if name.lower() == "allow":
            response.headers[name] = value
    return response
