"""Opening the OpenAI Realtime socket, one named stage at a time.

Stages: ``dns`` (resolve), ``tcp`` (connect), ``tls`` (wss only), ``handshake`` (the
HTTP upgrade, done by websocket-client) and, for the diagnostic, ``session``. Each stage
fails with an UpstreamError naming it, so a log line or ``/diagnostic/openai`` says *where*
the path to OpenAI broke, not just that it did.

The split also serves security: a call pre-connects (dns, tcp, tls: the slow round trips)
while Twilio's ``start`` is on its way, and sends the upgrade, which opens a billable
Realtime session, only once the stream token has been verified.

GA interface only: ``Authorization: Bearer``, never an ``OpenAI-Beta`` header
(the beta interface was retired on 2026-05-12; docs/openai-realtime.md#connecting).
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import gevent
import websocket

from relay.errors import UpstreamError
from relay.transport import MAX_QUEUED_BYTES, WebSocketConnection, client_connection

# The Realtime API's events are small JSON documents; a single audio delta is at most a
# few hundred KiB. Anything bigger is refused rather than buffered.
MAX_OPENAI_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class Preconnected:
    """A TCP (and, for wss, TLS) connection to the Realtime host, not yet upgraded."""

    sock: socket.socket
    address: str
    timings_ms: dict[str, float] = field(default_factory=dict)


class UpstreamConnector:
    """Opens Realtime sockets to ``url`` (with ``?model=``) with ``api_key``."""

    def __init__(
        self,
        url: str,
        api_key: str,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
    ) -> None:
        parts = urlsplit(url)
        self.url = url
        self.secure = parts.scheme == "wss"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.secure else 80)
        self._api_key = api_key
        self.timeout_s = timeout_s
        self._ssl_context = ssl_context
        self.max_queued_bytes = max_queued_bytes

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def preconnect(self) -> Preconnected:
        """Resolve, connect and (for wss) complete TLS; raise UpstreamError(stage)."""
        deadline = time.monotonic() + self.timeout_s
        timings: dict[str, float] = {}

        started = time.monotonic()
        try:
            with gevent.Timeout(self.timeout_s, UpstreamError("dns", "lookup timed out")):
                infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise UpstreamError("dns", f"cannot resolve {self.host}: {exc.strerror}") from None
        timings["dns"] = (time.monotonic() - started) * 1000

        started = time.monotonic()
        sock, address = self._connect_tcp(infos, deadline)
        timings["tcp"] = (time.monotonic() - started) * 1000

        if self.secure:
            started = time.monotonic()
            sock = self._wrap_tls(sock, deadline)
            timings["tls"] = (time.monotonic() - started) * 1000
        return Preconnected(sock, address, timings)

    def _connect_tcp(self, infos: Sequence[tuple[Any, ...]], deadline: float) -> tuple[socket.socket, str]:
        last_error = "no address to connect to"
        for family, kind, proto, _name, addr in infos:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamError("tcp", f"connect to {self.host}:{self.port} timed out")
            sock = socket.socket(family, kind, proto)
            sock.settimeout(remaining)
            try:
                sock.connect(addr)
            except TimeoutError:
                sock.close()
                last_error = f"connect to {addr[0]}:{addr[1]} timed out"
                continue
            except OSError as exc:
                sock.close()
                last_error = f"connect to {addr[0]}:{addr[1]} failed: {exc.strerror or exc}"
                continue
            except BaseException:
                sock.close()
                raise
            # Small frames both ways: never wait on Nagle / delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock, f"{addr[0]}:{addr[1]}"
        raise UpstreamError("tcp", last_error)

    def _wrap_tls(self, sock: socket.socket, deadline: float) -> socket.socket:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            tls = self._context().wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise UpstreamError("tls", f"TLS handshake failed: {exc}") from None
        except BaseException:
            sock.close()
            raise
        # The TLS socket owns the descriptor now: close *it* whatever stops the handshake, a
        # call that ended meanwhile (GreenletExit) included, or it stays open until the
        # garbage collector finds it.
        try:
            tls.do_handshake()
        except ssl.SSLCertVerificationError as exc:
            tls.close()
            raise UpstreamError("tls", f"certificate rejected: {exc.verify_message}") from None
        except (ssl.SSLError, OSError) as exc:
            tls.close()
            raise UpstreamError("tls", f"TLS handshake failed: {exc}") from None
        except BaseException:
            tls.close()
            raise
        return tls

    def handshake(self, pre: Preconnected) -> WebSocketConnection:
        """Send the upgrade on a preconnected socket; return the open connection."""
        started = time.monotonic()
        pre.sock.settimeout(self.timeout_s)
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=False)
        try:
            ws.connect(  # type: ignore[no-untyped-call]
                self.url,
                socket=pre.sock,
                header=[f"Authorization: Bearer {self._api_key}"],
                suppress_origin=True,
                redirect_limit=0,
                timeout=self.timeout_s,
            )
        except websocket.WebSocketBadStatusException as exc:
            pre.sock.close()
            code, message = _openai_error(exc.resp_body)
            raise UpstreamError(
                "handshake",
                message or f"HTTP {exc.status_code} {exc.status_message or ''}".strip(),
                status=exc.status_code,
                code=code,
            ) from None
        except (websocket.WebSocketException, OSError) as exc:
            pre.sock.close()
            raise UpstreamError("handshake", f"upgrade failed: {exc}") from None
        except BaseException:
            pre.sock.close()
            raise
        pre.timings_ms["handshake"] = (time.monotonic() - started) * 1000
        return client_connection(pre.sock, max_message_bytes=MAX_OPENAI_MESSAGE_BYTES,
                                 max_queued_bytes=self.max_queued_bytes)

    def connect(self) -> tuple[WebSocketConnection, dict[str, float]]:
        """All stages in a row (used by the diagnostic)."""
        pre = self.preconnect()
        return self.handshake(pre), pre.timings_ms


def _openai_error(body: bytes | None) -> tuple[str | None, str | None]:
    """OpenAI's ``{"error": {"code", "message"}}`` from a refused handshake, if present."""
    if not body:
        return None, None
    try:
        document = json.loads(body)
    except ValueError:
        return None, body[:200].decode("utf-8", "replace")
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return None, None
    code = error.get("code") or error.get("type")
    message = error.get("message")
    return (str(code) if code else None), (str(message)[:300] if message else None)
