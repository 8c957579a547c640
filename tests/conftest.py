"""Shared fixtures. gevent is patched first: the relay, the stand-in model and the
simulated caller all run on real loopback sockets in this process (or in gunicorn
subprocesses), and an unpatched websocket-client would block the hub."""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import pytest  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from relay.config import RelayConfig  # noqa: E402
from relay.limits import Limits  # noqa: E402
from relay.report_delivery import DeliveryLimits  # noqa: E402
from relay.request_limits import RequestLimits  # noqa: E402
from relay.server import RelayApp, RelayHandler, create_app  # noqa: E402
from scripts.fakes.openai import StandinModel  # noqa: E402

AUTH_TOKEN = "test-twilio-auth-token-0123456789"
STREAM_SECRET = "test-stream-token-secret-0123456789abcdef"
DIAGNOSTIC_TOKEN = "test-diagnostic-token-0123456789"
# /healthz shows its full document (calls, limit, version) only to this header.
DIAGNOSTIC_AUTH = {"Authorization": f"Bearer {DIAGNOSTIC_TOKEN}"}
API_KEY = "sk-test-relay-key-0123456789"
# In-process relays run /diagnostic/openai back to back (verify_relay twice in a row): no
# minimum interval between two (one at a time still holds; the interval has its own tests).
TEST_LIMITS = RequestLimits(diagnostic_interval_s=0.0)


@pytest.fixture(autouse=True)
def _clean_environ() -> Iterator[None]:
    """Each test sees the environment as it was: none leaks into the next (Flask style)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def standin() -> Iterator[StandinModel]:
    """A stand-in Realtime model on a free loopback port, with fast, short audio."""
    model = StandinModel(api_key=API_KEY, speed=8.0).start()
    yield model
    model.stop()


def relay_env(openai_url: str, public_url: str, **overrides: str) -> dict[str, str]:
    """A complete, valid relay environment aimed at ``openai_url``."""
    env = {
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_REALTIME_URL": openai_url,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "STREAM_TOKEN_SECRET": STREAM_SECRET,
        "DIAGNOSTIC_TOKEN": DIAGNOSTIC_TOKEN,
        "RELAY_PUBLIC_URL": public_url,
        "OPENAI_CONNECT_TIMEOUT_SECONDS": "2",
        "OPENAI_SESSION_TIMEOUT_SECONDS": "3",
        "TWILIO_START_TIMEOUT_SECONDS": "3",
        "RELAY_WORKERS": "1",
    }
    env.update(overrides)
    return env


@dataclass
class RunningRelay:
    """An in-process relay on a real loopback socket."""

    app: RelayApp
    server: WSGIServer
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@pytest.fixture
def make_relay() -> Iterator[Any]:
    """Factory: ``make_relay(openai_url, limits=None, request_limits=TEST_LIMITS, **env_overrides)``.

    The listening socket is bound first so RELAY_PUBLIC_URL can name its real port, as
    the signature check needs. ``limits`` (relay.limits.Limits) lets a test judge stalls,
    floods and timers in milliseconds; ``request_limits`` (relay.request_limits) does the
    same for request heads, the diagnostic's interval and log rates. Returns a RunningRelay.
    """
    running: list[RunningRelay] = []

    def make(openai_url: str, limits: Limits | None = None, request_limits: RequestLimits = TEST_LIMITS,
             delivery_limits: DeliveryLimits | None = None, **overrides: str) -> RunningRelay:
        server = WSGIServer(("127.0.0.1", 0), None, handler_class=RelayHandler, log=None)
        server.init_socket()
        port = server.server_port
        config = RelayConfig.from_env(relay_env(openai_url, f"ws://127.0.0.1:{port}", **overrides))
        app = create_app(config, limits=limits, request_limits=request_limits, delivery_limits=delivery_limits)
        server.application = app
        server.start()
        relay = RunningRelay(app, server, port)
        running.append(relay)
        return relay

    yield make
    for relay in running:
        calls = list(relay.app.registry.calls)
        relay.server.stop(timeout=2)
        # Leak check: every call the test started has ended and been forgotten.
        deadline = time.monotonic() + 3
        while relay.app.registry.calls and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert not relay.app.registry.calls, f"calls still live after the test: {calls}"
        assert relay.app.counter.total() == 0, "a call slot was never released"


@pytest.fixture
def relay(make_relay: Any, standin: StandinModel) -> RunningRelay:
    """An in-process relay talking to the stand-in model."""
    return make_relay(standin.url)  # type: ignore[no-any-return]


def wait_http(url: str, timeout_s: float = 20.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until ``url`` answers at all (any HTTP status); OSError if ``process`` exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise OSError(f"exited with status {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class GunicornRelay:
    """The relay under real gunicorn, as deployed."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """Every worker gunicorn booted so far (a replaced worker adds a pid)."""
        return [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", self.log())]


def free_port() -> int:
    """A port that was free a moment ago (for subprocesses that must be told a port)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_gunicorn(openai_url: str, log_dir: Path, **overrides: str) -> GunicornRelay:
    """Start ``gunicorn -c relay/gunicorn.conf.py relay.wsgi:app`` with an env; wait for /healthz."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "OPENAI_"))}
    env.update(relay_env(openai_url, f"ws://127.0.0.1:{port}", RELAY_BIND=f"127.0.0.1:{port}",
                         **overrides))
    env["PYTHONPATH"] = str(ROOT)
    log_path = log_dir / f"gunicorn-{port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "relay/gunicorn.conf.py", "relay.wsgi:app"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    relay = GunicornRelay(process, port, log_path)
    try:
        wait_http(relay.http_url + "/healthz", process=process)
    except OSError:
        stop_gunicorn(relay)
        raise AssertionError("gunicorn relay did not start:\n" + relay.log()) from None
    return relay


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate (then kill) a process still running."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_gunicorn(relay: GunicornRelay) -> None:
    """Terminate (then kill) a relay still running."""
    stop_process(relay.process)


def launch_webhook_gunicorn(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``gunicorn webhook_app.wsgi:app`` (as make run does) on a free port with ``env``.

    Waits for ``/healthz``; returns the process and its http:// origin.
    """
    port = free_port()
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--no-control-socket", "-b", f"127.0.0.1:{port}",
             "webhook_app.wsgi:app"],
            cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", process=process)
    except OSError:
        stop_process(process)
        raise AssertionError("gunicorn webhook did not start:\n" + log_path.read_text()) from None
    return process, url


@pytest.fixture
def gunicorn_relay(tmp_path: Path) -> Iterator[Any]:
    """Factory: start ``gunicorn -c relay/gunicorn.conf.py relay.wsgi:app`` with an env."""
    started: list[GunicornRelay] = []

    def start(openai_url: str, **overrides: str) -> GunicornRelay:
        relay = launch_gunicorn(openai_url, tmp_path, **overrides)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        stop_gunicorn(relay)
