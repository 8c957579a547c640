"""``make call`` (scripts/call.py, in a subprocess with real threads) against a relay whose peers are
stand-ins: its timeline shows the tool call, the hang-up or the transfer when the assistant does
them, and it ends by saying where the call's record went, read back from the report receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from scripts.fakes.openai import Scenario, Script
from tests.conftest import AUTH_TOKEN, ROOT, STREAM_SECRET
from tests.e2e.conftest import LINES, WORDS, Stack

E2E = Callable[..., Stack]


def make_call(stack: Stack, tmp_path: Path, *, rest: bool = True,
              reports: bool = True) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "stack.env"
    lines = [f"TWILIO_AUTH_TOKEN={AUTH_TOKEN}", f"STREAM_TOKEN_SECRET={STREAM_SECRET}"]
    if rest:
        lines.append(f"TWILIO_API_BASE_URL={stack.rest.base_url}")
    if reports:
        lines.append(f"CALL_REPORT_URL={stack.receiver.url}")
    env_file.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "RELAY_", "TWILIO_", "STREAM_", "WEBHOOK_", "DIAGNOSTIC_", "CALL_"))}
    return subprocess.run([sys.executable, "-m", "scripts.call", "--relay", stack.relay.ws_url, "--env-file",
                           str(env_file), "--hold", "12", "--out", str(tmp_path / "heard.wav")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_the_timeline_shows_the_tool_call_and_the_hang_up_and_where_the_record_went(
        e2e: E2E, tmp_path: Path) -> None:
    stack = e2e(Script(lines=LINES))
    done = make_call(stack, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for line in ("record: tool call lookup_order: ok in", f"record: caller: {WORDS}",
                 f"record: assistant: {LINES.goodbye.text}",
                 "the assistant hung up: Twilio's REST API got Status=completed", "Twilio ends the stream (stop)",
                 "ended by the assistant (through Twilio's REST API)",
                 f"call record: delivered to {stack.receiver.url}, signed (5 turns, 1 tool call(s), "
                 "ended: assistant_hangup)"):
        assert line in out, f"{line!r} missing from:\n{out}"
    timeline = [line for line in out.splitlines() if " ms  " in line]
    order = ["record: caller:", "record: tool call", "record: assistant: " + LINES.answer.text, "hung up"]
    positions = [next(i for i, line in enumerate(timeline) if marker in line) for marker in order]
    assert positions == sorted(positions), "\n".join(timeline)
    assert (tmp_path / "heard.wav").stat().st_size > 10_000


def test_a_transfer_shows_in_the_timeline(e2e: E2E, tmp_path: Path) -> None:
    stack = e2e(Script(then="transfer_call", lines=LINES))
    done = make_call(stack, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the assistant transferred the call to +15550100001 (Twilio's REST API got <Dial>)" in done.stdout
    assert "record: transfer to sales: placed" in done.stdout


def test_without_a_report_url_or_a_rest_stand_in_it_says_so(e2e: E2E, tmp_path: Path) -> None:
    stack = e2e(Scenario())
    done = make_call(stack, tmp_path, rest=False, reports=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "call record: no CALL_REPORT_URL is set, so the relay kept no record of this call" in done.stdout
    assert "Twilio's REST API: TWILIO_API_BASE_URL is not set" in done.stdout
    assert "record:" not in done.stdout.replace("call record:", "")


def test_a_report_receiver_that_is_not_running_is_named(e2e: E2E, tmp_path: Path) -> None:
    stack = e2e(Scenario())
    stack.receiver.stop()
    done = make_call(stack, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"call record: could not read {stack.receiver.url}/" in done.stdout
    assert "is the report receiver running?" in done.stdout and "Traceback" not in done.stdout + done.stderr
