"""Fixtures for the softphone: a gateway on loopback, a scripted relay, a scripted page, Chromium.

- ``ScriptedRelay`` stands where the relay stands (the webhook's TwiML points at it): it
  checks the upgrade's signature as the relay does, records every message the gateway
  sends, and sends ``media``/``mark``/``clear``/close when a test says so. Built on
  gevent-websocket, nothing of relay/.
- ``ScriptedPage`` is the page's side of ``/phone`` over websocket-client: it sends frames,
  played positions, digits and garbage, and records what the gateway says.
- ``chromium`` launches Debian's Chromium through Playwright (``make test`` installs it).
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import pytest
import websocket
from gevent.event import Event
from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler
from twilio.request_validator import RequestValidator

from scripts.softphone.gateway import Gateway
from scripts.softphone.incoming_call import Webhook
from scripts.softphone.phone_call import Limits, Line
from tests.conftest import AUTH_TOKEN
from tests.helpers import wait_until
from tests.webhook.conftest import start_webhook  # noqa: F401 - the fixture, shared with tests/webhook

STREAM_PATH = "/twilio/realtime"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FAST = Limits(connect_timeout_s=3.0, close_timeout_s=0.5, page_idle_s=5.0, watchdog_s=0.05)


# -- the relay's place ----------------------------------------------------------------------------


@dataclass
class RelayStream:
    """One stream the gateway opened: what it sent, and a way to answer."""

    ws: Any
    headers: dict[str, str]
    received: list[Any] = field(default_factory=list)  # parsed JSON, or ("binary", bytes)
    closed: Event = field(default_factory=Event)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON messages received (of one event)."""
        return [m for m in self.received if isinstance(m, dict) and (name is None or m.get("event") == name)]

    def wait_for(self, name: str, count: int = 1, timeout_s: float = 3.0) -> list[dict[str, Any]]:
        """Wait until ``count`` messages of ``name`` have arrived; return them."""
        assert wait_until(lambda: len(self.events(name)) >= count, timeout_s), \
            f"{count} {name!r} expected, got {[m.get('event') for m in self.events()]}"
        return self.events(name)

    @property
    def stream_sid(self) -> str:
        """The streamSid of the stream's ``start``."""
        return str(self.wait_for("start")[0]["start"]["streamSid"])

    def send(self, event: str, **body: Any) -> None:
        """A relay-to-Twilio message with this stream's streamSid."""
        self.ws.send(json.dumps({"event": event, "streamSid": self.stream_sid, **body}))

    def media(self, audio: bytes) -> None:
        """Assistant audio."""
        import base64

        self.send("media", media={"payload": base64.b64encode(audio).decode()})

    def close(self, code: int, reason: str = "") -> None:
        """Close with a status code (gevent-websocket's own close() drops the code)."""
        self.ws.send_frame(struct.pack("!H", code) + reason.encode(), self.ws.OPCODE_CLOSE)
        self.ws.close()


class ScriptedRelay:
    """Listens where the relay would; refuses an upgrade whose signature is wrong (403)."""

    def __init__(self, auth_token: str = AUTH_TOKEN) -> None:
        self.auth_token = auth_token
        self.streams: list[RelayStream] = []
        self.refused = 0
        self._server: WSGIServer | None = None

    @property
    def url(self) -> str:
        """The origin the webhook's TwiML names (RELAY_PUBLIC_URL)."""
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.server_port}"

    def start(self) -> ScriptedRelay:
        relay = self

        class Handler(WebSocketHandler):
            def upgrade_websocket(self) -> Any:
                signature = self.environ.get("HTTP_X_TWILIO_SIGNATURE", "")
                url = relay.url + self.environ.get("PATH_INFO", "")
                if not RequestValidator(relay.auth_token).validate(url, {}, signature):
                    relay.refused += 1
                    self.start_response("403 Forbidden", [("Content-Length", "3")])
                    return [b"bad"]
                return super().upgrade_websocket()

        self._server = WSGIServer(("127.0.0.1", 0), self._app, handler_class=Handler, log=None, error_log=None)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=1)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        ws = environ.get("wsgi.websocket")
        if ws is None:
            start_response("426 Upgrade Required", [("Content-Length", "0")])
            return []
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        stream = RelayStream(ws, headers)
        self.streams.append(stream)
        try:
            while True:
                message = ws.receive()
                if message is None:
                    break
                stream.received.append(json.loads(message) if isinstance(message, str) else ("binary", message))
        finally:
            stream.closed.set()
        return []

    def stream(self, index: int = 0, timeout_s: float = 3.0) -> RelayStream:
        """The index-th stream opened, once it has its ``start``."""
        assert wait_until(lambda: len(self.streams) > index, timeout_s), "the gateway opened no stream"
        stream = self.streams[index]
        stream.wait_for("start")
        return stream


# -- the page's place -----------------------------------------------------------------------------


class ScriptedPage:
    """The page's side of /phone, over websocket-client."""

    def __init__(self, port: int, *, origin: str | None = None, host: str | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.audio = bytearray()
        self.closed = Event()
        options: dict[str, Any] = {"origin": origin or f"http://127.0.0.1:{port}"}
        if host is not None:
            options["host"] = host
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/phone", timeout=5, **options)
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        while True:
            try:
                opcode, data = self.ws.recv_data()
            except (OSError, websocket.WebSocketException):
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            if opcode == websocket.ABNF.OPCODE_BINARY:
                self.audio += data
            else:
                self.events.append(json.loads(data))
        self.closed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The gateway's messages of one type."""
        return [e for e in self.events if e["type"] == kind]

    def wait_for(self, kind: str, timeout_s: float = 5.0) -> dict[str, Any]:
        """The first message of ``kind`` (waiting for it)."""
        assert wait_until(lambda: self.of(kind), timeout_s), f"no {kind!r}; got {self.events}"
        return self.of(kind)[0]

    def progress(self, step: str, timeout_s: float = 5.0) -> dict[str, Any]:
        """A ``progress`` message of one step."""
        assert wait_until(lambda: [e for e in self.of("progress") if e["step"] == step], timeout_s), \
            f"no progress {step!r}; got {self.events}"
        return next(e for e in self.of("progress") if e["step"] == step)

    def send_json(self, **message: Any) -> None:
        self.ws.send(json.dumps(message))

    def send_frames(self, frames: list[bytes], realtime: bool = True) -> None:
        """Caller audio, 20 ms apart (or all at once)."""
        for frame in frames:
            self.ws.send_binary(frame)
            if realtime:
                gevent.sleep(0.02)

    def played(self, samples: int) -> None:
        self.send_json(type="played", samples=samples)

    def vanish(self) -> None:
        """Drop the connection without a word (a closed laptop lid, a killed tab)."""
        if self.ws.sock is not None:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        self.ws.shutdown()

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except (OSError, websocket.WebSocketException):
            pass  # the gateway had already closed it
        finally:
            self.ws.shutdown()  # websocket-client leaves the socket open when the close fails
        self._reader.join(2)


@pytest.fixture
def scripted_relay() -> Iterator[ScriptedRelay]:
    relay = ScriptedRelay().start()
    yield relay
    relay.stop()


@pytest.fixture
def make_gateway() -> Iterator[Callable[..., Gateway]]:
    """Factory: ``make_gateway(webhook_url, limits=FAST, auth_token=AUTH_TOKEN)`` -> a started Gateway.

    At the end, every call must have ended and been forgotten.
    """
    started: list[Gateway] = []

    def make(webhook_url: str, limits: Limits = FAST, auth_token: str = AUTH_TOKEN) -> Gateway:
        gateway = Gateway(Line(Webhook(webhook_url, webhook_url, auth_token)), limits=limits).start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        live = dict(gateway.calls)
        gateway.stop()
        assert not live, f"calls still live after the test: {list(live)}"


@pytest.fixture
def pages() -> Iterator[Callable[..., ScriptedPage]]:
    """Factory: ``pages(port, origin=None, host=None)`` -> a connected ScriptedPage."""
    opened: list[ScriptedPage] = []

    def open_page(port: int, **options: Any) -> ScriptedPage:
        page = ScriptedPage(port, **options)
        opened.append(page)
        return page

    yield open_page
    for page in opened:
        page.close()


# -- Chromium -------------------------------------------------------------------------------------


def require_chromium() -> None:
    """Skip (fail, in CI) without Debian's chromium: ``make test`` installs it."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: install Debian's chromium (make test does: apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def playwright_session() -> Iterator[Any]:
    """Playwright's driver, once per run."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def chromium(playwright_session: Any) -> Iterator[Callable[..., Any]]:
    """Factory: ``chromium(*extra_flags)`` -> a launched browser (closed at the end of the run)."""
    browsers: list[Any] = []

    def launch(*extra: str) -> Any:
        browser = playwright_session.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_FLAGS, *extra], headless=True)
        browsers.append(browser)
        return browser

    yield launch
    for browser in browsers:
        browser.close()
