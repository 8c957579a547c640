"""The network probes the verify scripts look through: plain HTTP, a WebSocket upgrade, TLS.

``http_request`` is one HTTP/1.1 exchange that always closes what it opened and reports
redirects instead of following them. ``websocket_upgrade`` is one upgrade and close
handshake, with websockets' protocol (independent of the relay's own WebSocket code).
``tls_problem`` turns an ``ssl.SSLError`` into the diagnosis code
(scripts/verify/diagnoses.py) and the facts that fill it in.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import OPEN
from websockets.uri import parse_uri
from websockets.utils import accept_key

from scripts.verify.settings import origin


@dataclass(frozen=True)
class HttpAnswer:
    """One HTTP response, read in full (up to a limit) and already closed."""

    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    elapsed_ms: float

    @property
    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    @property
    def content_type(self) -> str:
        """The media type, lower-case, without parameters."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def http_request(url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
                 body: bytes | None = None, timeout_s: float,
                 ssl_context: ssl.SSLContext | None = None, max_body: int = 256 * 1024) -> HttpAnswer:
    """One HTTP/1.1 exchange; redirects are reported, not followed.

    Raises OSError (refused, timed out, TLS) or http.client.HTTPException (not HTTP).
    """
    scheme, host, port = origin(url)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if scheme in ("https", "wss"):
        conn = http.client.HTTPSConnection(host, port, timeout=timeout_s,
                                           context=ssl_context or ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    started = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        try:
            data = response.read(max_body)
        finally:
            response.close()
        elapsed_ms = (time.monotonic() - started) * 1000
        return HttpAnswer(response.status, response.reason,
                          {k.lower(): v for k, v in response.getheaders()}, data, elapsed_ms)
    finally:
        conn.close()


def tls_problem(exc: ssl.SSLError) -> tuple[str, dict[str, Any]]:
    """(diagnosis code, its facts) for a failed TLS handshake: self-signed, wrong host, expired..."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or str(exc)
        code = {18: "tls_self_signed", 19: "tls_self_signed",  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, ..._IN_CHAIN
                62: "tls_wrong_host", 64: "tls_wrong_host",  # X509_V_ERR_HOSTNAME_MISMATCH, ..._IP_ADDRESS_MISMATCH
                10: "tls_expired",  # X509_V_ERR_CERT_HAS_EXPIRED
                20: "tls_untrusted_chain", 21: "tls_untrusted_chain",  # unable to get local issuer / verify leaf
                }.get(exc.verify_code, "tls_rejected")
        return code, {"message": message}
    reason = getattr(exc, "reason", None) or str(exc)
    if reason in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE", "HTTP_REQUEST"):
        return "tls_not_tls", {"reason": reason}
    return "tls_handshake_failed", {"reason": reason}


# -- the WebSocket upgrade ---------------------------------------------------------------------


@dataclass(frozen=True)
class UpgradeAnswer:
    """How a server answered a WebSocket upgrade, and on 101 how it answered our close."""

    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: str
    accept_ok: bool  # Sec-WebSocket-Accept matched the key (101 only)
    close_answer: tuple[int, str] | None = None  # the server's close frame (code, reason); None if none came


def websocket_upgrade(host: str, port: int, url: str, *, headers: Mapping[str, str], timeout_s: float,
                      ssl_context: ssl.SSLContext | None, close_timeout_s: float = 2.0) -> UpgradeAnswer:
    """One upgrade of ``url`` on a fresh connection; on 101, a clean close (1000) and the server's answer.

    The WebSocket side is websockets' Sans-I/O client: it builds the request, reads the
    response (status, headers, body) and checks Sec-WebSocket-Accept; after a 101 it sends
    the close frame and reads frames until the server's close frame comes back. A server
    that answers with a close frame but keeps the TCP connection open is seen as closing at
    once; one that never answers the close is reported as such.

    Raises OSError (refused, timed out, TLS) or http.client.HTTPException (not HTTP).
    """
    protocol = ClientProtocol(parse_uri(url), max_size=1 << 20)
    request = protocol.connect()
    for name, value in headers.items():
        request.headers[name] = value
    protocol.send_request(request)
    raw = socket.create_connection((host, port), timeout=timeout_s)
    sock: socket.socket = raw
    try:
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(raw, server_hostname=host)
        _write(sock, protocol)
        response = _read_response(sock, protocol)
        accept = response.headers.get("Sec-WebSocket-Accept")
        answer = UpgradeAnswer(response.status_code, response.reason_phrase,
                               {name.lower(): value for name, value in response.headers.raw_items()},
                               bytes(response.body or b"")[:4096].decode("utf-8", "replace"),
                               accept_ok=accept == accept_key(request.headers["Sec-WebSocket-Key"]))
        if response.status_code != 101 or protocol.state is not OPEN:
            return answer
        protocol.send_close(1000, "verify_relay")
        _write(sock, protocol)
        return UpgradeAnswer(answer.status, answer.reason, answer.headers, "", True,
                             _read_close(sock, protocol, close_timeout_s))
    finally:
        sock.close()
        raw.close()


def _write(sock: socket.socket, protocol: ClientProtocol) -> None:
    for data in protocol.data_to_send():
        if data:
            sock.sendall(data)


def _read_response(sock: socket.socket, protocol: ClientProtocol) -> Response:
    while True:
        data = sock.recv(65536)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        for event in protocol.events_received():
            if isinstance(event, Response):
                return event
        if protocol.handshake_exc is not None:
            raise http.client.HTTPException(f"not an HTTP answer: {protocol.handshake_exc}")
        if not data:
            raise ConnectionError("the server closed the connection without answering the upgrade")


def _read_close(sock: socket.socket, protocol: ClientProtocol, timeout_s: float) -> tuple[int, str] | None:
    """The server's close frame (code, reason), read as a frame; None if none came in time."""
    sock.settimeout(timeout_s)
    try:
        while True:
            data = sock.recv(65536)
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            for event in protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    close = protocol.close_rcvd
                    return (close.code, close.reason) if close is not None else (1005, "")
            if not data:
                return None
    except OSError:
        return None
