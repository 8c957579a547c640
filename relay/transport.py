"""One open WebSocket, driven by the event loop: frames from ``relay.ws_frames`` in and out.

Used for both of the relay's sockets once their handshakes are done: the Twilio side
(server: frames arrive masked) and the OpenAI side (client: we mask what we send).

Reading is callback-driven. ``start_reading(on_messages, on_end)`` registers the socket
with gevent's event loop; when it is readable, the loop calls us directly (no greenlet
switch, no waiter object per wake-up), we read what is there, decode it, answer pings,
follow the close handshake, and hand every data message of that read to
``on_messages`` (``str`` for text, ``bytes`` for binary). ``on_end(error)`` runs once,
when the peer has closed, the socket died (``error`` None) or the framing broke
(``error`` is the FrameError, with its close code). Callbacks run in the hub: they must
never block, and the relay's never do. ``receive()`` is a blocking form for code off
the hot path (the diagnostic, the stand-in model).

Writing never blocks either: ``send_texts()`` writes what the kernel takes now and queues
the rest, flushed when the socket becomes writable, in order. ``blocked_since`` says how
long data has been waiting, so a watchdog can drop a peer that stopped reading, and more
than ``max_queued_bytes`` waiting ends the connection at once (``overflowed``). Because a send never yields,
no lock is needed for frames from several greenlets to stay whole.

Why not gevent's socket methods: per frame they cost more than the frame itself (each
``sendall`` also calls ``getsockopt(SO_SNDBUF)``, each ``recv`` first tries a read that
fails with EAGAIN, each wait builds a waiter and switches greenlets twice). Plain TCP (the
Twilio side behind the load balancer, a ws:// upstream) uses the C socket object itself;
TLS (a wss:// upstream) uses gevent's SSL socket in non-blocking mode.
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
from typing import cast

import gevent
from gevent.event import Event

from relay.errors import CLOSE_NORMAL, FrameError
from relay.ws_frames import (
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
READS_PER_TURN = 4
# A peer this far behind has stopped reading: end the connection instead of buffering
# (the relay passes relay.limits.Limits.max_queued_bytes).
MAX_QUEUED_BYTES = 4 * 1024 * 1024
_READ, _WRITE = 1, 2  # event-loop masks

Messages = list[str | bytes]


class ConnectionClosed(ConnectionError):
    """A send was attempted after the close handshake started or the socket died."""


class PlainIO:
    """A plain TCP connection through the C socket object.

    ``own=False`` duplicates the descriptor (the Twilio side: gevent's pywsgi keeps its
    own and closes it after the call); ``own=True`` takes the socket over.
    """

    def __init__(self, sock: socket.socket, *, own: bool) -> None:
        fd = sock.detach() if own else os.dup(sock.fileno())
        self._sock = _socket.socket(fileno=fd)
        self._sock.setblocking(False)
        self.recv = self._sock.recv
        self.send = self._sock.send

    def fileno(self) -> int:
        """The descriptor."""
        return self._sock.fileno()

    def shutdown(self) -> None:
        """Shut down both directions."""
        self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the descriptor."""
        self._sock.close()


class TLSIO:
    """A TLS connection (gevent's SSL socket) used without blocking."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        sock.settimeout(0.0)

    def fileno(self) -> int:
        """The descriptor."""
        return self._sock.fileno()

    def recv(self, size: int) -> bytes:
        """Everything decrypted so far (TLS may hold records the socket no longer shows)."""
        chunks: list[bytes] = []
        while True:
            try:
                data = self._sock.recv(size)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            if not data:
                if chunks:
                    break
                return b""
            chunks.append(data)
        if not chunks:
            raise BlockingIOError("nothing decrypted yet")
        return b"".join(chunks)

    def send(self, data: bytes | memoryview) -> int:
        """What TLS accepted now."""
        try:
            return self._sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            raise BlockingIOError("TLS buffer full") from None

    def shutdown(self) -> None:
        """Shut down the TCP connection under TLS."""
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


# Non-blocking byte I/O on one connection. ``recv``/``send`` follow the socket module:
# ``recv`` returns b"" at end of stream and raises BlockingIOError when nothing is there
# yet; ``send`` returns the bytes taken and raises BlockingIOError when the kernel takes
# none. For plain TCP they *are* the C socket's methods, so the per-frame path makes no
# Python call to reach the kernel.
NonBlockingIO = PlainIO | TLSIO


class WebSocketConnection:
    """A WebSocket after its handshake; see the module docstring."""

    def __init__(
        self,
        io: NonBlockingIO,
        *,
        client: bool,
        max_message_bytes: int,
        initial: bytes = b"",
        max_queued_bytes: int = MAX_QUEUED_BYTES,
    ) -> None:
        self.io = io
        self.max_queued_bytes = max_queued_bytes
        self._decoder = FrameDecoder(expect_masked=not client, max_message_bytes=max_message_bytes)
        self._masks = _MaskSource() if client else None
        self._initial = initial  # bytes read past the handshake, decoded before the socket's
        loop = gevent.get_hub().loop
        self._loop = loop
        self._read_watcher = loop.io(io.fileno(), _READ)
        self._write_watcher = loop.io(io.fileno(), _WRITE)
        self._queue: deque[bytes | memoryview] = deque()
        self._queued = 0
        self.blocked_since = 0.0  # when data started waiting for the peer to read; 0 if none
        self._on_messages: Callable[[Messages], None] | None = None
        self._on_end: Callable[[FrameError | None], None] | None = None
        self.ended = False
        self.broken = False
        self.overflowed = False  # more than max_queued_bytes waited for the peer: cut
        self._released = False
        self.close_sent = False
        self.close_code: int | None = None  # the code the peer closed with, once it has
        self.close_reason = ""
        # for receive()
        self._inbox: deque[str | bytes] = deque()
        self._inbox_event: Event | None = None
        self._receive_error: FrameError | None = None

    # -- reading -------------------------------------------------------------------------

    def start_reading(
        self, on_messages: Callable[[Messages], None], on_end: Callable[[FrameError | None], None]
    ) -> None:
        """Deliver every message to ``on_messages`` (in the hub) until ``on_end`` runs once."""
        self._on_messages = on_messages
        self._on_end = on_end
        self._read_watcher.start(self._on_readable)
        if self._initial:
            self._loop.run_callback(self._on_readable)

    def _on_readable(self) -> None:
        if self.ended:
            return
        recv = self.io.recv
        decoder = self._decoder
        feed = decoder.feed
        try:
            # At most READS_PER_TURN reads, then back to the loop: a peer that keeps its
            # socket full (a flood) must not keep the other calls waiting. The watcher is
            # level-triggered, so what is left is read on the loop's next turn.
            for _ in range(READS_PER_TURN):
                if self._initial:
                    data = self._initial
                    self._initial = b""
                else:
                    try:
                        data = recv(RECV_BYTES)
                    except (BlockingIOError, InterruptedError):
                        return  # nothing more now: the loop calls again when there is
                if not data:
                    self._finish(None)
                    return
                messages = feed(data)
                if messages:
                    self._on_messages(messages)  # type: ignore[misc]
                if decoder.controls and self._controls(decoder.controls):
                    return
                # A short read drained the socket: wait for the next readiness, instead of
                # a read that would only fail with EAGAIN.
                if self.ended or len(data) < RECV_BYTES:
                    return
        except FrameError as exc:
            self._finish(exc)
        except OSError:
            self.broken = True
            self._finish(None)

    def _controls(self, controls: list[tuple[int, object]]) -> bool:
        """Answer pings, follow a close; True once the connection is over."""
        while controls:
            opcode, payload = controls.pop(0)
            if opcode == OP_PING:
                if not self.close_sent:
                    self._write(encode_frame(OP_PONG, payload, self._mask()))  # type: ignore[arg-type]
            elif opcode == OP_CLOSE:
                code, reason = cast(tuple[int, str], payload)
                self.close_code, self.close_reason = code, reason
                # Answer with the same code (RFC 6455 5.5.1), unless we started the close.
                self.close(code if code != 1005 else CLOSE_NORMAL)
                controls.clear()
                self._finish(None)
                return True
        return False  # pongs need nothing

    def _finish(self, error: FrameError | None) -> None:
        if self.ended:
            return
        self.ended = True
        self._read_watcher.stop()
        if self._on_end is not None:
            self._on_end(error)

    def receive(self) -> str | bytes | None:
        """Block this greenlet for the next data message; ``None`` at the end.

        Raises FrameError on broken framing. Off the hot path: one Event per connection.
        """
        if self._inbox_event is None:
            self._inbox_event = Event()

            def on_messages(messages: Messages) -> None:
                self._inbox.extend(messages)
                self._inbox_event.set()  # type: ignore[union-attr]

            def on_end(error: FrameError | None) -> None:
                self._receive_error = error
                self._inbox_event.set()  # type: ignore[union-attr]

            self.start_reading(on_messages, on_end)
        while not self._inbox:
            if self.ended:
                if self._receive_error is not None:
                    error, self._receive_error = self._receive_error, None
                    raise error
                return None
            self._inbox_event.clear()
            self._inbox_event.wait()
        return self._inbox.popleft()

    # -- writing -------------------------------------------------------------------------

    def _mask(self) -> bytes | None:
        return self._masks.next() if self._masks is not None else None

    def send_texts(self, texts: Iterable[str]) -> None:
        """Send text messages back to back in one write; ConnectionClosed if we cannot."""
        if self.close_sent:
            raise ConnectionClosed("close frame already sent")
        masks = self._masks
        frames = []
        for text in texts:
            frames.append(encode_frame(OP_TEXT, text.encode(), masks.next() if masks is not None else None))
        self._write(b"".join(frames))

    def send_text(self, text: str) -> None:
        """Send one text message."""
        self.send_texts((text,))

    def _write(self, data: bytes) -> None:
        if self.broken:
            raise ConnectionClosed("socket failed")
        if self._queue:  # earlier data still waiting: keep the order
            self._enqueue(data)
            return
        try:
            sent = self.io.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.broken = True
            raise ConnectionClosed(str(exc)) from exc
        if sent < len(data):
            self.blocked_since = time.monotonic()
            self._enqueue(memoryview(data)[sent:])
            self._write_watcher.start(self._on_writable)

    def _enqueue(self, data: bytes | memoryview) -> None:
        self._queue.append(data)
        self._queued += len(data)
        if self._queued > self.max_queued_bytes:
            self.broken = True
            self.overflowed = True
            self.abort()
            raise ConnectionClosed(f"peer stopped reading ({self._queued} bytes waiting)")

    def _on_writable(self) -> None:
        queue = self._queue
        try:
            while queue:
                data = queue[0]
                try:
                    sent = self.io.send(data)
                except (BlockingIOError, InterruptedError):
                    return
                self._queued -= sent
                if sent < len(data):
                    queue[0] = memoryview(data)[sent:]
                    return
                queue.popleft()
        except OSError:
            self.broken = True
            queue.clear()
            self._queued = 0
        self.blocked_since = 0.0
        self._write_watcher.stop()

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Start (or answer) the close handshake; later sends raise ConnectionClosed."""
        if self.close_sent:
            return
        self.close_sent = True
        try:
            self._write(encode_close(code, reason, self._mask()))
        except ConnectionClosed:
            log.debug("ws.close_frame_lost code=%s", code)

    def abort(self) -> None:
        """Shut the socket down now: reading ends (``on_end`` runs) on the next loop turn."""
        try:
            self.io.shutdown()
        except OSError:
            log.debug("ws.abort_on_closed_socket")

    def release(self) -> None:
        """Stop watching and close the descriptor for good (idempotent)."""
        if self._released:
            return
        self._released = True
        self.ended = True
        self._read_watcher.close()
        self._write_watcher.close()
        self.abort()
        self.io.close()


def server_connection(sock: socket.socket, initial: bytes, *, max_message_bytes: int,
                      max_queued_bytes: int = MAX_QUEUED_BYTES) -> WebSocketConnection:
    """The server side of an upgraded socket (the Twilio side).

    Behind the load balancer it is plain TCP; a relay serving TLS itself (gunicorn with a
    certificate) hands us gevent's SSL socket, which we then use as it is.
    """
    io = TLSIO(sock) if isinstance(sock, ssl.SSLSocket) else PlainIO(sock, own=False)
    return WebSocketConnection(io, client=False, max_message_bytes=max_message_bytes, initial=initial,
                               max_queued_bytes=max_queued_bytes)


def client_connection(sock: socket.socket, *, max_message_bytes: int,
                      max_queued_bytes: int = MAX_QUEUED_BYTES) -> WebSocketConnection:
    """The client side of a socket we opened and upgraded (the OpenAI side)."""
    io = TLSIO(sock) if isinstance(sock, ssl.SSLSocket) else PlainIO(sock, own=True)
    return WebSocketConnection(io, client=True, max_message_bytes=max_message_bytes,
                               max_queued_bytes=max_queued_bytes)
