"""``make run``: the whole call path on this machine, no accounts needed.

Starts, as separate processes on 127.0.0.1, exactly what production runs, and what it talks to
(scripts/stack_env.py lists the parts, their ports and their environment):

- the relay: ``gunicorn -c relay/gunicorn.conf.py relay.wsgi:app``, and the webhook under gunicorn;
- the softphone page, to talk to the assistant from a browser;
- when OPENAI_API_KEY is unset, the stand-in Realtime model (and a loud notice saying so);
- the example assistant's tool, a receiver printing each call's report, and a stand-in for
  Twilio's REST API (hang-ups and transfers).

Before anything starts, it checks that no other ``make run`` uses the same ``.local/stack.env``
and that every port is free, naming the program that holds a taken one. Each part's output is
shown with its name in front (``relay     | ...``). Ctrl-C stops everything: the parts run in
process groups of their own, so the terminal's Ctrl-C reaches this process alone, which stops
them and says "Liveline stopped." (nothing else). Errors are one or two plain lines and a
non-zero exit status.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from scripts import ports as port_check
from scripts.fakes.openai.scenarios import SCENARIOS
from scripts.stack_env import DEFAULT_PORTS, ENV_FILE, FLAGS, ROOT, Stack, stack_environment, write_env_file
from scripts.verify.settings import read_env_file

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0


@dataclass
class Part:
    """One process of the stack."""

    name: str
    command: list[str]
    ready_url: str | None  # answers (any HTTP status) once the part is up; None: its port accepts connections
    port: int = 0
    stop_signal: int = signal.SIGTERM
    process: subprocess.Popen[bytes] | None = None


# What the stand-in model acts out: a tool call after the caller's first words, its answer, then a goodbye
# and a hang-up, so that make call and the softphone show an assistant that acts (--scenario changes it).
DEFAULT_SCENARIO = "order-hangup"


def _is_local(url: str) -> bool:
    return url.startswith(("http://127.0.0.1", "http://localhost"))


def parts(stack: Stack, env_file: Path, scenario: str = DEFAULT_SCENARIO) -> list[Part]:
    """What to start, dependencies first."""
    python = sys.executable
    gunicorn = [python, "-m", "gunicorn"]
    found: list[Part] = []

    def fake(name: str, module: str, *extra: str) -> None:
        if name in stack.ports:  # ready once its port accepts: a request would only print a refusal there
            port = stack.ports[name]
            found.append(Part(name, [python, "-m", module, "--port", str(port), *extra], None, port=port))

    fake("stand-in", "scripts.fakes.openai", "--scenario", scenario)
    fake("tool", "scripts.fakes.example_tool")
    fake("reports", "scripts.fakes.report_receiver")
    fake("twilio-api", "scripts.fakes.twilio_rest_api")
    # gunicorn: SIGINT is its quick shutdown (SIGTERM would wait for live calls, up to an hour).
    found.append(Part("relay", [*gunicorn, "-c", "relay/gunicorn.conf.py", "relay.wsgi:app"],
                      stack.url("relay", "/healthz"), signal.SIGINT))
    found.append(Part("webhook", [*gunicorn, "--no-control-socket", "-b", f"127.0.0.1:{stack.ports['webhook']}",
                                  "webhook_app.wsgi:app"], stack.url("webhook", "/healthz"), signal.SIGINT))
    if "softphone" in stack.ports:
        found.append(Part("softphone", [python, "-m", "scripts.softphone", "--port", str(stack.ports["softphone"]),
                                        "--webhook", stack.url("webhook"), "--env-file", str(env_file)],
                          stack.url("softphone", "/healthz")))
    return found


# -- the checks before anything starts ---------------------------------------------------------------


def hold_lock(env_file: Path) -> int | str:
    """Hold make run's lock for ``env_file`` (kept until exit): the descriptor, or the holder's pid."""
    env_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(env_file.with_name(env_file.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        return holder
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def already_running(pid: str, env_file: Path) -> str:
    """Two plain lines for ``make run`` twice."""
    saved = read_env_file(env_file) if env_file.is_file() else {}
    where = f", the softphone at {saved['SOFTPHONE_URL']}" if saved.get("SOFTPHONE_URL") else ""
    return (f"make run: Liveline is already running for {_shown(env_file)} (pid {pid}).\n"
            f"Use it (make call{where}), or stop it first: Ctrl-C in its terminal, or kill {pid}.")


def taken_ports(taken: list[port_check.Taken], ports: dict[str, int]) -> str:
    """Two plain lines: which ports are taken by what, and the command with free ones."""
    used = set(ports.values())
    choices = []
    for item in taken:
        port = port_check.free_near(item.port, used)
        used.add(port)
        choices.append(f"{FLAGS[item.role]} {port}")
    ours = any("Liveline" in (item.holder or "") for item in taken)
    stop = "Stop that stack (Ctrl-C in its terminal)" if ours else "Stop it"
    return (f"make run: {'; '.join(item.describe() for item in taken)}.\n"
            f"{stop}, or choose other ports: make run RUN_ARGS=\"{' '.join(choices)}\" "
            f"(make call and the softphone follow).")


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# -- running the parts ---------------------------------------------------------------------------------


class Stopping:
    """Set by the signal handlers.

    Not a threading.Event: its set() takes a lock that the main thread, interrupted inside
    Event.wait, may already hold.
    """

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        """Ask the stack to stop (from a signal handler)."""
        self.requested = True

    def is_set(self) -> bool:
        """Whether stopping was asked for."""
        return self.requested

    def wait(self, seconds: float) -> None:
        """Sleep, unless stopping was asked for."""
        if not self.requested:
            time.sleep(seconds)


class Output:
    """Each part's lines, shown with its name in front, until the stack stops."""

    def __init__(self, names: list[str]) -> None:
        self.width = max(map(len, names), default=0)
        self.lock = threading.Lock()
        self.quiet = False  # stopping: the parts' last words are not shown

    def forward(self, name: str, stream: IO[bytes]) -> None:
        """Copy ``stream`` line by line (a thread per part)."""
        for raw in iter(stream.readline, b""):
            if not self.quiet:
                self.say(f"{name:<{self.width}} | {raw.decode(errors='replace').rstrip()}")

    def say(self, text: str, *, err: bool = False) -> None:
        """One line of make run's own, or of a part."""
        with self.lock:
            print(text, file=sys.stderr if err else sys.stdout, flush=True)


def _die_with_parent() -> None:
    """In a part, before it runs: end when make run ends, even if make run is killed outright (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start(part: Part, env: dict[str, str]) -> None:
    """Start a part in a process group of its own: the terminal's Ctrl-C is make run's to handle."""
    part.process = subprocess.Popen(part.command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0,
                                    preexec_fn=_die_with_parent)


def wait_ready(part: Part, deadline: float, stopping: Stopping) -> bool:
    """Poll the part's URL until it answers (any status); False if it exits, time runs out or we stop."""
    assert part.process is not None
    while time.monotonic() < deadline and not stopping.is_set():
        if part.process.poll() is not None:
            return False
        try:
            if part.ready_url is None:
                socket.create_connection(("127.0.0.1", part.port), timeout=1).close()
                return True
            with urllib.request.urlopen(part.ready_url, timeout=1):
                return True
        except urllib.error.HTTPError as exc:
            exc.close()
            return True
        except OSError:
            stopping.wait(0.1)
    return False


def stop(running: list[Part], output: Output) -> None:
    """Stop every part, quietly: gunicorn quickly (SIGINT), the others with SIGTERM; kill what lingers."""
    output.quiet = True
    for part in reversed(running):
        if part.process is not None and part.process.poll() is None:
            part.process.send_signal(part.stop_signal)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for part in running:
        if part.process is None:
            continue
        try:
            part.process.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            part.process.kill()
            part.process.wait()


def banner(stack: Stack, env_file: Path) -> str:
    """Every address, in a short block."""
    env = stack.env
    rows = [("relay", f"{stack.url('relay', '/twilio/realtime', 'ws')}", f"health {stack.url('relay', '/healthz')}"),
            ("webhook", stack.url("webhook", "/twilio/voice"), "")]
    if "softphone" in stack.ports:
        rows.append(("softphone", stack.url("softphone", "/"), "open it in a browser: click Call and talk"))
    if stack.standin:
        rows.append(("model", env["OPENAI_REALTIME_URL"], "the LOCAL STAND-IN, not OpenAI"))
    else:
        rows.append(("model", env.get("OPENAI_REALTIME_URL", "wss://api.openai.com/v1/realtime"), "OpenAI"))
    if "tool" in stack.ports:
        rows.append(("tool", stack.url("tool", "/lookup_order"), f"assistant: {_shown(Path(env['ASSISTANT_CONFIG']))}"))
    else:
        rows.append(("assistant", env["ASSISTANT_CONFIG"], "yours (ASSISTANT_CONFIG)"))
    rows.append(("call reports", env["CALL_REPORT_URL"], "printed here as calls end" if "reports" in stack.ports
                 else "yours (CALL_REPORT_URL)"))
    rest = env.get("TWILIO_API_BASE_URL", "https://api.twilio.com")
    rows.append(("Twilio REST", rest, "stand-in: hang-ups and transfers" if _is_local(rest)
                 else "the real one, for real calls"))
    if env["RELAY_PUBLIC_URL"] != stack.url("relay", scheme="ws"):
        rows.append(("public relay", env["RELAY_PUBLIC_URL"] + "/twilio/realtime", "RELAY_PUBLIC_URL"))
    if env["WEBHOOK_PUBLIC_URL"] != stack.url("webhook"):
        rows.append(("public webhook", env["WEBHOOK_PUBLIC_URL"] + "/twilio/voice", "the number's webhook"))
    rows.append(("secrets", _shown(env_file), ""))
    width = max(len(row[0]) for row in rows)
    url_width = max(len(row[1]) for row in rows)
    lines = [f"  {name:<{width}}  {url:<{url_width}}  {note}".rstrip() for name, url, note in rows]
    return "\n".join(["", "Liveline is running:", *lines,
                      "Place a simulated call from another terminal:  make call",
                      f"Check the relay:  .venv/bin/python scripts/verify_relay.py {stack.url('relay')}",
                      "Ctrl-C stops everything.", ""])


STANDIN_NOTICE = """{rule}
  OPENAI_API_KEY is not set: the relay talks to the LOCAL STAND-IN MODEL
  at {url}, a scripted imitation.
  Export OPENAI_API_KEY and restart make run to talk to the real gpt-realtime.
{rule}"""


def main(argv: list[str] | None = None) -> int:
    """Start the stack and keep it up until interrupted."""
    parser = argparse.ArgumentParser(prog="make run RUN_ARGS=...", description="Run the local Liveline stack.")
    for part, port in DEFAULT_PORTS.items():
        extra = " (0: none)" if part == "softphone" else ""
        parser.add_argument(FLAGS[part], dest=part, type=int, default=port, metavar="PORT",
                            help=f"the {part}'s port on 127.0.0.1 (default {port}){extra}")
    parser.add_argument("--env-file", type=Path, default=ENV_FILE,
                        help="where to keep the local secrets and URLs (make call reads it)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default=DEFAULT_SCENARIO,
                        help=f"what the stand-in model acts out without OPENAI_API_KEY (default {DEFAULT_SCENARIO})")
    args = parser.parse_args(argv)
    chosen = {part: getattr(args, part) for part in DEFAULT_PORTS}
    for part, port in chosen.items():
        if not (0 if part == "softphone" else 1) <= port <= 65535:
            parser.error(f"{FLAGS[part]} {port}: a port is 1 to 65535")
    seen: dict[int, str] = {}
    for part, port in chosen.items():
        if port and port in seen:
            parser.error(f"{FLAGS[seen[port]]} and {FLAGS[part]} are both {port}: give each part its own port")
        seen[port] = part

    lock = hold_lock(args.env_file)
    if isinstance(lock, str):
        print(already_running(lock, args.env_file), file=sys.stderr)
        return 1
    try:
        stack = stack_environment(dict(os.environ), chosen, args.env_file)
    except ValueError as exc:  # the example assistant file does not match its tool's port
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    taken = port_check.check(stack.ports)
    if taken:
        print(taken_ports(taken, stack.ports), file=sys.stderr)
        return 1
    write_env_file(args.env_file, stack)
    return run(stack, args.env_file, args.scenario)


def run(stack: Stack, env_file: Path, scenario: str = DEFAULT_SCENARIO) -> int:
    """Start the parts, say where they are, and keep them up until Ctrl-C or one of them exits."""
    stopping = Stopping()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())
    running = parts(stack, env_file, scenario)
    output = Output([part.name for part in running])
    if stack.standin:
        output.say(STANDIN_NOTICE.format(rule="=" * 78, url=stack.env["OPENAI_REALTIME_URL"]))
    try:
        for part in running:  # every process first: no thread is running while they fork
            start(part, stack.env)
        for part in running:
            assert part.process is not None and part.process.stdout is not None
            threading.Thread(target=output.forward, args=(part.name, part.process.stdout), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        for part in running:
            if not wait_ready(part, deadline, stopping):
                if stopping.is_set():
                    break
                assert part.process is not None
                status = part.process.poll()
                why = f"exited with status {status}" if status is not None else \
                    f"did not answer within {READY_TIMEOUT_S:g} s"
                output.say(f"make run: the {part.name} {why} while starting: its lines above ({part.name} | ...) "
                           f"say why.", err=True)
                return 1
        else:
            output.say(banner(stack, env_file))
        while not stopping.is_set():
            for part in running:
                assert part.process is not None
                if part.process.poll() is not None and not stopping.is_set():
                    output.say(f"make run: the {part.name} exited with status {part.process.returncode}; "
                               f"stopping the stack (its lines above say why).", err=True)
                    return 1
            stopping.wait(0.2)
        stop(running, output)
        output.say("\nLiveline stopped.")
        return 0
    finally:
        stop(running, output)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before the handlers were set
        sys.exit(130)
