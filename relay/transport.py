"""One open WebSocket: frames from ``relay.ws_frames`` over a (gevent) socket.

Used for both of the relay's sockets once their handshakes are done: the Twilio side
(server: frames arrive masked) and the OpenAI side (client: we mask what we send).

- ``receive()`` is called by exactly one reader greenlet. It answers pings, follows the
  close handshake and returns the next text (``str``) or binary (``bytes``) message, or
  ``None`` once the peer has closed or the socket is gone.
- ``send_texts()`` may be called from several greenlets: one lock keeps frames whole,
  and several messages go out in one ``sendall`` (a Twilio ``media`` + its ``mark``).
- ``close()`` sends a close frame with its code (gevent-websocket 0.10.1 drops the
  code) and ``abort()`` shuts the socket down to wake a blocked reader.
- ``send_started_at`` is non-zero while a send is blocked, so a watchdog can abort a
  peer that stopped reading without arming a timer on every send.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import cast

from gevent.lock import Semaphore

from relay.errors import CLOSE_NORMAL
from relay.ws_frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameDecoder,
    encode_close,
    encode_frame,
)

log = logging.getLogger(__name__)

RECV_BYTES = 65536


class ConnectionClosed(ConnectionError):
    """A send was attempted after the close handshake started or the socket died."""


class _MaskSource:
    """Fresh 4-byte masking keys (RFC 6455 5.3) drawn from os.urandom 4 KiB at a time."""

    __slots__ = ("_pool", "_offset")

    def __init__(self) -> None:
        self._pool = os.urandom(4096)
        self._offset = 0

    def next(self) -> bytes:
        offset = self._offset
        if offset >= 4096:
            self._pool = os.urandom(4096)
            offset = 0
        self._offset = offset + 4
        return self._pool[offset : offset + 4]


class WebSocketConnection:
    """A WebSocket after its handshake; see the module docstring for the threading rules."""

    def __init__(
        self,
        sock: socket.socket,
        recv: Callable[[int], bytes],
        *,
        client: bool,
        max_message_bytes: int,
    ) -> None:
        self.sock = sock
        self._recv = recv
        self._decoder = FrameDecoder(expect_masked=not client, max_message_bytes=max_message_bytes)
        self._masks = _MaskSource() if client else None
        self._pending: deque[tuple[int, object]] = deque()
        self._lock = Semaphore()
        self.close_sent = False
        self.close_code: int | None = None  # the code the peer closed with, once it has
        self.close_reason = ""
        self.send_started_at = 0.0

    # -- receiving (one reader greenlet) ---------------------------------------------

    def receive(self) -> str | bytes | None:
        """Block for the next data message; ``None`` once the connection is over.

        Raises ``relay.errors.FrameError`` (with its close code) on broken framing.
        """
        pending = self._pending
        while True:
            while pending:
                opcode, payload = pending.popleft()
                if opcode == OP_TEXT or opcode == OP_BINARY:
                    return payload  # type: ignore[return-value]
                if opcode == OP_PING:
                    self._send_control(encode_frame(OP_PONG, payload, self._mask()))  # type: ignore[arg-type]
                elif opcode == OP_CLOSE:
                    code, reason = cast(tuple[int, str], payload)
                    self.close_code, self.close_reason = code, reason
                    # Answer with the same code (RFC 6455 5.5.1), unless we started the close.
                    self.close(code if code != 1005 else CLOSE_NORMAL)
                    return None
            try:
                data = self._recv(RECV_BYTES)
            except OSError:
                return None
            if not data:
                return None
            pending.extend(self._decoder.feed(data))

    # -- sending (any greenlet) ------------------------------------------------------

    def _mask(self) -> bytes | None:
        return self._masks.next() if self._masks is not None else None

    def send_text(self, text: str) -> None:
        """Send one text message."""
        self.send_texts((text,))

    def send_texts(self, texts: Iterable[str]) -> None:
        """Send text messages back to back in one write; ConnectionClosed if we cannot."""
        masks = self._masks
        if masks is None:
            data = b"".join([encode_frame(OP_TEXT, t.encode()) for t in texts])
        else:
            data = b"".join([encode_frame(OP_TEXT, t.encode(), masks.next()) for t in texts])
        with self._lock:
            if self.close_sent:
                raise ConnectionClosed("close frame already sent")
            self._sendall(data)

    def _sendall(self, data: bytes) -> None:
        self.send_started_at = time.monotonic()
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from exc
        finally:
            self.send_started_at = 0.0

    def _send_control(self, frame: bytes) -> None:
        with self._lock:
            if not self.close_sent:
                try:
                    self._sendall(frame)
                except ConnectionClosed:
                    log.debug("ws.control_frame_lost")

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Start (or answer) the close handshake; later sends raise ConnectionClosed."""
        with self._lock:
            if self.close_sent:
                return
            self.close_sent = True
            try:
                self._sendall(encode_close(code, reason, self._mask()))
            except ConnectionClosed:
                log.debug("ws.close_frame_lost code=%s", code)

    def abort(self) -> None:
        """Shut the socket down now: a blocked ``receive`` returns ``None``."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            log.debug("ws.abort_on_closed_socket")

    @property
    def closed_by_peer(self) -> bool:
        """True once the peer's close frame has arrived."""
        return self.close_code is not None
