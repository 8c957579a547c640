"""A WebSocket server for the stand-ins: websockets' Sans-I/O protocol on gevent sockets.

All of the WebSocket protocol here is the ``websockets`` library's (``ServerProtocol``): the
opening handshake and its checks, framing and masking, UTF-8 in control frames, ping/pong,
fragmented messages, the closing handshake, permessage-deflate when a client offers it. This
module only moves bytes between a socket and that protocol object, one greenlet per
connection, and joins a fragmented message's frames into one message (decoding text
strictly: invalid UTF-8 fails the connection with 1007, as websockets' own servers do).
Nothing of the relay's WebSocket code is used: a framing or close bug in the relay cannot be
mirrored by the fake that tests it.

Why the Sans-I/O layer on gevent, and not websockets' asyncio or threading servers: the
stand-ins run inside gevent programs (the monkey-patched test process, where the relay
itself runs in-process in many tests, and the stand-in's own process under ``make run`` and
``make bench``). A greenlet per connection on gevent's sockets needs no second event loop in
a real thread and no thread-to-greenlet hand-offs, behaves the same in every one of those
programs, and costs little enough for the bench's load mode (hundreds of sessions at 50
frames a second each way): per message, websockets' parser and serialiser take about a
microsecond each; the rest is the socket's.

Plain HTTP requests on the same port (``GET /stats``) are answered by the request handler
with a ``websockets.http11.Response``, as websockets' own ``process_request`` hook does.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.server import StreamServer
from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.protocol import CLOSED, OPEN
from websockets.server import ServerProtocol

log = logging.getLogger("standin.websocket")

RECV_BYTES = 65536


class ConnectionClosed(ConnectionError):
    """A send on a connection whose closing handshake has started or whose socket failed."""


class Connection:
    """One accepted connection: its handshake request, then WebSocket messages both ways.

    Sends may come from several greenlets: each is serialised by websockets and written
    whole under one lock, so frames never interleave.
    """

    def __init__(self, sock: socket.socket, address: Any, *, max_message_bytes: int,
                 close_timeout_s: float) -> None:
        self.sock = sock
        self.address = address
        self.protocol = ServerProtocol(extensions=[ServerPerMessageDeflateFactory()],
                                       max_size=max_message_bytes, logger=log)
        self.request: Request | None = None
        self.close_code: int | None = None  # what the peer closed with (1005: no code)
        self.close_reason = ""
        self.pings = 0  # pings received (each answered with a pong by websockets)
        self.pongs = 0  # pongs received
        self.ended = Event()  # the socket is gone
        self._close_timeout_s = close_timeout_s
        self._lock = Semaphore()
        self._broken = False
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        self._abort_timer: gevent.Greenlet | None = None

    # -- the opening handshake ---------------------------------------------------------------

    def read_request(self, timeout_s: float) -> Request | None:
        """The handshake (or plain HTTP) request; None if the client left or sent garbage."""
        self.sock.settimeout(timeout_s)
        try:
            while True:
                data = self.sock.recv(RECV_BYTES)
                if not data:
                    return None
                self.protocol.receive_data(data)
                events = self.protocol.events_received()
                if events:
                    request = events[0]
                    assert isinstance(request, Request)
                    self.request = request
                    return request
                if self.protocol.handshake_exc is not None:
                    self._flush()  # websockets' own 400 for a malformed request
                    return None
        except (OSError, ValueError):  # ValueError: a TLS socket shut down under us
            return None
        finally:
            self.sock.settimeout(None)

    def respond(self, response: Response | None) -> bool:
        """Send ``response`` (None: websockets accepts the upgrade); True once the socket is a WebSocket."""
        assert self.request is not None
        if response is None:
            response = self.protocol.accept(self.request)
        self.protocol.send_response(response)
        with self._lock:
            self._flush()
        return self.protocol.state is OPEN

    def hold_until_peer_leaves(self) -> None:
        """Answer nothing and wait for the client to give up (a hung upstream)."""
        while True:
            try:
                if not self.sock.recv(RECV_BYTES):
                    return
            except (OSError, ValueError):  # ValueError: a TLS socket shut down under us
                return

    # -- receiving ---------------------------------------------------------------------------

    def batches(self) -> Iterator[list[str | bytes]]:
        """Every data message, grouped by the read they arrived in, until the connection ends."""
        protocol = self.protocol
        while protocol.state is not CLOSED:
            try:
                data = self.sock.recv(RECV_BYTES)
            except (OSError, ValueError):  # ValueError: a TLS socket shut down under us
                data = b""
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            messages = self._assemble(protocol.events_received())
            with self._lock:
                self._flush()  # pongs, the answer to a close, the end of the stream
            if messages:
                yield messages
            if not data:
                break
        close = protocol.close_rcvd
        if close is not None:
            self.close_code, self.close_reason = close.code, close.reason

    def messages(self) -> Iterator[str | bytes]:
        """Every data message (``str`` for text, ``bytes`` for binary) until the connection ends."""
        for batch in self.batches():
            yield from batch

    def _assemble(self, frames: Iterable[Any]) -> list[str | bytes]:
        out: list[str | bytes] = []
        for frame in frames:
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:
                    out.append(self._complete(opcode, frame.data))
                else:
                    self._fragment_opcode, self._fragments = opcode, [frame.data]
            elif opcode is Opcode.CONT:
                self._fragments.append(frame.data)
                if frame.fin and self._fragment_opcode is not None:
                    out.append(self._complete(self._fragment_opcode, b"".join(self._fragments)))
                    self._fragment_opcode, self._fragments = None, []
            elif opcode is Opcode.PING:
                self.pings += 1
            elif opcode is Opcode.PONG:
                self.pongs += 1
        return [message for message in out if message is not _INVALID]

    def _complete(self, opcode: Opcode, data: bytes) -> str | bytes:
        if opcode is Opcode.BINARY:
            return bytes(data)
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            if self.protocol.state is OPEN:
                self.protocol.fail(1007, f"invalid UTF-8 at position {exc.start}")
            return _INVALID

    # -- sending -----------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        """One text message; ConnectionClosed if the connection is closing or gone."""
        self.send_texts((text,))

    def send_texts(self, texts: Iterable[str]) -> None:
        """Text messages back to back, in one write."""
        with self._lock:
            self._check_open()
            for text in texts:
                self.protocol.send_text(text.encode())
            self._flush()

    def send_fragmented(self, parts: Sequence[str]) -> None:
        """One text message in ``len(parts)`` frames: a text frame, then continuation frames."""
        with self._lock:
            self._check_open()
            last = len(parts) - 1
            for index, part in enumerate(parts):
                if index == 0:
                    self.protocol.send_text(part.encode(), fin=index == last)
                else:
                    self.protocol.send_continuation(part.encode(), fin=index == last)
            self._flush()

    def send_ping(self, data: bytes = b"") -> None:
        """A ping; websockets counts the pong in ``pongs`` when it comes back."""
        with self._lock:
            self._check_open()
            self.protocol.send_ping(data)
            self._flush()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the socket is dropped if the peer does not answer in time."""
        with self._lock:
            if self.protocol.state is not OPEN or self._broken:
                return
            self.protocol.send_close(code, reason)
            try:
                self._flush()
            except ConnectionClosed:
                return
        if self._abort_timer is None:
            self._abort_timer = gevent.spawn_later(self._close_timeout_s, self.abort)

    def abort(self) -> None:
        """Drop the TCP connection now; the reading side ends at once."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return  # already gone

    def _check_open(self) -> None:
        if self._broken or self.protocol.state is not OPEN:
            raise ConnectionClosed("the connection is closing or closed")

    def _flush(self) -> None:
        """Write what websockets has to send (the caller holds the lock, or is the only writer)."""
        for data in self.protocol.data_to_send():
            try:
                if data:
                    self.sock.sendall(data)
                elif isinstance(self.sock, ssl.SSLSocket):
                    self.abort()  # TLS cannot half-close here: the server ends the TCP connection
                else:
                    self.sock.shutdown(socket.SHUT_WR)  # websockets' end of stream
            except (OSError, ValueError) as exc:
                self._broken = True
                raise ConnectionClosed(str(exc)) from None

    def release(self) -> None:
        """Close the socket for good (idempotent)."""
        if self._abort_timer is not None:
            self._abort_timer.kill(block=False)
        self.sock.close()
        self.ended.set()


_INVALID: Any = object()  # a text message that was not UTF-8: dropped, the connection failed

RequestHandler = Callable[[Connection], Response | None]
ConnectionHandler = Callable[[Connection], None]


class WebSocketServer:
    """Listens on ``host:port`` (0: any free port), plain or TLS, and serves each connection.

    ``on_request(conn)`` sees every request first: it returns a Response to answer it
    (a refusal, or a plain HTTP answer), or None to let websockets accept the upgrade; it
    may also hold the connection (``conn.hold_until_peer_leaves()``). ``on_open(conn)``
    then runs the WebSocket until it returns; the socket is closed after.
    """

    def __init__(self, host: str, port: int, *, on_request: RequestHandler, on_open: ConnectionHandler,
                 ssl_context: ssl.SSLContext | None = None, max_message_bytes: int = 16 * 1024 * 1024,
                 handshake_timeout_s: float = 10.0, close_timeout_s: float = 2.0,
                 recv_buffer_bytes: int | None = None) -> None:
        self.on_request = on_request
        self.on_open = on_open
        self.ssl_context = ssl_context
        self.max_message_bytes = max_message_bytes
        self.handshake_timeout_s = handshake_timeout_s
        self.close_timeout_s = close_timeout_s
        self.connections: set[Connection] = set()
        self.tls_failures: list[str] = []  # TLS handshakes that failed (the client refused us, often)
        listener: Any = (host, port)
        if recv_buffer_bytes is not None:
            # A small receive window, set before listen() so accepted sockets inherit it: a
            # stand-in that stops reading then pushes back on its client within a few KB.
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer_bytes)
            listener.bind((host, port))
            listener.listen(128)
        self._server = StreamServer(listener, self._handle)
        self.port = 0

    def start(self) -> WebSocketServer:
        """Bind and listen; ``port`` is the one bound."""
        self._server.start()
        self.port = int(self._server.server_port)
        return self

    def stop(self) -> None:
        """Drop every connection and stop listening."""
        for conn in list(self.connections):
            conn.abort()
        self._server.stop(timeout=1)

    def _handle(self, sock: socket.socket, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            tls = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            try:
                tls.settimeout(self.handshake_timeout_s)
                tls.do_handshake()
                tls.settimeout(None)
            except (OSError, ValueError) as exc:
                self.tls_failures.append(str(exc))
                tls.close()
                return
            sock = tls
        conn = Connection(sock, address, max_message_bytes=self.max_message_bytes,
                          close_timeout_s=self.close_timeout_s)
        self.connections.add(conn)
        try:
            if conn.read_request(self.handshake_timeout_s) is None:
                return
            if conn.respond(self.on_request(conn)):
                self.on_open(conn)
        except ConnectionClosed:
            return  # the client went away mid-answer
        finally:
            self.connections.discard(conn)
            conn.release()


def json_response(status: int, reason: str, body: bytes) -> Response:
    """A plain HTTP answer with a JSON body (what the Realtime API's refusals look like)."""
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                       ("Connection", "close")])
    return Response(status, reason, headers, body)
