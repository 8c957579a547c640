"""`make run`'s webhook: ``gunicorn webhook_app.wsgi:app`` boots with the local stack's environment."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.fakes.twilio_webhook import target_from_webhook
from scripts.stack_env import DEFAULT_PORTS, stack_environment
from tests.conftest import launch_webhook_gunicorn, stop_process


@pytest.fixture
def gunicorn_webhook(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """gunicorn as scripts/local_stack.py starts it, but on a free port."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("RELAY_", "WEBHOOK_", "OPENAI_", "TWILIO_", "STREAM_", "FALLBACK_", "ASSISTANT_",
                                 "CALL_REPORT_"))}
    env = stack_environment(base, DEFAULT_PORTS, tmp_path / "stack.env").env
    log_path = tmp_path / "gunicorn.log"
    process, url = launch_webhook_gunicorn(env, log_path)
    yield url, env, log_path
    stop_process(process)


def test_the_local_stack_environment_boots_the_webhook(
    gunicorn_webhook: tuple[str, dict[str, str], Path],
) -> None:
    url, env, log_path = gunicorn_webhook
    assert env["WEBHOOK_PUBLIC_URL"] == "http://127.0.0.1:5050"
    assert env["RELAY_PUBLIC_URL"] == "ws://127.0.0.1:8080"

    with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
        assert json.load(response)["status"] == "ok"
    # Signed for the URL make run advertises (WEBHOOK_PUBLIC_URL), served on this test's port.
    target = target_from_webhook(url, auth_token=env["TWILIO_AUTH_TOKEN"],
                                 public_url=env["WEBHOOK_PUBLIC_URL"])

    assert target.url == "ws://127.0.0.1:8080/twilio/realtime"
    assert set(target.parameters) == {"streamToken", "callerNumber", "calledNumber"}
    log = log_path.read_text()
    assert "webhook.configured" in log and "twilio.voice call_sid=" + target.call_sid in log
    assert env["TWILIO_AUTH_TOKEN"] not in log and env["STREAM_TOKEN_SECRET"] not in log
