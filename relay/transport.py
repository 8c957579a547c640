"""One open WebSocket: frames from ``relay.ws_frames`` over a socket, cooperatively (gevent).

Used for both of the relay's sockets once their handshakes are done: the Twilio side
(server: frames arrive masked) and the OpenAI side (client: we mask what we send).

- ``receive_batch()`` is called by exactly one reader greenlet: it answers pings,
  follows the close handshake and returns every data message that one read brought
  (``str`` for text, ``bytes`` for binary), or ``None`` once the peer has closed or the
  socket is gone. ``receive()`` is the one-message form for code off the hot path.
- ``send_texts()`` may be called from several greenlets: one lock keeps frames whole,
  and several messages go out in one write (a Twilio ``media`` + its ``mark``).
- ``close()`` sends a close frame with its code (gevent-websocket 0.10.1 drops the
  code) and ``abort()`` shuts the socket down to wake a blocked reader.
- ``send_started_at`` is non-zero while a send is blocked, so a watchdog can abort a
  peer that stopped reading without arming a timer on every send.

The socket underneath is a PlainSocketIO for plain TCP (the Twilio side behind the load
balancer, and a ws:// upstream): the C socket object itself, non-blocking, waiting on
gevent's hub only when it has to. gevent's socket wrapper costs more per frame than the
frame itself: each ``sendall`` also calls ``getsockopt(SO_SNDBUF)`` (a second syscall)
and each ``recv`` first tries a read that fails with EAGAIN. TLS sockets (a wss://
upstream) go through GeventSocketIO, gevent's SSL socket.
"""

from __future__ import annotations

import _socket
import logging
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol, cast

import gevent
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
_READ, _WRITE = 1, 2  # libev/libuv event masks


class ConnectionClosed(ConnectionError):
    """A send was attempted after the close handshake started or the socket died."""


class SocketIO(Protocol):
    """Blocking-for-this-greenlet byte I/O on one connection."""

    def recv(self, size: int) -> bytes:
        """Next bytes (b"" at end of stream); raises OSError if the socket failed."""
        ...

    def send_all(self, data: bytes) -> None:
        """Write all of ``data``; raises OSError if the socket failed."""
        ...

    def shutdown(self) -> None:
        """Shut both directions down: a blocked ``recv`` returns b""."""
        ...

    def close(self) -> None:
        """Release the file descriptor."""
        ...


class PlainSocketIO:
    """A plain TCP connection driven directly: C socket calls, gevent watchers to wait.

    ``own=False`` duplicates the descriptor (the Twilio side: gevent's pywsgi keeps and
    later closes its own); ``own=True`` takes the socket over (a connection we opened).
    """

    def __init__(self, sock: socket.socket, *, own: bool) -> None:
        fd = sock.detach() if own else os.dup(sock.fileno())
        self._sock = _socket.socket(fileno=fd)  # the C socket: no gevent wrapper per call
        self._sock.setblocking(False)
        self._hub = gevent.get_hub()
        self._read_watcher = self._hub.loop.io(fd, _READ)
        self._write_watcher = self._hub.loop.io(fd, _WRITE)
        self._maybe_more = True  # the last read filled its buffer: more may be waiting

    def recv(self, size: int) -> bytes:
        """Wait for data, then read it: one syscall per wake-up instead of two."""
        if not self._maybe_more:
            self._hub.wait(self._read_watcher)
        while True:
            try:
                data = self._sock.recv(size)
            except (BlockingIOError, InterruptedError):
                self._hub.wait(self._read_watcher)
                continue
            self._maybe_more = len(data) == size
            return data

    def send_all(self, data: bytes) -> None:
        """Write ``data``; waits for the socket to drain only if the kernel buffer is full."""
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        total = len(data)
        if sent == total:
            return
        view = memoryview(data)
        while sent < total:
            self._hub.wait(self._write_watcher)
            try:
                sent += self._sock.send(view[sent:])
            except (BlockingIOError, InterruptedError):
                continue

    def shutdown(self) -> None:
        """Shut both directions down (wakes a waiting reader)."""
        self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop watching and close our descriptor (call once the reader has finished)."""
        if self._sock.fileno() != -1:
            self._read_watcher.close()
            self._write_watcher.close()
            self._sock.close()


class GeventSocketIO:
    """Any gevent socket, TLS included, through gevent's own methods."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recv(self, size: int) -> bytes:
        """Next bytes from the socket."""
        return self._sock.recv(size)

    def send_all(self, data: bytes) -> None:
        """All of ``data``."""
        self._sock.sendall(data)

    def shutdown(self) -> None:
        """Shut both directions down."""
        self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


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
        io: SocketIO,
        *,
        client: bool,
        max_message_bytes: int,
        initial: bytes = b"",
    ) -> None:
        self.io = io
        self._decoder = FrameDecoder(expect_masked=not client, max_message_bytes=max_message_bytes)
        self._masks = _MaskSource() if client else None
        self._initial = initial  # bytes read past the handshake, fed before the socket's
        self._pending: deque[str | bytes] = deque()
        self._eof = False
        self._lock = Semaphore()
        self.close_sent = False
        self.close_code: int | None = None  # the code the peer closed with, once it has
        self.close_reason = ""
        self.send_started_at = 0.0

    # -- receiving (one reader greenlet) ---------------------------------------------

    def receive_batch(self) -> list[str | bytes] | None:
        """Block for data; every data message one read completed, or ``None`` at the end.

        Raises ``relay.errors.FrameError`` (with its close code) on broken framing.
        """
        while not self._eof:
            if self._initial:
                data, self._initial = self._initial, b""
            else:
                try:
                    data = self.io.recv(RECV_BYTES)
                except OSError:
                    data = b""
            if not data:
                self._eof = True
                break
            messages: list[str | bytes] = []
            for opcode, payload in self._decoder.feed(data):
                if opcode == OP_TEXT or opcode == OP_BINARY:
                    messages.append(payload)  # type: ignore[arg-type]
                elif opcode == OP_PING:
                    self._send_control(encode_frame(OP_PONG, payload, self._mask()))  # type: ignore[arg-type]
                elif opcode == OP_CLOSE:
                    code, reason = cast(tuple[int, str], payload)
                    self.close_code, self.close_reason = code, reason
                    # Answer with the same code (RFC 6455 5.5.1), unless we started the close.
                    self.close(code if code != 1005 else CLOSE_NORMAL)
                    self._eof = True
                    break
            if messages:
                return messages
        return None

    def receive(self) -> str | bytes | None:
        """The next data message, or ``None`` at the end (off the hot path)."""
        while not self._pending:
            batch = self.receive_batch()
            if batch is None:
                return None
            self._pending.extend(batch)
        return self._pending.popleft()

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
            self.io.send_all(data)
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
            self.io.shutdown()
        except OSError:
            log.debug("ws.abort_on_closed_socket")

    def release(self) -> None:
        """Close the descriptor for good (after the reader has finished)."""
        self.abort()
        self.io.close()

    @property
    def closed_by_peer(self) -> bool:
        """True once the peer's close frame has arrived."""
        return self.close_code is not None


def server_connection(
    sock: socket.socket, read_buffered: Callable[[], bytes], *, max_message_bytes: int
) -> WebSocketConnection:
    """The server side of an upgraded plain TCP socket (the Twilio side)."""
    return WebSocketConnection(PlainSocketIO(sock, own=False), client=False,
                               max_message_bytes=max_message_bytes, initial=read_buffered())


def client_connection(sock: socket.socket, *, max_message_bytes: int) -> WebSocketConnection:
    """The client side of a socket we opened and upgraded (the OpenAI side)."""
    io: SocketIO = GeventSocketIO(sock) if isinstance(sock, ssl.SSLSocket) else PlainSocketIO(sock, own=True)
    return WebSocketConnection(io, client=True, max_message_bytes=max_message_bytes)
