"""The outbound HTTP client on real loopback sockets, against servers that misbehave on purpose:
every failure has its kind, a bigger body is an error, redirects are not followed, the deadline
covers the whole exchange and TLS is checked against Python's default context."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.server import StreamServer

from relay.outbound import HttpClient, OutboundError

Answer = Callable[[socket.socket], None]


@dataclass
class Seen:
    """One request a scripted server read: its request line, headers and body."""

    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Scripted:
    """A raw HTTP server on a loopback port answering every request with ``answer(sock)``."""

    answer: Answer
    ssl_context: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    server: StreamServer | None = None

    def start(self) -> Scripted:
        extra: dict[str, Any] = {"ssl_context": self.ssl_context} if self.ssl_context else {}
        self.server = StreamServer(("127.0.0.1", 0), self._handle, **extra)
        self.server.start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_port}"

    def _handle(self, sock: socket.socket, _address: Any) -> None:
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            line, *rest = head.decode("latin-1").split("\r\n")
            headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in rest)}
            while len(body) < int(headers.get("content-length", "0")):
                body += sock.recv(65536)
            self.seen.append(Seen(line, headers, body))
            self.answer(sock)
        except OSError:
            return  # the client gave up (a timeout test): nothing to answer


def http_answer(status: str, body: bytes = b"", headers: tuple[str, ...] = ()) -> Answer:
    def answer(sock: socket.socket) -> None:
        lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers, "", ""]
        sock.sendall("\r\n".join(lines).encode() + body)

    return answer


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    started: list[Scripted] = []

    def make(answer: Answer, ssl_context: ssl.SSLContext | None = None) -> Scripted:
        server = Scripted(answer, ssl_context).start()
        started.append(server)
        return server

    yield make
    for server in started:
        assert server.server is not None
        server.server.stop(timeout=1)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command line."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("outbound-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def post(url: str, body: bytes = b'{"a": 1}', *, timeout_s: float = 5.0, max_body_bytes: int = 1024,
         client: HttpClient | None = None) -> Any:
    return (client or HttpClient()).post(url + "/hook?x=1", body, {"Content-Type": "application/json"},
                                         timeout_s=timeout_s, max_body_bytes=max_body_bytes)


def failure(url: str, **kwargs: Any) -> OutboundError:
    with pytest.raises(OutboundError) as info:
        post(url, **kwargs)
    return info.value


# -- answers -------------------------------------------------------------------------------


def test_a_2xx_answer_and_what_the_server_received(scripted: Callable[..., Scripted]) -> None:
    server = scripted(http_answer("200 OK", b'{"status": "shipped"}', ("Content-Type: application/json",)))
    response = post(server.url, b'{"order_id": "42"}')
    assert (response.status, response.content_type, response.body) == (
        200, "application/json", b'{"status": "shipped"}')
    [seen] = server.seen
    assert seen.line == "POST /hook?x=1 HTTP/1.1"
    assert seen.body == b'{"order_id": "42"}'
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["content-length"] == "18"
    assert seen.headers["user-agent"] == "Liveline-Relay"


def test_an_error_status_is_an_error_with_an_excerpt_of_its_body(scripted: Callable[..., Scripted]) -> None:
    server = scripted(http_answer("500 Internal Server Error", b'{"code": 20500}'))
    error = failure(server.url)
    assert (error.kind, error.status, error.body) == ("status", 500, b'{"code": 20500}')


def test_a_redirect_is_not_followed(scripted: Callable[..., Scripted]) -> None:
    elsewhere = scripted(http_answer("200 OK", b"signed request captured"))
    server = scripted(http_answer("307 Temporary Redirect", headers=(f"Location: {elsewhere.url}/steal",)))
    error = failure(server.url)
    assert (error.kind, error.status) == ("status", 307)
    assert elsewhere.seen == []


# -- the body cap -----------------------------------------------------------------------------


def test_a_body_at_the_cap_is_whole_and_one_byte_more_is_too_large(scripted: Callable[..., Scripted]) -> None:
    assert post(scripted(http_answer("200 OK", b"x" * 1024)).url).body == b"x" * 1024
    error = failure(scripted(http_answer("200 OK", b"x" * 1025)).url)
    assert (error.kind, error.status) == ("too_large", 200)


def chunked(sock: socket.socket) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        sock.sendall(b"200\r\n" + b"y" * 0x200 + b"\r\n")
    sock.sendall(b"0\r\n\r\n")


def until_close(sock: socket.socket) -> None:
    sock.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * 5000)
    sock.close()


def lying_length(sock: socket.socket) -> None:
    """Announces ten megabytes and sends none of them."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
    gevent.sleep(3)


def test_an_announced_length_over_the_cap_is_refused_before_reading(scripted: Callable[..., Scripted]) -> None:
    assert failure(scripted(lying_length).url, timeout_s=2).kind == "too_large"


@pytest.mark.parametrize("answer", [chunked, until_close], ids=["chunked", "read-until-close"])
def test_a_body_without_a_length_is_capped_too(scripted: Callable[..., Scripted], answer: Answer) -> None:
    assert failure(scripted(answer).url).kind == "too_large"


# -- broken peers ------------------------------------------------------------------------------


def not_http(sock: socket.socket) -> None:
    sock.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


def hang_up(sock: socket.socket) -> None:
    sock.close()


def short_body(sock: socket.socket) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
    sock.close()


@pytest.mark.parametrize("answer", [not_http, hang_up, short_body])
def test_a_peer_that_does_not_answer_http_is_a_protocol_error(scripted: Callable[..., Scripted],
                                                              answer: Answer) -> None:
    assert failure(scripted(answer).url).kind == "protocol"


def test_a_refused_connection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: the kernel refuses connections
        error = failure(f"http://127.0.0.1:{sock.getsockname()[1]}")
    assert error.kind == "connect"


def test_a_name_that_does_not_resolve() -> None:
    assert failure("http://no-such-host.invalid").kind == "dns"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "http:///nohost", "http://127.0.0.1:99999/"])
def test_an_invalid_url(url: str) -> None:
    assert failure(url).kind == "invalid_url"


# -- the deadline -------------------------------------------------------------------------------


def drip(sock: socket.socket) -> None:
    """A whole, valid answer, one byte every 50 ms: each read succeeds, the exchange takes 2 s."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n" + b"d" * 20:
        sock.sendall(bytes([byte]))
        gevent.sleep(0.05)


def test_the_deadline_covers_the_whole_exchange_not_each_read(scripted: Callable[..., Scripted]) -> None:
    # A per-read timeout of 0.3 s would never fire here and the client would get its answer.
    assert failure(scripted(drip).url, timeout_s=0.3).kind == "timeout"


def test_a_silent_server_times_out(scripted: Callable[..., Scripted]) -> None:
    assert failure(scripted(lambda sock: gevent.sleep(3)).url, timeout_s=0.2).kind == "timeout"


def test_a_slow_request_does_not_hold_up_another(scripted: Callable[..., Scripted]) -> None:
    slow = scripted(lambda sock: gevent.sleep(1.5))
    fast = scripted(http_answer("200 OK", b"fast"))
    waiting = gevent.spawn(failure, slow.url, timeout_s=1.0)
    gevent.sleep(0.05)
    assert post(fast.url).body == b"fast"
    assert not waiting.ready(), "the slow request finished before the fast one: they did not overlap"
    assert waiting.get(timeout=5).kind == "timeout"


# -- TLS --------------------------------------------------------------------------------------------


def test_an_untrusted_certificate_is_refused(scripted: Callable[..., Scripted],
                                            certificate: tuple[Path, Path]) -> None:
    server = scripted(http_answer("200 OK", b"secret"), server_context(certificate))
    error = failure(server.url)
    assert error.kind == "tls"
    assert "certificate" in error.detail


def test_a_trusted_certificate_is_accepted(scripted: Callable[..., Scripted],
                                           certificate: tuple[Path, Path]) -> None:
    server = scripted(http_answer("200 OK", b"over tls"), server_context(certificate))
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    assert post(server.url, client=HttpClient(trusting)).body == b"over tls"


def test_the_default_context_honours_ssl_cert_file(scripted: Callable[..., Scripted],
                                                   certificate: tuple[Path, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    server = scripted(http_answer("200 OK", b"trusted by SSL_CERT_FILE"), server_context(certificate))
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    assert post(server.url).body == b"trusted by SSL_CERT_FILE"
