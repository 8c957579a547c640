"""The server's side of the WebSocket opening handshake (RFC 6455 section 4.2), checked up front.

``check(environ)`` reads an upgrade request and returns either the ``Sec-WebSocket-Accept``
value for the ``101`` or a ``Refusal`` (a 4xx status, a reason for the log line, a body).
The relay runs it before admission, so a malformed handshake never takes a call slot: a
replayed ``X-Twilio-Signature`` (it covers only the URL, so it is the same for every call)
with a broken key costs nothing and gets a plain 4xx.

Only what Twilio sends is accepted: ``GET`` over HTTP/1.1, ``Connection: Upgrade``,
``Sec-WebSocket-Version: 13`` (the only version RFC 6455 defines; drafts 7 and 8 are not
spoken here) and a ``Sec-WebSocket-Key`` that is strict base64 of exactly 16 bytes.
https://www.rfc-editor.org/rfc/rfc6455#section-4.2.1

Pure: the standard library only (no sockets, no gevent).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

# RFC 6455 section 1.3: appended to the client's key before hashing.
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_VERSION = "13"
KEY_BYTES = 16  # the key is base64 of a 16-byte nonce (section 4.1)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A plain HTTP answer instead of ``101``: its status, a log reason and a one-line body."""

    status: int
    reason: str
    body: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def status_line(self) -> str:
        """``"400 Bad Request"``."""
        return f"{self.status} {HTTPStatus(self.status).phrase}"


def tokens(value: str) -> set[str]:
    """The comma-separated tokens of a header, lower-cased (``Connection: keep-alive, Upgrade``)."""
    return {part.strip().lower() for part in value.split(",") if part.strip()}


def wants_websocket(environ: Mapping[str, Any]) -> bool:
    """True when the request asks to become a WebSocket, well-formed or not."""
    return "websocket" in tokens(str(environ.get("HTTP_UPGRADE", "")))


def accept_value(key: str) -> str:
    """``Sec-WebSocket-Accept`` for ``key``: base64(SHA-1(key + GUID))."""
    digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()  # RFC 6455 fixes SHA-1
    return base64.b64encode(digest).decode("ascii")


def check(environ: Mapping[str, Any]) -> Refusal | str:
    """The ``Sec-WebSocket-Accept`` value for a valid upgrade request, or why it is refused."""
    if environ.get("REQUEST_METHOD") != "GET":
        return Refusal(405, "not_get", "a WebSocket upgrade must be a GET", (("Allow", "GET"),))
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        return Refusal(400, "http_version", "a WebSocket upgrade needs HTTP/1.1")
    if "upgrade" not in tokens(str(environ.get("HTTP_CONNECTION", ""))):
        return Refusal(400, "no_connection_upgrade", "a WebSocket upgrade needs Connection: Upgrade")
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip() != WS_VERSION:
        # Section 4.4: say which version this server speaks.
        return Refusal(426, "websocket_version", f"Sec-WebSocket-Version must be {WS_VERSION}",
                       (("Sec-WebSocket-Version", WS_VERSION),))
    key = str(environ.get("HTTP_SEC_WEBSOCKET_KEY", "")).strip()
    if not key:
        return Refusal(400, "no_key", "Sec-WebSocket-Key is missing")
    try:
        nonce = base64.b64decode(key.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return Refusal(400, "bad_key", "Sec-WebSocket-Key is not base64")
    if len(nonce) != KEY_BYTES:
        return Refusal(400, "bad_key", f"Sec-WebSocket-Key must encode {KEY_BYTES} bytes")
    return accept_value(key)
