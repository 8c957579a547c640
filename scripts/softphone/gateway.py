"""The softphone's gateway: serves the page, and plays Twilio for the calls the page places.

A browser cannot sign a WebSocket upgrade (no custom headers), so the page talks only to
this gateway, same origin, on 127.0.0.1; the gateway does for it what Twilio does for a
phone (``phone_call.PhoneCall``), and the relay and the webhook run unchanged.

Routes:

- ``GET /`` and the page's files (``static/``);
- ``GET /phone`` + WebSocket upgrade: one call (``page_messages`` says what travels on it);
- ``GET /healthz``: ``{"status": "ok", "calls": N}``;
- Twilio's REST API for its calls (``rest_api.py``): point the relay's TWILIO_API_BASE_URL at
  the gateway and the assistant's hang-ups and transfers end the page's call, as Twilio would;
- anything else ``mount()``ed: another WSGI app under a path prefix.

Only loopback: the server binds 127.0.0.1, answers only requests whose ``Host`` is this
address (a DNS-rebinding page gets 403), and upgrades ``/phone`` only for a page of its own
origin (another site's page in the same browser gets 403): every call costs a Realtime
session.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import socket
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import Any

import gevent
from gevent.pywsgi import WSGIServer
from geventwebsocket.exceptions import ProtocolError
from geventwebsocket.handler import WebSocketHandler

from scripts.softphone import page_messages as pm
from scripts.softphone.phone_call import Limits, Line, PhoneCall
from scripts.softphone.rest_api import serve_rest_api

log = logging.getLogger("softphone")

STATIC = Path(__file__).resolve().parent / "static"
PHONE_PATH = "/phone"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_TYPES = {".js": "text/javascript; charset=utf-8", ".html": "text/html; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


class PageSocket:
    """A page's WebSocket (gevent-websocket), as ``PhoneCall`` uses it."""

    def __init__(self, ws: Any, close_timeout_s: float) -> None:
        self._ws = ws
        self._socket = ws.handler.socket
        self._close_timeout_s = close_timeout_s

    def send(self, message: str | bytes) -> None:
        """One text or binary message; OSError if the page is gone."""
        if self._ws.closed:
            raise OSError("the page's socket is closed")
        self._ws.send(message, binary=isinstance(message, bytes))

    def receive(self) -> str | bytes | None:
        """The next message; None once the page has closed; PageProtocolError for broken frames."""
        if self._ws.closed:
            return None
        try:
            message = self._ws.read_message()
        except UnicodeError:
            raise pm.PageProtocolError("a text message that is not UTF-8") from None
        except ProtocolError as exc:
            raise pm.PageProtocolError(f"a malformed WebSocket frame ({exc})") from None
        if isinstance(message, bytearray):
            return bytes(message)
        return message  # type: ignore[no-any-return]

    def close(self) -> None:
        """Send a close; if the page does not answer soon, drop the connection."""
        if not self._ws.closed:
            with suppress(OSError):
                self._ws.close()
        gevent.spawn_later(self._close_timeout_s, self._drop)

    def _drop(self) -> None:
        with suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)


class Gateway:
    """The page's server and the registry of live calls."""

    def __init__(self, line: Line, *, port: int = 0, limits: Limits | None = None,
                 static_dir: Path = STATIC) -> None:
        self.line = line
        self.limits = limits or Limits()
        self.port = port
        self.static_dir = static_dir
        self.calls: dict[str, PhoneCall] = {}
        self.ended: list[PhoneCall] = []  # the last few, for tests and a REST stand-in's lookups
        self._mounts: list[tuple[str, WSGIApp]] = []
        self._server: WSGIServer | None = None
        self._watchdog: gevent.Greenlet | None = None
        self.rest_api = serve_rest_api(self)  # what the relay's REST requests did, for tests

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def rest_api_url(self) -> str:
        """The relay's ``TWILIO_API_BASE_URL`` for the page's calls."""
        return f"http://127.0.0.1:{self.port}"

    def mount(self, prefix: str, app: WSGIApp) -> None:
        """Serve ``app`` for every path under ``prefix`` (e.g. ``/2010-04-01/``); the latest mount wins."""
        self._mounts.insert(0, (prefix, app))

    def start(self) -> Gateway:
        """Listen on 127.0.0.1 (port 0 picks a free one; ``port`` is then set)."""
        gateway = self

        class Handler(WebSocketHandler):
            def upgrade_websocket(self) -> Any:
                refusal = gateway.refuse(self.environ)
                if refusal is not None:
                    self.close_connection = True
                    body = refusal.encode()
                    self.start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                                          ("Content-Length", str(len(body)))])
                    return [body]
                return super().upgrade_websocket()

        self._server = WSGIServer(("127.0.0.1", self.port), self.wsgi, handler_class=Handler,
                                  log=None, error_log=log)
        self._server.start()
        self.port = self._server.server_port
        self._watchdog = gevent.spawn(self._watch)
        return self

    def stop(self) -> None:
        """End every call (as the caller hanging up) and stop listening."""
        for call in list(self.calls.values()):
            call.end("the softphone gateway stopped", by=pm.ENDED_BY_CALLER)
        for call in self.ended:
            call.background.join(timeout=self.limits.connect_timeout_s)
        if self._watchdog is not None:
            self._watchdog.kill()
        if self._server is not None:
            self._server.stop(timeout=1)
            self._server = None

    def serve_forever(self) -> None:
        """Block until the server stops."""
        assert self._server is not None
        self._server.serve_forever()

    # -- who may talk to it ------------------------------------------------------------------

    def _own_hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    def refuse(self, environ: dict[str, Any]) -> str | None:
        """Why a request may not be served, or None."""
        host = environ.get("HTTP_HOST", "")
        if host not in self._own_hosts():
            return f"this softphone answers only http://127.0.0.1:{self.port}/ (Host was {host[:60]!r})"
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            if environ.get("PATH_INFO") != PHONE_PATH:
                return f"no WebSocket at {environ.get('PATH_INFO', '')[:60]}"
            origin = environ.get("HTTP_ORIGIN", "")
            if origin != f"http://{host}":
                return (f"calls are placed only from the softphone's own page (Origin was {origin[:60]!r}): "
                        f"open http://127.0.0.1:{self.port}/")
            if len(self.calls) >= self.limits.max_calls:
                return (f"{len(self.calls)} calls are already live (at most {self.limits.max_calls}): "
                        f"hang one up first")
        return None

    # -- HTTP --------------------------------------------------------------------------------

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI app behind the server."""
        refusal = self.refuse(environ)
        if refusal is not None:
            return _answer(start_response, "403 Forbidden", refusal.encode(), "text/plain; charset=utf-8")
        path = environ.get("PATH_INFO", "")
        websocket = environ.get("wsgi.websocket")
        if websocket is not None:
            self._serve_call(websocket)
            return []
        for prefix, app in self._mounts:
            if path.startswith(prefix):
                return app(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", b"GET only\n", "text/plain")
        if path == "/healthz":
            body = json.dumps({"status": "ok", "calls": len(self.calls)}).encode()
            return _answer(start_response, "200 OK", body, "application/json")
        if path == PHONE_PATH:
            return _answer(start_response, "426 Upgrade Required", b"WebSocket connection expected\n",
                           "text/plain")
        return self._static(path, start_response)

    def _static(self, path: str, start_response: Callable[..., Any]) -> Iterable[bytes]:
        name = "index.html" if path == "/" else path.lstrip("/")
        file = self.static_dir / name
        # Only the files in static/ itself, by name: no paths, no dotfiles.
        if "/" in name or name.startswith(".") or not file.is_file():
            return _answer(start_response, "404 Not Found", b"not found\n", "text/plain")
        content_type = _TYPES.get(file.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return _answer(start_response, "200 OK", file.read_bytes(), content_type)

    # -- calls -------------------------------------------------------------------------------

    def _serve_call(self, ws: Any) -> None:
        call = PhoneCall(PageSocket(ws, self.limits.close_timeout_s), self.line, self.limits,
                         on_end=self._forget)
        self.calls[call.call_sid] = call
        try:
            call.run()
        finally:
            if not call.ended.is_set():  # a bug in run(): still end the call for the relay's sake
                call.end("the gateway failed", by=pm.ENDED_BY_GATEWAY)

    def _forget(self, call: PhoneCall) -> None:
        self.calls.pop(call.call_sid, None)
        self.ended = [*self.ended[-19:], call]

    def _watch(self) -> None:
        """End calls whose page has gone quiet (closed without a word, or frozen)."""
        while True:
            gevent.sleep(self.limits.watchdog_s)
            for call in list(self.calls.values()):
                if call.started_at is None or call.ended.is_set():
                    continue  # still dialing: the page's messages are read once the stream is up
                quiet_s = call.clock() - max(call.last_page_message_at, call.started_at)
                if quiet_s > self.limits.page_idle_s:
                    gevent.spawn(call.end, f"the page stopped sending (nothing for {quiet_s:.1f} s): "
                                 f"it was closed or frozen", by=pm.ENDED_BY_CALLER)


def _answer(start_response: Callable[..., Any], status: str, body: bytes, content_type: str) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                            ("Content-Security-Policy", "default-src 'self'")])
    return [body]
