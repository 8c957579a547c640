"""A WebSocket client for the stand-ins: websockets' Sans-I/O protocol on a plain socket.

Like websocket_server.py, all of the WebSocket protocol is the ``websockets`` library's
(``ClientProtocol``: the handshake and its checks, masking, ping/pong, fragmentation, the
closing handshake, permessage-deflate when offered); this module moves bytes, with one
reader thread per connection that only ever blocks in ``recv`` on its own socket.

Why not websockets' threading client (``websockets.sync``): it waits in a ``selectors``
poller fed by a socket pair. In the monkey-patched test process that poller is gevent's,
and a socket closed from another greenlet while it is registered (a close that timed out,
a caller letting go) makes libev abort the whole process. Here, letting go is a
``shutdown`` of the socket, which wakes the blocked ``recv`` in real threads (``make
call``, the verify scripts) and in greenlets alike; the reader then closes the socket
itself. Nothing of the relay's WebSocket code is used.
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
from collections.abc import Mapping, Sequence

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Close, Opcode
from websockets.http11 import Response
from websockets.protocol import OPEN
from websockets.uri import parse_uri

RECV_BYTES = 65536


class HandshakeRefused(Exception):
    """The server answered the upgrade with another status than 101."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"the server refused the WebSocket upgrade: HTTP {status}")
        self.status = status
        self.body = body


class HandshakeFailed(Exception):
    """The server's answer was not a valid WebSocket handshake (or there was none)."""


class ConnectionClosed(Exception):
    """The connection is over; ``rcvd`` is the peer's close frame (None: it went without one)."""

    def __init__(self, rcvd: Close | None) -> None:
        super().__init__(f"connection closed ({rcvd.code if rcvd else 'no close frame'})")
        self.rcvd = rcvd


_END = object()


class ClientConnection:
    """An open WebSocket. ``connect()`` makes one; ``recv``, ``send``, ``ping``, ``close``."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol, close_timeout_s: float) -> None:
        self.sock = sock
        self.protocol = protocol
        self.close_timeout_s = close_timeout_s
        self.extensions = [extension.name for extension in protocol.extensions]
        self._lock = threading.Lock()
        self._inbox: queue.Queue[object] = queue.Queue()
        self._pings: dict[bytes, threading.Event] = {}
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        self.ended = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def connect(cls, url: str, *, headers: Mapping[str, str], timeout_s: float, ca_file: str | None = None,
                offer_deflate: bool = False, user_agent: str | None = None) -> ClientConnection:
        """Open ``url`` (ws:// or wss://); HandshakeRefused, HandshakeFailed or OSError if it cannot."""
        uri = parse_uri(url)
        protocol = ClientProtocol(uri, max_size=None,
                                  extensions=[ClientPerMessageDeflateFactory()] if offer_deflate else None)
        request = protocol.connect()
        for name, value in {**({"User-Agent": user_agent} if user_agent else {}), **headers}.items():
            request.headers[name] = value
        protocol.send_request(request)
        sock = socket.create_connection((uri.host, uri.port), timeout=timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if uri.secure:
                sock = ssl.create_default_context(cafile=ca_file).wrap_socket(sock, server_hostname=uri.host)
            for data in protocol.data_to_send():
                sock.sendall(data)
            response = _read_response(sock, protocol)
        except BaseException:
            sock.close()
            raise
        if response.status_code != 101:
            sock.close()
            raise HandshakeRefused(response.status_code, bytes(response.body or b""))
        if protocol.state is not OPEN:
            sock.close()
            raise HandshakeFailed(str(protocol.handshake_exc))
        sock.settimeout(None)
        return cls(sock, protocol, close_timeout_s=timeout_s)

    # -- receiving ---------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; TimeoutError after ``timeout``; ConnectionClosed once it is over."""
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no message") from None
        if item is _END:
            self._inbox.put(_END)  # every later call sees the end too
            raise ConnectionClosed(self.protocol.close_rcvd)
        assert isinstance(item, str | bytes)
        return item

    def _read(self) -> None:
        protocol = self.protocol
        try:
            while True:
                try:
                    data = self.sock.recv(RECV_BYTES)
                except OSError:
                    data = b""
                with self._lock:  # senders use the protocol object too
                    if data:
                        protocol.receive_data(data)
                    else:
                        protocol.receive_eof()
                    frames = protocol.events_received()
                    try:
                        self._flush()  # pongs, the answer to a close
                    except ConnectionClosed:
                        data = b""
                for frame in frames:
                    self._on_frame(frame)
                if not data:
                    return
        finally:
            self.ended.set()
            self._inbox.put(_END)
            for event in self._pings.values():
                event.set()  # nobody waits for a pong that can no longer come
            self.sock.close()

    def _on_frame(self, frame: object) -> None:
        opcode, data, fin = frame.opcode, frame.data, frame.fin  # type: ignore[attr-defined]
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self._fragment_opcode, self._fragments = opcode, [data]
        elif opcode is Opcode.CONT:
            self._fragments.append(data)
        elif opcode is Opcode.PONG:
            event = self._pings.pop(bytes(data), None)
            if event is not None:
                event.set()
            return
        else:
            return  # pings are answered and closes recorded by websockets
        if fin and self._fragment_opcode is not None:
            message = b"".join(self._fragments)
            if self._fragment_opcode is Opcode.TEXT:
                try:
                    self._inbox.put(message.decode("utf-8"))
                except UnicodeDecodeError:
                    with self._lock:
                        self.protocol.fail(1007, "invalid UTF-8")
            else:
                self._inbox.put(message)
            self._fragment_opcode, self._fragments = None, []

    # -- sending -----------------------------------------------------------------------------

    def send(self, message: str | Sequence[str]) -> None:
        """A text message; a list of strings is sent as one message in that many frames."""
        with self._lock:
            if self.protocol.state is not OPEN:
                raise ConnectionClosed(self.protocol.close_rcvd)
            if isinstance(message, str):
                self.protocol.send_text(message.encode())
            else:
                for index, part in enumerate(message):
                    last = index == len(message) - 1
                    if index == 0:
                        self.protocol.send_text(part.encode(), fin=last)
                    else:
                        self.protocol.send_continuation(part.encode(), fin=last)
            self._flush()

    def ping(self, data: bytes) -> threading.Event:
        """Send a ping; the event is set when its pong comes back (or the connection ends)."""
        event = threading.Event()
        with self._lock:
            self._pings[bytes(data)] = event
            self.protocol.send_ping(data)
            self._flush()
        return event

    def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake: send a close, wait up to close_timeout_s for the server to finish it."""
        with self._lock:
            if self.protocol.state is OPEN:
                self.protocol.send_close(code, reason)
                self._flush()
        if not self.ended.wait(self.close_timeout_s):
            self.abort()
        self._reader.join(self.close_timeout_s)

    def abort(self) -> None:
        """Drop the connection now: the reader wakes, ends and closes the socket."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return  # already gone

    def _flush(self) -> None:
        """Write what websockets has to send (callers hold the lock, or are the reader)."""
        for data in self.protocol.data_to_send():
            try:
                if data:
                    self.sock.sendall(data)
                elif not isinstance(self.sock, ssl.SSLSocket):
                    self.sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                raise ConnectionClosed(None) from exc


def _read_response(sock: socket.socket, protocol: ClientProtocol) -> Response:
    while True:
        data = sock.recv(RECV_BYTES)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        for event in protocol.events_received():
            if isinstance(event, Response):
                return event
        if protocol.handshake_exc is not None or not data:
            raise HandshakeFailed(str(protocol.handshake_exc or "the server closed the connection"))
