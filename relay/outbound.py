"""The relay's outbound HTTP requests: tool calls, Twilio's REST API, call reports.

One POST on one fresh connection, bounded three ways: a total deadline (DNS, connect,
TLS, request and the whole response), a cap on the response body (a bigger body is an
error, never a truncated success) and no redirects (a 3xx is an error status: a tool
URL must not be able to send a signed request somewhere else).

Every failure is an ``OutboundError`` whose ``kind`` says where it broke::

    invalid_url  the URL is not http(s)://host[:port]/...        (our configuration)
    dns          the host name did not resolve
    connect      the TCP connection was refused or failed
    tls          the TLS handshake or the certificate check failed
    timeout      the deadline passed, at whatever stage
    protocol     the peer closed early or answered something that is not HTTP
    status       the peer answered with a status outside 2xx (``status``, ``body``)
    too_large    a 2xx body longer than the cap

Why the standard library's http.client and not requests (which twilio brings along):
requests has no total deadline (its timeout is per socket operation, so a slow drip
never ends), trusts certifi's bundle rather than the system's and SSL_CERT_FILE, takes
proxies from the environment and follows redirects unless told otherwise. http.client
does exactly one exchange, and with gevent's monkey-patching (the relay's workers are
patched before anything else is imported) its sockets and DNS lookups yield to the other
calls; ``gevent.Timeout`` gives the total deadline.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import gevent

from relay.errors import RelayError

ErrorKind = Literal["invalid_url", "dns", "connect", "tls", "timeout", "protocol", "status", "too_large"]

USER_AGENT = "Liveline-Relay"
# Enough of an error answer to log its code (Twilio's JSON error, for one).
ERROR_BODY_EXCERPT_BYTES = 4096


class OutboundError(RelayError):
    """An outbound request failed; ``kind`` says how (see the module docstring)."""

    def __init__(self, kind: ErrorKind, detail: str, *, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind: ErrorKind = kind
        self.detail = detail
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class Response:
    """A 2xx answer: its status, content type and whole body."""

    status: int
    content_type: str
    body: bytes


class HttpClient:
    """Posts with a deadline and a body cap; TLS checked against ``ssl_context``.

    The default context is Python's (``ssl.create_default_context()``): the system's
    certificate store, or the file SSL_CERT_FILE names. It is made once, when the client
    is: loading the store costs milliseconds, too much to pay per request.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._context = ssl_context if ssl_context is not None else ssl.create_default_context()

    def post(self, url: str, body: bytes, headers: Mapping[str, str], *, timeout_s: float,
             max_body_bytes: int) -> Response:
        """POST ``body`` to ``url``; the 2xx response, or OutboundError."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OutboundError("invalid_url", "not an http(s):// URL")
        try:
            port = parts.port
        except ValueError:
            raise OutboundError("invalid_url", "invalid port") from None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout_s, context=self._context)
        else:
            conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout_s)
        deadline = gevent.Timeout(timeout_s)
        deadline.start()
        try:
            _connect(conn)
            return _exchange(conn, target, body, headers, max_body_bytes)
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            raise OutboundError("timeout", f"no complete answer within {timeout_s:g} s") from None
        finally:
            deadline.close()
            conn.close()


def _connect(conn: http.client.HTTPConnection) -> None:
    where = f"{conn.host}:{conn.port}"
    try:
        conn.connect()
    except socket.gaierror as exc:
        raise OutboundError("dns", f"cannot resolve {conn.host}: {exc.strerror}") from None
    except ssl.SSLCertVerificationError as exc:
        raise OutboundError("tls", f"certificate of {where} rejected: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise OutboundError("tls", f"TLS handshake with {where} failed: {exc.reason or exc}") from None
    except TimeoutError:
        raise OutboundError("timeout", f"connect to {where} timed out") from None
    except OSError as exc:
        raise OutboundError("connect", f"connect to {where} failed: {exc.strerror or exc}") from None


def _exchange(conn: http.client.HTTPConnection, target: str, body: bytes, headers: Mapping[str, str],
              max_body_bytes: int) -> Response:
    try:
        conn.request("POST", target, body=body,
                     headers={"User-Agent": USER_AGENT, "Connection": "close", **headers})
        # With "Connection: close" the response owns the socket: closing the connection
        # alone would leave it open until the response is collected.
        with conn.getresponse() as response:
            return _read(response, max_body_bytes)
    except TimeoutError:
        raise OutboundError("timeout", "no answer in time") from None
    except (http.client.HTTPException, OSError) as exc:
        raise OutboundError("protocol", f"no valid HTTP answer ({type(exc).__name__})") from None


def _read(response: http.client.HTTPResponse, max_body_bytes: int) -> Response:
    status = response.status
    if not 200 <= status < 300:
        excerpt = response.read(ERROR_BODY_EXCERPT_BYTES)
        raise OutboundError("status", f"answered HTTP {status}", status=status, body=excerpt)
    if response.length is not None and response.length > max_body_bytes:
        raise OutboundError("too_large", f"body of {response.length} bytes is over {max_body_bytes}",
                            status=status)
    data = response.read(max_body_bytes + 1)
    if len(data) > max_body_bytes:
        raise OutboundError("too_large", f"body is over {max_body_bytes} bytes", status=status)
    if response.length:  # read(amt) returns what came before the peer closed: not the whole body
        raise http.client.IncompleteRead(data, response.length)
    return Response(status, response.getheader("Content-Type") or "", data)
