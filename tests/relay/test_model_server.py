"""The relay says which model server it talks to: OpenAI, or (plainly) a local one such as the stand-in."""

from __future__ import annotations

import logging

import pytest

from relay import model_server
from relay.config import RelayConfig
from relay.server import create_app
from tests.conftest import relay_env


@pytest.mark.parametrize("url,kind", [
    ("wss://api.openai.com/v1/realtime", model_server.OPENAI),
    ("wss://API.OpenAI.com./v1/realtime", model_server.OPENAI),
    ("ws://127.0.0.1:8765/v1/realtime", model_server.LOCAL),
    ("ws://[::1]:8765/v1/realtime", model_server.LOCAL),
    ("wss://localhost:9443/v1/realtime", model_server.LOCAL),
    ("wss://api.openai.com.evil.example/v1/realtime", model_server.OTHER),
    ("wss://realtime-proxy.internal/v1/realtime", model_server.OTHER),
])
def test_who_the_url_reaches(url: str, kind: str) -> None:
    assert model_server.kind(url) == kind


def _started(url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.set_level(logging.INFO, logger="relay")
    create_app(RelayConfig.from_env(relay_env(url, "ws://127.0.0.1:8080")))
    return [record.getMessage() for record in caplog.records]


def test_the_start_up_says_plainly_when_calls_go_to_a_local_model(caplog: pytest.LogCaptureFixture) -> None:
    lines = _started("ws://127.0.0.1:8765/v1/realtime", caplog)
    (line,) = [line for line in lines if line.startswith("relay.openai_upstream ")]
    assert "upstream='local'" in line and "url='ws://127.0.0.1:8765/v1/realtime'" in line
    assert "NOT OpenAI: a model server on this machine (127.0.0.1:8765), such as make run's stand-in" in line
    assert "calls hear it, not gpt-realtime" in line
    (record,) = [r for r in caplog.records if r.getMessage().startswith("relay.openai_upstream ")]
    assert record.levelno == logging.WARNING


def test_the_start_up_with_openai_says_nothing_more(caplog: pytest.LogCaptureFixture) -> None:
    lines = _started("wss://api.openai.com/v1/realtime", caplog)
    assert any(line.startswith("relay.configured ") for line in lines)
    assert not any(line.startswith("relay.openai_upstream ") for line in lines)
