"""``make run`` and ``make call`` as a newcomer runs them: ``make`` itself, the whole stack in
subprocesses (stand-in model, relay and webhook under gunicorn, softphone, example tool, report
receiver, Twilio REST stand-in) on free ports, a simulated call that starts at the webhook, and
the first mistakes (the stack started twice, a port taken, Ctrl-C) answered in plain lines."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from scripts import ports
from scripts.fakes.example_tool import ExampleTool
from scripts.stack_env import DEFAULT_PORTS, EXAMPLE_ASSISTANT, FLAGS, stack_environment, tool_urls, write_env_file
from tests.conftest import ROOT, free_port

OURS = ("OPENAI_", "RELAY_", "TWILIO_", "STREAM_", "WEBHOOK_", "DIAGNOSTIC_", "ASSISTANT_", "CALL_REPORT_")
MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def clean_env() -> dict[str, str]:
    """The environment of a newcomer who has set nothing: the stand-in model, generated secrets."""
    return {k: v for k, v in os.environ.items() if not k.startswith(OURS)}


def free_ports() -> dict[str, int]:
    return {part: free_port() for part in DEFAULT_PORTS}


def port_args(chosen: dict[str, int], env_file: Path) -> list[str]:
    args = [f"--env-file={env_file}"]
    for part, port in chosen.items():
        args.append(f"{FLAGS[part]}={port}")
    return args


def make(target: str, **variables: str) -> list[str]:
    """``make <target> NAME=value...``, with this interpreter and without reinstalling the virtualenv."""
    assert MAKE is not None
    return [MAKE, "--no-print-directory", "-o", ".venv/.runtime", "-o", ".venv/.python-ok", f"PY={sys.executable}",
            target, *(f"{name}={value}" for name, value in variables.items())]


def local_stack(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m scripts.local_stack`` run to its end (for the mistakes that stop it at once)."""
    return subprocess.run([sys.executable, "-m", "scripts.local_stack", *args], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=60)


def plain_lines(completed: subprocess.CompletedProcess[str]) -> list[str]:
    """A mistake's answer: non-zero, no traceback, one or two lines on stderr, nothing on stdout."""
    assert completed.returncode != 0, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr and completed.stdout == "", completed.stdout + completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, completed.stderr
    return lines


class Running:
    """``make run`` in its own session (a terminal's process group), its output in a file."""

    def __init__(self, tmp_path: Path, chosen: dict[str, int]) -> None:
        self.env_file = tmp_path / "stack.env"
        self.log_path = tmp_path / "stack.log"
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(make("run", RUN_ARGS=" ".join(port_args(chosen, self.env_file))),
                                            cwd=ROOT, env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            assert self.process.poll() is None and time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def ctrl_c(self) -> int:
        """What a terminal does on Ctrl-C: SIGINT to its foreground process group (make and make run)."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Running, dict[str, int]]]:
    chosen = free_ports()
    stack = Running(tmp_path, chosen)
    try:
        yield stack, chosen
    finally:
        stack.kill()


def stereo_44k_wav(path: Path) -> Path:
    """A laptop recording's format: 44.1 kHz stereo, a 440 Hz tone for two seconds."""
    frames = bytearray()
    for i in range(88200):
        value = int(12000 * math.sin(2 * math.pi * 440 * i / 44100))
        frames += value.to_bytes(2, "little", signed=True) * 2
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(bytes(frames))
    return path


@needs_make
def test_make_run_then_make_call_hears_the_assistant(running: tuple[Running, dict[str, int]],
                                                     tmp_path: Path) -> None:
    stack, chosen = running
    stack.wait_for("Ctrl-C stops everything.")
    banner = stack.log().split("Liveline is running:", 1)[1]
    for part, port in chosen.items():  # every address, in one block (the softphone serves Twilio's REST API)
        if part != "twilio-api":
            assert f"127.0.0.1:{port}" in banner, (part, banner)
    assert "the LOCAL STAND-IN, not OpenAI" in banner
    call = subprocess.run(
        make("call", CALL_ARGS=f"--env-file={stack.env_file} --hold=3 --out={tmp_path / 'heard.wav'} "
                               f"--wav={stereo_44k_wav(tmp_path / 'laptop.wav')}"),
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=90)
    assert call.returncode == 0, call.stdout + call.stderr
    assert "caller's words: laptop.wav: 44.1 kHz stereo 16-bit PCM, converted to 8 kHz mono mu-law" in call.stdout
    assert "first assistant audio" in call.stdout
    assert f"via webhook http://127.0.0.1:{chosen['webhook']}/twilio/voice" in call.stdout
    assert (tmp_path / "heard.wav").stat().st_size > 10_000
    call_sid = re.search(r"^call (CA\w+)", call.stdout, re.M)
    assert call_sid is not None, call.stdout
    stack.wait_for(f"| ── call {call_sid.group(1)}", 15)  # the report receiver printed its record
    text = stack.log()
    assert "LOCAL STAND-IN MODEL" in text  # said loudly when there is no OpenAI key
    assert re.search(r"^relay +\| ", text, re.M) and "call.first_audio" in text
    assert "relay.openai_upstream upstream='local'" in text  # and by the relay itself

    assert stack.ctrl_c() in (0, -signal.SIGINT)
    lines = stack.log().rstrip().splitlines()
    assert lines[-1] == "Liveline stopped.", lines[-5:]
    assert "Traceback" not in stack.log() and "KeyboardInterrupt" not in stack.log()
    assert "make: ***" not in stack.log()
    assert ports.check(chosen) == [], "every part stopped with make run"


@needs_make
def test_ctrl_c_while_the_stack_starts_is_a_clean_stop(running: tuple[Running, dict[str, int]]) -> None:
    stack, _ = running
    stack.wait_for("Starting gunicorn", 30)  # a part is booting; the stack is not yet up
    assert stack.ctrl_c() in (0, -signal.SIGINT)
    text = stack.log()
    assert "Liveline is running" not in text, "Ctrl-C came after start-up: this test missed its window"
    assert text.rstrip().splitlines()[-1] == "Liveline stopped."
    assert "did not come up" not in text and "Traceback" not in text and "KeyboardInterrupt" not in text


@needs_make
def test_make_run_twice_and_a_port_another_stack_holds(running: tuple[Running, dict[str, int]],
                                                       tmp_path: Path) -> None:
    stack, chosen = running
    stack.wait_for("Ctrl-C stops everything.")
    pid = stack.env_file.with_name("stack.env.lock").read_text().strip()

    first, second = plain_lines(local_stack(*port_args(chosen, stack.env_file)))
    assert first == f"make run: Liveline is already running for {stack.env_file} (pid {pid})."
    assert second == (f"Use it (make call, the softphone at http://127.0.0.1:{chosen['softphone']}/), or stop it "
                      f"first: Ctrl-C in its terminal, or kill {pid}.")

    other = tmp_path / "other" / "stack.env"  # another stack, on the same relay port
    first, second = plain_lines(local_stack(*port_args({**free_ports(), "relay": chosen["relay"]}, other)))
    assert first.startswith(f"make run: port {chosen['relay']} (relay) is taken by another Liveline stack's relay "
                            f"(pid ")
    assert f"started in {ROOT}" in first
    assert second.startswith('Stop that stack (Ctrl-C in its terminal), or choose other ports: '
                             'make run RUN_ARGS="--relay-port ')
    assert not other.exists(), "nothing is written before the ports are checked"


def test_a_port_taken_by_another_program_is_named_before_anything_starts(tmp_path: Path) -> None:
    chosen = free_ports()
    with socket.socket() as listener:  # this test process plays the other program
        listener.bind(("127.0.0.1", chosen["webhook"]))
        listener.listen()
        completed = local_stack(*port_args(chosen, tmp_path / "stack.env"))
    first, second = plain_lines(completed)
    assert first.startswith(f"make run: port {chosen['webhook']} (webhook) is taken by ")
    assert f"(pid {os.getpid()}: " in first
    suggested = re.fullmatch(r'Stop it, or choose other ports: make run RUN_ARGS="--webhook-port (\d+)" '
                             r'\(make call and the softphone follow\)\.', second)
    assert suggested is not None, second
    assert ports.bind_problem(int(suggested.group(1))) is None
    assert ports.check(chosen) == [], "nothing was started"


def test_ports_are_checked_for_range_and_clashes(tmp_path: Path) -> None:
    chosen = free_ports()
    clash = local_stack(*port_args({**chosen, "tool": chosen["relay"]}, tmp_path / "stack.env"))
    assert clash.returncode == 2 and "--relay-port and --tool-port are both" in clash.stderr
    assert "Traceback" not in clash.stderr
    out_of_range = local_stack("--relay-port=70000", f"--env-file={tmp_path / 'stack.env'}")
    assert out_of_range.returncode == 2 and "--relay-port 70000: a port is 1 to 65535" in out_of_range.stderr


# -- the environment every part gets ---------------------------------------------------------------


def test_the_local_secrets_are_private_from_the_first_byte(tmp_path: Path) -> None:
    env_file = tmp_path / ".local" / "stack.env"
    old_umask = os.umask(0)  # the most permissive umask: the modes must not come from it
    try:
        write_env_file(env_file, stack_environment({}, DEFAULT_PORTS, env_file))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(env_file.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    text = env_file.read_text()
    assert "STREAM_TOKEN_SECRET=" in text
    signing = re.search(r"^RELAY_SIGNING_SECRET=(\S+)$", text, re.M)
    assert signing is not None and len(signing.group(1)) >= 32

    env_file.chmod(0o644)  # left readable by an older run: rewriting it closes it again
    again = stack_environment({}, DEFAULT_PORTS, env_file)
    write_env_file(env_file, again)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert again.env["RELAY_SIGNING_SECRET"] == signing.group(1), "generated once, then kept"


def test_the_parts_and_their_addresses(tmp_path: Path) -> None:
    stack = stack_environment({}, DEFAULT_PORTS, tmp_path / "stack.env")
    assert set(stack.ports) == set(DEFAULT_PORTS) - {"twilio-api"}, "the softphone's gateway plays Twilio's API"
    assert stack.env["ASSISTANT_CONFIG"] == str(EXAMPLE_ASSISTANT)
    assert stack.env["CALL_REPORT_URL"] == "http://127.0.0.1:8092/calls"
    assert stack.env["TWILIO_API_BASE_URL"] == "http://127.0.0.1:8070"
    no_softphone = stack_environment({}, {**DEFAULT_PORTS, "softphone": 0}, tmp_path / "stack.env")
    assert no_softphone.env["TWILIO_API_BASE_URL"] == "http://127.0.0.1:8093" and "twilio-api" in no_softphone.ports
    assert stack.env["OPENAI_REALTIME_URL"] == "ws://127.0.0.1:8765/v1/realtime"

    with_key = stack_environment({"OPENAI_API_KEY": "sk-x", "ASSISTANT_CONFIG": "/srv/mine.toml",
                                  "CALL_REPORT_URL": "https://reports.example.com/in"}, DEFAULT_PORTS,
                                 tmp_path / "stack.env")
    assert not {"stand-in", "tool", "reports"} & set(with_key.ports), "theirs, not ours"
    assert "OPENAI_REALTIME_URL" not in with_key.env

    # Through a tunnel, calls come from the real Twilio: hang-ups and transfers go to its real REST API.
    tunnel = stack_environment({"RELAY_PUBLIC_URL": "wss://relay-demo.trycloudflare.com"}, DEFAULT_PORTS,
                               tmp_path / "stack.env")
    assert "twilio-api" not in tunnel.ports and "TWILIO_API_BASE_URL" not in tunnel.env


def test_the_example_assistant_names_the_example_tool_on_its_port(tmp_path: Path) -> None:
    (url,) = tool_urls(EXAMPLE_ASSISTANT)
    tool = ExampleTool("s" * 32, port=DEFAULT_PORTS["tool"])
    assert url == tool.url, "scripts/assets/assistant.local.toml and the example tool agree"

    elsewhere = stack_environment({}, {**DEFAULT_PORTS, "tool": 18091}, tmp_path / "stack.env")
    copy = Path(elsewhere.env["ASSISTANT_CONFIG"])
    assert copy.parent == tmp_path and stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert [urlsplit(u).port for u in tool_urls(copy)] == [18091]


def test_the_phone_guide_names_what_make_run_serves() -> None:
    """docs/phone.md and the README's commands tunnel make run's own ports and paths (they drift otherwise)."""
    guide, readme = (ROOT / "docs" / "phone.md").read_text(), (ROOT / "README.md").read_text()
    policy = (ROOT / "docs" / "ngrok-policy.yml").read_text()
    for text in (guide, readme):
        for part in ("webhook", "relay"):
            assert f"cloudflared tunnel --url http://127.0.0.1:{DEFAULT_PORTS[part]}" in text, part
        assert "--env-file .local/stack.env" in text and "/twilio/voice" in text
    assert f"ngrok http 127.0.0.1:{DEFAULT_PORTS['relay']} --url https://liveline-relay.internal" in guide
    assert f"ngrok http 127.0.0.1:{DEFAULT_PORTS['webhook']} --traffic-policy-file docs/ngrok-policy.yml" in guide
    assert "req.url.path == '/twilio/realtime'" in policy and "url: https://liveline-relay.internal" in policy
    public = {"RELAY_PUBLIC_URL": "wss://relay-demo.trycloudflare.com",
              "WEBHOOK_PUBLIC_URL": "https://hooks-demo.trycloudflare.com", "TWILIO_AUTH_TOKEN": "real-token-0123"}
    env = stack_environment(public, DEFAULT_PORTS, ROOT / "nowhere" / "stack.env").env
    assert {name: env[name] for name in public} == public, "make run keeps the tunnel's addresses and the token"
