"""Real loopback stand-ins for what the verify scripts must diagnose, and a way to run them.

Every server here listens on a real port (gevent's servers, bound to port 0): a static
"frontend", an app that 404s, a proxy answering 502, the relay's app without its
WebSocket handler (a proxy that drops the upgrade headers), a TLS-terminating front with a
freshly made certificate (the load balancer's role), the real webhook app. The scripts are run in-process through their
``main(argv, environ)``, with ``--no-env-file`` so a developer's ``.local/stack.env`` never
leaks in, and judged on what they print and the exit code.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer

from relay.config import RelayConfig
from relay.server import create_app
from tests.conftest import AUTH_TOKEN, DIAGNOSTIC_TOKEN, STREAM_SECRET, relay_env
from tests.webhook.conftest import start_webhook  # noqa: F401 - the fixture, shared with tests/webhook

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Serve = Callable[..., int]

# What an operator exports before a check (never the relay's OpenAI key).
SECRETS = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "STREAM_TOKEN_SECRET": STREAM_SECRET,
           "DIAGNOSTIC_TOKEN": DIAGNOSTIC_TOKEN}


def static_app(status: str, body: str, content_type: str = "text/html; charset=utf-8",
               headers: Mapping[str, str] | None = None) -> WSGIApp:
    """A WSGI app answering every request, upgrade or not, with the same page."""
    data = body.encode()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))),
                                *(headers or {}).items()])
        return [data]

    return app


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Factory: ``serve(app, handler_class=None, ssl_context=None)`` -> the port it listens on."""
    servers: list[WSGIServer] = []

    def start(app: WSGIApp | None, *, handler_class: Any = None, ssl_context: ssl.SSLContext | None = None,
              bind: Callable[[int], WSGIApp] | None = None) -> int:
        extra: dict[str, Any] = {"ssl_context": ssl_context} if ssl_context is not None else {}
        server = WSGIServer(("127.0.0.1", 0), app, handler_class=handler_class, log=None, error_log=None,
                            **extra)
        server.init_socket()
        if bind is not None:  # an app that must know its own port (a public URL)
            server.application = bind(server.server_port)
        server.start()
        servers.append(server)
        return int(server.server_port)

    yield start
    for server in servers:
        server.stop(timeout=1)


def relay_app(openai_url: str, public_url: str, **overrides: str) -> Any:
    """The relay's WSGI app (tests may build it; the scripts may not import it)."""
    return create_app(RelayConfig.from_env(relay_env(openai_url, public_url, **overrides)))


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for ``localhost`` (and nothing else)."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """Made with the openssl command line (the standard library cannot make certificates)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    return Certificate(cert, key)


@pytest.fixture
def tls_front(certificate: Certificate) -> Iterator[Callable[[int], int]]:
    """Factory: ``tls_front(backend_port)`` -> the port of a TLS-terminating TCP front for it.

    Plays the load balancer's part (TLS at the edge, plain TCP to the relay), with the
    self-signed certificate for ``localhost``.
    """
    servers: list[StreamServer] = []

    def start(backend_port: int) -> int:
        def handle(client: socket.socket, _address: Any) -> None:
            try:
                backend = socket.create_connection(("127.0.0.1", backend_port), timeout=5)
            except OSError:
                return
            backend.settimeout(None)

            def upstream() -> None:
                try:
                    while data := client.recv(65536):
                        backend.sendall(data)
                    backend.shutdown(socket.SHUT_WR)
                except OSError:
                    return

            sender = gevent.spawn(upstream)
            try:
                while data := backend.recv(65536):
                    client.sendall(data)
            except OSError:
                pass  # either side went away: the server closes the client socket
            finally:
                sender.kill()
                backend.close()

        server = StreamServer(("127.0.0.1", 0), handle, ssl_context=certificate.server_context())
        server.start()
        servers.append(server)
        return int(server.server_port)

    yield start
    for server in servers:
        server.stop(timeout=1)


@pytest.fixture
def run_script(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    """``run_script(main, *argv, env={...})`` -> (exit code, stdout); never reads an env file.

    The checklist's column padding is squashed to single spaces (JSON is returned as printed),
    so tests read ``✓ TLS certificate valid…`` whatever the widest title is.
    """

    def run(main: Callable[..., int], *argv: str, env: Mapping[str, str] | None = None) -> tuple[int, str]:
        capsys.readouterr()
        code = main([*argv, "--no-env-file"], environ=dict(env or {}))
        out = capsys.readouterr().out
        return code, out if "--json" in argv else " ".join(out.split())

    return run


Report = dict[str, Any]


@pytest.fixture
def run_json(run_script: Callable[..., tuple[int, str]]) -> Callable[..., tuple[int, Report]]:
    """``run_json(main, *argv, env={...})`` -> (exit code, the ``--json`` report)."""

    def run(main: Callable[..., int], *argv: str, env: Mapping[str, str] | None = None) -> tuple[int, Report]:
        code, out = run_script(main, *argv, "--json", env=env)
        return code, json.loads(out)

    return run


def layer(report: Report, name: str) -> dict[str, Any]:
    """One layer of a ``--json`` report."""
    return next(item for item in report["layers"] if item["name"] == name)


def failure(report: Report) -> tuple[str, str]:
    """(layer name, diagnosis code) of the report's failed layer."""
    (failed,) = [item for item in report["layers"] if item["status"] == "failed"]
    return failed["name"], failed["code"]


def statuses(report: Report) -> dict[str, str]:
    """Every layer's status, by name."""
    return {item["name"]: item["status"] for item in report["layers"]}
