"""The relay's WSGI application and its HTTP handler.

Routes (a plain WSGI callable: four fixed paths need no framework, and Werkzeug's
routing has a silent trap here: an upgrade reaches only a rule declared with
``websocket=True``, otherwise the handshake succeeds and the socket closes with 1005):

- ``GET /twilio/realtime`` with an upgrade: one Twilio media stream = one call.
  Without an upgrade: ``426 Upgrade Required``, ``WebSocket connection expected``.
- ``GET /healthz``: ``{"status": "ok"|"saturated"|"draining"}``, 503 unless ok; the full
  document (version, calls, limit) with ``Authorization: Bearer <DIAGNOSTIC_TOKEN>``.
- ``GET /livez``: ``200 ok`` whenever the worker can answer at all (saturated or draining too).
- ``GET /diagnostic/openai``: bearer-protected upstream check (relay.diagnostic), counted as
  a call, one at a time per instance; ``upstream`` says whether OPENAI_REALTIME_URL is OpenAI
  or, ``local``, a model server on this machine such as the stand-in (relay.model_server).

Every connection is read by relay.edge.RelayHandler (request heads within
relay.request_limits, the upgrade, one log line per request); it asks ``RelayApp.admit``
whether an upgrade may become a call, and hands plain requests to ``RelayApp`` as WSGI.
Every check that must answer instead of ``101`` (route, handshake, drain,
``X-Twilio-Signature``, capacity) runs in ``admit``, before the handshake is answered.
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from twilio.request_validator import RequestValidator

from relay import __version__, call_settings, diagnostic, metrics, model_server
from relay.call_settings import BridgeSettings
from relay.capacity import CallCounter, LocalCallCounter
from relay.config import RelayConfig
from relay.edge import REASON_KEY, RelayHandler
from relay.handshake import Refusal
from relay.handshake import check as check_handshake
from relay.limits import Limits
from relay.live_call import CallRegistry, LiveCall
from relay.log_limit import LogLimiter
from relay.replay_guard import ReplayGuard
from relay.report_delivery import DeliveryLimits, ReportDelivery
from relay.request_limits import PendingHeads, RequestLimits
from relay.tools import ToolRunner
from relay.transport import WebSocketConnection
from relay.twilio_rest import TwilioRest
from relay.upstream import UpstreamConnector

__all__ = ["RelayApp", "RelayHandler", "create_app"]

log = logging.getLogger(__name__)

STREAM_PATH = "/twilio/realtime"
HEALTH_PATH = "/healthz"
LIVE_PATH = "/livez"
DIAGNOSTIC_PATH = "/diagnostic/openai"
METRICS_PATH = "/metrics"
# Reasons logged at INFO; every other refusal is a peer anomaly (WARNING).
_INFO_REASONS = frozenset({"not_websocket", "draining", "diagnostic_busy"})
_PEER_VALUE_CHARS = 120
_REQUEST_LINE = " reason=%s status=%d method=%s path=%s remote=%s"

StartResponse = Callable[..., Any]


def _text(start_response: StartResponse, status: str, body: str,
          extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    data = body.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    start_response(status, headers + (extra or []))
    return [data]


def _json(start_response: StartResponse, status: str, document: dict[str, Any],
          extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    data = json.dumps(document).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
               ("Cache-Control", "no-store")]
    start_response(status, headers + (extra or []))
    return [data]


def _refused(start_response: StartResponse, environ: dict[str, Any], refusal: Refusal) -> list[bytes]:
    environ[REASON_KEY] = refusal.reason
    return _json(start_response, refusal.status_line, {"ok": False, "error": refusal.body},
                 list(refusal.headers))


def peer_value(value: object) -> str:
    """A value a peer chose, safe in a ``key=value`` line: control characters and spaces escaped, length capped."""
    text = str(value)[:_PEER_VALUE_CHARS]
    return text.encode("unicode_escape").decode("ascii").replace(" ", "\\x20") or "-"


class RelayApp:
    """The relay: WSGI for plain HTTP, ``run_call`` for upgraded streams."""

    def __init__(
        self,
        config: RelayConfig,
        *,
        counter: CallCounter | None = None,
        ssl_context: Any = None,
        limits: Limits | None = None,
        request_limits: RequestLimits | None = None,
        delivery_limits: DeliveryLimits | None = None,
    ) -> None:
        self.config = config
        self.limits = limits or Limits()
        self.request_limits = request_limits or RequestLimits()
        self.counter: CallCounter = counter or LocalCallCounter()
        self.registry = CallRegistry(self.limits.tick_s)
        self.replay_guard = ReplayGuard()
        self.draining = False
        self.version = __version__
        self.pending_heads = PendingHeads(self.request_limits.max_pending_heads)
        self.request_log = LogLimiter(self.request_limits.log_burst, self.request_limits.log_per_s)
        self._validator = RequestValidator(config.twilio_auth_token)
        self._conn_ids = itertools.count(1)
        self._pid = os.getpid()
        by_number = call_settings.personas(config.assistants, config.openai_transcription_model)
        # The diagnostic sends exactly what the default assistant's calls send.
        self.session_update = by_number[""].session_update
        self.bridge_settings = BridgeSettings(
            stream_token_secret=config.stream_token_secret,
            personas=by_number,
            start_timeout_s=config.start_timeout_s,
            session_timeout_s=config.session_timeout_s,
            max_call_s=config.max_call_s,
            model=config.openai_realtime_model,
            transcription_model=config.openai_transcription_model,
        )
        self.twilio_rest = TwilioRest.from_config(config)
        self.tool_runner = ToolRunner(config.signing_secret) if config.signing_secret else None
        self.reports = (ReportDelivery(config.call_report_url, config.signing_secret,
                                       limits=delivery_limits or DeliveryLimits(), on_outcome=metrics.report_delivered)
                        if config.call_report_url and config.signing_secret else None)
        self.connector = UpstreamConnector(
            config.openai_connect_url,
            config.openai_api_key,
            config.openai_connect_timeout_s,
            ssl_context=ssl_context,
            max_queued_bytes=self.limits.max_queued_bytes,
        )

    # -- lifecycle ----------------------------------------------------------------------

    def use_counter(self, counter: CallCounter) -> None:
        """Count calls with ``counter`` (the worker's shared one under gunicorn)."""
        self.counter = counter

    def begin_drain(self) -> None:
        """SIGTERM: refuse new calls, report 503, let live calls finish."""
        if not self.draining:
            self.draining = True
            log.info("relay.draining live_calls=%d", len(self.registry.calls))
            for kind, count in self.request_log.suppressed().items():
                log.info("log.suppressed kind=%s count=%d", kind, count)

    # -- one log line per answered request ---------------------------------------------------

    def note(self, reason: str, status: int, *, event: str | None = None, upgrade: bool = False,
             method: object = "-", path: object = "-", remote: object = "-") -> None:
        """Log a request the relay answered without a call; rate-limited per event and reason."""
        if event is None:
            event = ("call.refused" if upgrade
                     else "diagnostic.refused" if path == DIAGNOSTIC_PATH else "http.request")
        dropped = self.request_log.admit(f"{event}.{reason}")
        if dropped is None:
            return
        level = logging.INFO if reason in _INFO_REASONS else logging.WARNING
        fields = (reason, status, peer_value(method), peer_value(path), peer_value(remote))
        if dropped:  # the first line after some were dropped says how many
            log.log(level, event + _REQUEST_LINE + " suppressed=%d", *fields, dropped)
        else:
            log.log(level, event + _REQUEST_LINE, *fields)

    # -- admission (runs in the handler, before the 101) -----------------------------------

    def admit(self, environ: dict[str, Any]) -> Refusal | str:
        """Check an upgrade request: the ``Sec-WebSocket-Accept`` value (a call slot taken), or a refusal."""
        path = environ.get("PATH_INFO", "")
        if path != STREAM_PATH:
            return Refusal(404, "unknown_path", f"no WebSocket endpoint at {path}; streams go to {STREAM_PATH}")
        accept = check_handshake(environ)  # before anything is taken: a broken handshake costs nothing
        if isinstance(accept, Refusal):
            return accept
        if self.draining:
            return Refusal(503, "draining", "relay is draining for a deploy; retry on another instance")
        signature = environ.get("HTTP_X_TWILIO_SIGNATURE", "")
        if not signature or not self._validator.validate(self.config.stream_url, {}, signature):
            return Refusal(403, "bad_signature", "X-Twilio-Signature missing or invalid for " + self.config.stream_url)
        if not self.counter.try_acquire(self.config.max_calls):
            return Refusal(503, "saturated", f"relay is at capacity ({self.config.max_calls} calls)")
        return accept

    def release(self) -> None:
        """Give back the call slot taken by ``admit``."""
        self.counter.release()

    def run_call(self, twilio: WebSocketConnection) -> None:
        """Bridge one upgraded Twilio stream until it ends (blocks this greenlet)."""
        call = LiveCall(
            twilio,
            conn_id=f"{self._pid}-{next(self._conn_ids)}",
            settings=self.bridge_settings,
            limits=self.limits,
            connector=self.connector,
            replay_guard=self.replay_guard,
            twilio_rest=self.twilio_rest,
            tool_runner=self.tool_runner,
            reports=self.reports,
            on_end=self.registry.remove,
        )
        self.registry.add(call)
        call.run()

    # -- plain HTTP -----------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer plain HTTP: 426 on the stream route, /healthz, /livez, /diagnostic/openai, 404."""
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path not in (STREAM_PATH, HEALTH_PATH, LIVE_PATH, DIAGNOSTIC_PATH, METRICS_PATH):
            environ[REASON_KEY] = "unknown_path"
            return _text(start_response, "404 Not Found",
                         f"not found: this relay serves {STREAM_PATH} (WebSocket), {HEALTH_PATH}, "
                         f"{LIVE_PATH}, {METRICS_PATH} and {DIAGNOSTIC_PATH}\n")
        if method not in ("GET", "HEAD"):
            environ[REASON_KEY] = "method"
            return _text(start_response, "405 Method Not Allowed", f"{method} not allowed; use GET\n",
                         [("Allow", "GET, HEAD")])
        if path == STREAM_PATH:
            environ[REASON_KEY] = "not_websocket"
            return _text(start_response, "426 Upgrade Required", "WebSocket connection expected\n",
                         [("Upgrade", "websocket")])
        if path == LIVE_PATH:
            return _text(start_response, "200 OK", "ok\n", [("Cache-Control", "no-store")])
        if path == HEALTH_PATH:
            healthy, document = self.health()
            if not self._authorized(environ):
                document = {"status": document["status"]}  # the public answer: status only
            return _json(start_response, "200 OK" if healthy else "503 Service Unavailable", document)
        if path == METRICS_PATH:
            return self._metrics(environ, start_response)
        return self._diagnostic(environ, start_response)

    def _metrics(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """Prometheus text for the whole instance, behind the diagnostic token."""
        if not self.config.diagnostic_token:
            return _refused(start_response, environ, Refusal(
                404, "metrics_disabled", "metrics endpoint disabled: set DIAGNOSTIC_TOKEN"))
        if not self._authorized(environ):
            return _refused(start_response, environ, Refusal(
                401, "unauthorized", "Authorization: Bearer <DIAGNOSTIC_TOKEN> required",
                (("WWW-Authenticate", 'Bearer realm="relay metrics"'),)))
        body = metrics.exposition()
        start_response("200 OK", [("Content-Type", metrics.CONTENT_TYPE), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store")])
        return [body]

    def _authorized(self, environ: dict[str, Any]) -> bool:
        """The request carries ``Authorization: Bearer <DIAGNOSTIC_TOKEN>`` (and one is set)."""
        expected = self.config.diagnostic_token
        supplied = environ.get("HTTP_AUTHORIZATION", "")
        return bool(expected) and hmac.compare_digest(supplied.encode(), f"Bearer {expected}".encode())

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, the full document) for /healthz."""
        active = self.counter.total()
        saturated = active >= self.config.max_calls
        status = "draining" if self.draining else "saturated" if saturated else "ok"
        return status == "ok", {
            "status": status,
            "version": self.version,
            "active_calls": active,
            "max_calls": self.config.max_calls,
            "draining": self.draining,
        }

    def _diagnostic(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if not self.config.diagnostic_token:
            return _refused(start_response, environ, Refusal(
                404, "diagnostic_disabled", "diagnostic endpoint disabled: set DIAGNOSTIC_TOKEN"))
        if not self._authorized(environ):
            return _refused(start_response, environ, Refusal(
                401, "unauthorized", "Authorization: Bearer <DIAGNOSTIC_TOKEN> required",
                (("WWW-Authenticate", 'Bearer realm="relay diagnostic"'),)))
        # It opens a billable Realtime session: it counts as a call, and runs one at a time.
        if self.draining:
            return _refused(start_response, environ, Refusal(
                503, "draining", "relay is draining for a deploy; ask another instance"))
        if not self.counter.try_acquire(self.config.max_calls):
            return _refused(start_response, environ, Refusal(
                503, "saturated", f"relay is at capacity ({self.config.max_calls} calls)"))
        try:
            wait_s = self.counter.try_begin_diagnostic(time.monotonic(), self.request_limits.diagnostic_interval_s)
            if wait_s is not None:
                return _refused(start_response, environ, Refusal(
                    429, "diagnostic_busy",
                    f"one diagnostic at a time, at most one every {self.request_limits.diagnostic_interval_s:g} s",
                    (("Retry-After", str(max(1, math.ceil(wait_s)))),)))
            try:
                result = diagnostic.run(self.connector, self.session_update, self.config.session_timeout_s)
            finally:
                self.counter.end_diagnostic()
        finally:
            self.counter.release()
        result["model"] = self.config.openai_realtime_model
        result["upstream"] = self.config.openai_upstream  # "local": not OpenAI (relay/model_server.py)
        result["upstream_note"] = self.config.openai_upstream_note
        log.info("diagnostic.openai ok=%s stage=%s http_status=%s error_code=%s elapsed_ms=%s",
                 result["ok"], result["stage"], result["http_status"], result["error_code"],
                 result["elapsed_ms"])
        return _json(start_response, "200 OK" if result["ok"] else "502 Bad Gateway", result)


def create_app(config: RelayConfig, **kwargs: Any) -> RelayApp:
    """The relay application for ``config``."""
    app = RelayApp(config, **kwargs)
    log.info("relay.configured %s", " ".join(f"{k}={v!r}" for k, v in config.redacted().items()
                                              if k not in ("assistant_instructions",)))
    if config.openai_upstream != model_server.OPENAI:  # said plainly: someone may think they set a key
        log.warning("relay.openai_upstream upstream=%r url=%r note=%r", config.openai_upstream,
                    config.openai_realtime_url, config.openai_upstream_note)
    return app
