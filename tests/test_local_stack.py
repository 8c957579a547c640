"""``make run`` and ``make call`` as a newcomer runs them: the local stack in a subprocess
(stand-in model, relay and webhook under gunicorn), then a simulated call that starts at
the webhook, exactly as Twilio would place it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from scripts.local_stack import stack_environment
from tests.conftest import ROOT, free_port, wait_http


def test_make_run_then_make_call_hears_the_assistant(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "RELAY_", "TWILIO_", "STREAM_", "WEBHOOK_", "DIAGNOSTIC_"))}
    ports = [free_port() for _ in range(4)]
    env_file = tmp_path / "stack.env"
    log = tmp_path / "stack.log"
    with open(log, "wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "scripts.local_stack", "--relay-port", str(ports[0]),
             "--webhook-port", str(ports[1]), "--standin-port", str(ports[2]), "--softphone-port", str(ports[3]),
             "--env-file", str(env_file)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{ports[0]}/healthz")
        wait_http(f"http://127.0.0.1:{ports[1]}/healthz")
        call = subprocess.run(
            [sys.executable, "-m", "scripts.call", "--env-file", str(env_file), "--hold", "3",
             "--out", str(tmp_path / "heard.wav")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert call.returncode == 0, call.stdout + call.stderr
        assert "first assistant audio" in call.stdout
        assert f"via webhook http://127.0.0.1:{ports[1]}/twilio/voice" in call.stdout
        assert (tmp_path / "heard.wav").stat().st_size > 10_000
        text = log.read_text()
        assert "LOCAL STAND-IN MODEL" in text  # said loudly when there is no OpenAI key
        assert "call.first_audio" in text
    finally:
        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=20) == 0, log.read_text()


def test_ctrl_c_while_the_stack_starts_is_a_clean_stop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "RELAY_", "TWILIO_", "STREAM_", "WEBHOOK_", "DIAGNOSTIC_"))}
    ports = [free_port() for _ in range(4)]
    log = tmp_path / "stack.log"
    with open(log, "wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "scripts.local_stack", "--relay-port", str(ports[0]),
             "--webhook-port", str(ports[1]), "--standin-port", str(ports[2]), "--softphone-port", str(ports[3]),
             "--env-file", str(tmp_path / "stack.env")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while "Starting gunicorn" not in log.read_text():  # the relay is booting, not yet up
            assert stack.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        os.killpg(stack.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
        assert stack.wait(timeout=20) == 0, log.read_text()
        text = log.read_text()
        assert "Liveline is running" not in text, "Ctrl-C came after start-up: this test missed its window"
        assert "did not come up" not in text
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGKILL)


def test_the_local_secrets_are_private_from_the_first_byte(tmp_path: Path) -> None:
    env_file = tmp_path / ".local" / "stack.env"
    old_umask = os.umask(0)  # the most permissive umask: the modes must not come from it
    try:
        stack_environment({}, relay_port=8080, webhook_port=5050, standin_port=8765, env_file=env_file)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(env_file.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "STREAM_TOKEN_SECRET=" in env_file.read_text()

    env_file.chmod(0o644)  # left readable by an older run: rewriting it closes it again
    stack_environment({}, relay_port=8080, webhook_port=5050, standin_port=8765, env_file=env_file)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
