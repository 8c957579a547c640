"""A loopback TCP proxy that misbehaves on purpose: the network between the relay and OpenAI.

Put in front of the stand-in model (OPENAI_REALTIME_URL aimed at the proxy), it forwards
bytes both ways, and each connection can be made to:

- answer late: the server's first bytes (the handshake's ``101``) are held for
  ``first_reply_delay_s``, a slow Realtime handshake as the relay sees it;
- stop reading: ``choke()`` stops taking bytes from the relay, so what the relay sends
  piles up in its kernel buffers and then in its own send queue, a Realtime peer that
  stopped reading. The proxy's receive buffer is kept small so that happens at once.

It knows nothing of WebSockets or of the relay's code: bytes in, bytes out.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import gevent
from gevent.event import Event
from gevent.server import StreamServer

SMALL_BUFFER = 4096


class ProxiedConnection:
    """One client connection and the proxy's own connection to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.reading = Event()
        self.reading.set()
        self.client_bytes = 0  # taken from the client (the relay)
        self.closed = Event()

    def choke(self) -> None:
        """Stop reading from the client: its sends back up."""
        self.reading.clear()

    def release(self) -> None:
        """Read from the client again."""
        self.reading.set()


class FaultProxy:
    """``FaultProxy(port).start()``; ``url(path)`` is what the relay should dial."""

    def __init__(self, target_port: int, *, first_reply_delay_s: float = 0.0) -> None:
        self.target_port = target_port
        self.first_reply_delay_s = first_reply_delay_s
        self.connections: list[ProxiedConnection] = []
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)  # inherited by accepted sockets
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self._server = StreamServer(listener, self._serve)
        self.port = listener.getsockname()[1]

    def url(self, path: str = "/v1/realtime") -> str:
        """The ws:// URL of the stand-in, through the proxy."""
        return f"ws://127.0.0.1:{self.port}{path}"

    def start(self) -> FaultProxy:
        """Accept connections."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Close everything."""
        self._server.stop(timeout=1)
        for conn in self.connections:
            for sock in (conn.client, conn.server):
                sock.close()

    def _serve(self, client: socket.socket, _address: object) -> None:
        server = socket.create_connection(("127.0.0.1", self.target_port))
        conn = ProxiedConnection(client, server)
        self.connections.append(conn)
        up = gevent.spawn(self._client_to_server, conn)
        down = gevent.spawn(self._server_to_client, conn)
        gevent.joinall([up, down])
        conn.closed.set()

    @staticmethod
    def _client_to_server(conn: ProxiedConnection) -> None:
        try:
            while True:
                conn.reading.wait()
                data = conn.client.recv(SMALL_BUFFER)
                if not data:
                    break
                conn.client_bytes += len(data)
                conn.server.sendall(data)
        except OSError:
            pass
        _shut(conn.server)

    def _server_to_client(self, conn: ProxiedConnection) -> None:
        first = True
        try:
            while True:
                data = conn.server.recv(65536)
                if not data:
                    break
                if first and self.first_reply_delay_s:
                    gevent.sleep(self.first_reply_delay_s)
                first = False
                conn.client.sendall(data)
        except OSError:
            pass
        _shut(conn.client)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return


@contextmanager
def fault_proxy(target_port: int, **options: float) -> Iterator[FaultProxy]:
    """A started FaultProxy, stopped afterwards."""
    proxy = FaultProxy(target_port, **options).start()
    try:
        yield proxy
    finally:
        proxy.stop()
