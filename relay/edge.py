"""The relay's HTTP edge: each connection from its first byte to a call, or to a plain answer.

RelayHandler is gevent's HTTP handler (``gevent.pywsgi.WSGIHandler``) with three changes:

- Request heads are read within relay.request_limits: a deadline from the connection's
  start, a byte and line cap, a cap on connections waiting for a head (the oldest is let
  go), and no keep-alive by default. gevent's parser then reads the head from memory.
- The WebSocket upgrade is the relay's own, not gevent-websocket's (which answered a key
  that was not base64 with ``500`` and kept the call slot): ``RelayApp.admit`` checks the
  route, the handshake (relay.handshake), the drain, ``X-Twilio-Signature`` and capacity
  before anything is sent; once it has taken a call slot, one ``finally`` gives it back
  whatever happens next (the caller hanging up mid-handshake, an error of ours).
- Every request answered without a call leaves one log line, through ``RelayApp.note``
  (rate-limited, relay.log_limit): its reason, status, method, path and peer address.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from io import BytesIO
from typing import TYPE_CHECKING, Any

import gevent
from gevent.pywsgi import MAX_REQUEST_LINE, WSGIHandler, headers_factory

from relay.handshake import Refusal, wants_websocket
from relay.request_limits import HeadIncomplete, HeadTooLarge, read_head
from relay.transport import server_connection

if TYPE_CHECKING:
    from relay.server import RelayApp

log = logging.getLogger(__name__)

# A Twilio media frame is about 400 bytes; nothing Twilio sends comes near this.
MAX_TWILIO_MESSAGE_BYTES = 64 * 1024
# The WSGI app tells the handler why it answered as it did (the log line's reason).
REASON_KEY = "relay.reason"


class RelayHandler(WSGIHandler):
    """gevent's HTTP handler with the relay's limits, its own upgrade and one log line per request."""

    environ: Any  # gevent's: the WSGI environ of the request being handled (None before one is read)

    def __init__(self, sock: Any, address: Any, server: Any, rfile: Any = None) -> None:
        super().__init__(sock, address, server, rfile)
        self.app: RelayApp = server.application
        self._opened = time.monotonic()
        self._requests = 0
        self._header_block = b""
        self._reason: str | None = None
        self._evicted = False

    # -- the request head, within the limits ----------------------------------------------------

    def read_requestline(self) -> str:
        """Read the whole head (line and headers) within the limits; '' closes the connection."""
        limits = self.app.request_limits
        self._reason = None
        self.environ = None  # the previous request's, on a kept-alive connection
        self.app.pending_heads.enter(self)
        try:
            deadline_s = limits.header_timeout_s - (time.monotonic() - self._opened)
            if self._requests:  # kept alive: wait (quietly) for the next request's first byte
                try:
                    self._within(limits.keepalive_idle_s, lambda: self.rfile.peek(1))
                except OSError:  # idle too long, gone, or let go: nothing to answer or log
                    return ""
                deadline_s = limits.header_timeout_s
            lines: list[bytes] | None = self._within(deadline_s, lambda: read_head(self.rfile.readline, limits))
        except HeadTooLarge:
            self._note_head("headers_too_large", 431)
            self._send_raw("431 Request Header Fields Too Large", "request head too large\n")
            return ""
        except (HeadIncomplete, OSError) as exc:  # TimeoutError is an OSError
            if self._evicted:
                self._note_head("evicted", 408)
            elif isinstance(exc, TimeoutError):
                self._note_head("header_timeout", 408)
            else:
                self._note_head("incomplete_head", 400)
            return ""
        finally:
            self.app.pending_heads.leave(self)
        if lines is None:  # closed before sending a byte: not a request
            if self._evicted:
                self._note_head("evicted", 408)
            return ""
        self._requests += 1
        self._header_block = b"".join(lines[1:])
        if len(lines[0]) >= MAX_REQUEST_LINE:
            self._reason = "request_line_too_long"  # gevent answers 414
        return lines[0].decode("latin-1")

    @staticmethod
    def _within(seconds: float, read: Callable[[], Any]) -> Any:
        """``read()``, or TimeoutError once ``seconds`` have passed."""
        timer = gevent.Timeout(max(seconds, 0.001))
        timer.start()
        try:
            return read()
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise TimeoutError(f"nothing complete within {seconds:g} s") from None
        finally:
            timer.close()

    def MessageClass(self, *_args: Any) -> Any:  # noqa: N802 - gevent's name for its header parser
        """The headers, parsed from the head ``read_requestline`` already read (never the socket)."""
        return headers_factory(BytesIO(self._header_block))

    def evict(self) -> None:
        """Too many connections wait for a head: let this one (the oldest) go."""
        self._evicted = True
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError as exc:  # the peer left first: nothing to let go
            log.debug("http.evict_gone detail=%s", exc)

    def _note_head(self, reason: str, status: int) -> None:
        self.app.note(reason, status, event="http.request", remote=self._remote())

    def _send_raw(self, status: str, body: str) -> None:
        """An answer written before gevent parsed anything (it would not send one)."""
        data = body.encode()
        head = (f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n")
        try:
            self._within(1.0, lambda: self.socket.sendall(head.encode() + data))
        except OSError as exc:  # the peer is gone or does not read: there is no one to tell
            log.debug("http.answer_unsent status=%s detail=%s", status[:3], exc)

    def _remote(self) -> object:
        address = self.client_address
        return address[0] if isinstance(address, tuple) else address

    def _handle_client_error(self, ex: BaseException) -> Any:
        """A request gevent could not parse: its 400, logged once by ``log_request``."""
        self._reason = "bad_request"
        return super()._handle_client_error(ex)

    def log_error(self, msg: str, *args: Any) -> None:
        """Drop gevent's own error lines: ``log_request`` writes one (rate-limited) line instead."""

    # -- answers ------------------------------------------------------------------------------------

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        """gevent's, announcing ``Connection: close`` unless keep-alive is allowed."""
        if (self.app.request_limits.keepalive_idle_s <= 0 and not status.startswith("101")
                and not any(name.lower() == "connection" for name, _ in headers)):
            headers = [*headers, ("Connection", "close")]
        return super().start_response(status, headers, exc_info)

    def run_application(self) -> None:
        """Plain requests go to the WSGI app; upgrades are the relay's own."""
        if not wants_websocket(self.environ):
            super().run_application()
            return
        try:
            verdict = self.app.admit(self.environ)
        except Exception:  # a bug of ours: its traceback is logged, and the peer still gets a 4xx
            log.exception("call.upgrade_failed stage=admission")
            verdict = Refusal(400, "upgrade_failed", "the upgrade could not be handled")
        if isinstance(verdict, Refusal):
            self._refuse(verdict)
            return
        try:  # admit took a call slot: it comes back whatever happens from here on
            self._switch_protocols(verdict)
        except Exception:  # the top of this call's greenlet: log, and answer 4xx if nothing was sent
            log.exception("call.upgrade_failed stage=switch")
            if not self.headers_sent:
                self._refuse(Refusal(400, "upgrade_failed", "the upgrade could not be handled"))
        finally:
            self.app.release()

    def _refuse(self, refusal: Refusal) -> None:
        self._reason = refusal.reason
        self.close_connection = True
        data = (refusal.body + "\n").encode()
        self.start_response(refusal.status_line, [
            ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data))),
            *refusal.headers])
        self.write(data)

    def _switch_protocols(self, accept: str) -> None:
        """Send the 101 and run the call on this socket until it ends."""
        self.close_connection = True
        try:
            self.start_response("101 Switching Protocols", [
                ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)])
            self.write(b"")  # sends the head
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = server_connection(self.socket, self._read_buffered(),
                                     max_message_bytes=MAX_TWILIO_MESSAGE_BYTES,
                                     max_queued_bytes=self.app.limits.max_queued_bytes)
        except OSError:  # the caller hung up in the middle of the handshake
            self.app.note("client_gone", 101, event="call.upgrade_failed", method=self.command,
                          path=self.path, remote=self._remote())
            return
        try:
            self.app.run_call(conn)
        finally:
            conn.release()

    def _read_buffered(self) -> bytes:
        """Bytes read past the upgrade request (a client may send frames before the 101 arrives)."""
        timeout = self.socket.gettimeout()
        self.socket.settimeout(0.0)  # peek must not wait for more
        try:
            data: bytes = self.rfile.peek(65536)
        except (BlockingIOError, ssl.SSLWantReadError):  # nothing buffered (TLS says so this way)
            return b""
        else:
            if data:
                self.rfile.read(len(data))
            return data
        finally:
            self.socket.settimeout(timeout)

    def log_request(self) -> None:
        """One line per request answered without a call (probes and calls log their own way)."""
        environ = self.environ or {}
        reason = self._reason or environ.get(REASON_KEY)
        if reason is None:
            return
        status = self.code if isinstance(self.code, int) and self.code > 0 else _status_of(self.status)
        self.app.note(reason, status, upgrade=bool(environ) and wants_websocket(environ),
                      method=self.command or "-", path=environ.get("PATH_INFO", self.path or "-"),
                      remote=self._remote())


def _status_of(status: object) -> int:
    """The numeric status from gevent's status (``b"400 Bad Request"``, ``"400"`` or an error text)."""
    text = status.decode("latin-1") if isinstance(status, bytes) else str(status or "")
    head = text[:3]
    return int(head) if head.isdigit() else 0
