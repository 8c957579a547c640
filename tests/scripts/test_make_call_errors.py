"""``make call`` when there is nothing (or only half a stack) to call: two plain lines, exit 1,
no traceback and no timeline. The CLI runs as a subprocess; the webhook that answers while the
relay is down is the real webhook app on a loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import AUTH_TOKEN, ROOT, free_port

OURS = ("OPENAI_", "RELAY_", "TWILIO_", "STREAM_", "WEBHOOK_", "DIAGNOSTIC_")


def make_call(*args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    completed = subprocess.run([sys.executable, "-m", "scripts.call", "--hold", "2", *args], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert completed.stdout == "" and "Traceback" not in completed.stderr, completed.stdout + completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 2, completed.stderr
    return lines


def test_no_stack_was_ever_started(tmp_path: Path) -> None:
    env_file = tmp_path / ".local" / "stack.env"
    assert make_call("--env-file", str(env_file)) == [
        f"make call: no local stack to call ({env_file} does not exist yet).",
        "Start the stack with make run (in another terminal), then make call again."]


def test_the_stack_is_not_running(tmp_path: Path) -> None:
    port = free_port()
    env_file = tmp_path / "stack.env"
    env_file.write_text(f"TWILIO_AUTH_TOKEN={AUTH_TOKEN}\nWEBHOOK_URL=http://127.0.0.1:{port}\n"
                        f"RELAY_URL=http://127.0.0.1:{free_port()}\n")
    assert make_call("--env-file", str(env_file)) == [
        f"make call: nothing answers at http://127.0.0.1:{port}, the webhook of make run's stack "
        f"(connection refused).",
        "Start the stack with make run (in another terminal), then make call again."]


def test_the_webhook_is_up_but_the_relay_is_down(tmp_path: Path, start_webhook: Callable[..., str]) -> None:
    relay_port = free_port()  # nothing listens there
    webhook = start_webhook(f"ws://127.0.0.1:{relay_port}")
    env_file = tmp_path / "stack.env"
    env_file.write_text(f"TWILIO_AUTH_TOKEN={AUTH_TOKEN}\nWEBHOOK_URL={webhook}\nWEBHOOK_PUBLIC_URL={webhook}\n")
    first, second = make_call("--env-file", str(env_file))
    assert first == (f"make call: the webhook answered, but nothing answers at ws://127.0.0.1:{relay_port}"
                     f"/twilio/realtime, where its TwiML sends the call (connection refused).")
    assert second.startswith("Start the relay (make run does, and its output says why one stopped); if "
                             "RELAY_PUBLIC_URL is a tunnel's address, check that the tunnel runs.")


def test_flags_that_point_nowhere(tmp_path: Path, start_webhook: Callable[..., str]) -> None:
    no_stack = ["--env-file", str(tmp_path / "none.env")]
    port = free_port()
    assert make_call("--relay", f"ws://127.0.0.1:{port}", *no_stack) == [
        f"make call: nothing answers at ws://127.0.0.1:{port}/twilio/realtime (connection refused).",
        "Check the --relay address, and that a relay runs there (make run starts one)."]
    assert make_call("--webhook", f"http://127.0.0.1:{port}", *no_stack)[1] == (
        "Check the --webhook address, and that a webhook runs there (make run starts one).")
    webhook = start_webhook(f"ws://127.0.0.1:{port}")  # signed with another token than the webhook's
    assert make_call("--webhook", webhook, *no_stack)[0] == (
        f"make call: the webhook at {webhook} refused the call's signature (HTTP 403).")
