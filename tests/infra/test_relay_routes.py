"""The relay routes the infrastructure relies on, asked of the real relay application in-process.

- GET /healthz (the load balancer; the launch check): 200 while the relay takes calls, 503 when full or
  draining.
- GET /livez (the watchdog): 200 whenever a worker answers, full and draining included (were it not,
  every instance would be replaced a minute after entering service).
- GET /metrics (the CloudWatch agent): Prometheus text behind ``Authorization: Bearer DIAGNOSTIC_TOKEN``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from relay.config import RelayConfig
from relay.server import RelayApp

TOKEN = "diagnostic-token-for-the-agent-0123"


@pytest.fixture
def app() -> RelayApp:
    config = RelayConfig.from_env({
        "OPENAI_API_KEY": "sk-test-not-used", "TWILIO_AUTH_TOKEN": "auth-token-not-used",
        "STREAM_TOKEN_SECRET": "s" * 40, "RELAY_PUBLIC_URL": "wss://relay.example.com",
        "DIAGNOSTIC_TOKEN": TOKEN, "RELAY_MAX_CALLS": "1",
    }, cores=1)
    return RelayApp(config)


def get(app: RelayApp, path: str, **headers: str) -> tuple[int, bytes]:
    statuses: list[str] = []
    start: Callable[..., Any] = lambda status, _headers, *_: statuses.append(status)  # noqa: E731
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET",
               **{f"HTTP_{name.upper()}": value for name, value in headers.items()}}
    body = b"".join(app(environ, start))
    return int(statuses[0].split()[0]), body


def test_healthz_says_full_and_draining_so_the_load_balancer_stops_routing(app: RelayApp) -> None:
    assert get(app, "/healthz")[0] == 200
    assert app.counter.try_acquire(1)
    assert get(app, "/healthz")[0] == 503, "full"
    app.counter.release()
    app.begin_drain()
    assert get(app, "/healthz")[0] == 503, "draining"


def test_livez_answers_whether_full_or_draining(app: RelayApp) -> None:
    assert get(app, "/livez")[0] == 200
    assert app.counter.try_acquire(1)
    assert get(app, "/livez")[0] == 200, "a full relay is alive: the watchdog must not replace it"
    app.begin_drain()
    assert get(app, "/livez")[0] == 200, "a draining relay is alive"


def test_metrics_need_the_token_the_agent_presents(app: RelayApp) -> None:
    assert get(app, "/metrics")[0] == 401
    status, body = get(app, "/metrics", authorization=f"Bearer {TOKEN}")
    assert status == 200
    assert b"liveline_calls_active" in body, "the gauge scaling tracks"
