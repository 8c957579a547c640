"""``make run``: the whole call path on this machine, no accounts needed.

Starts, as separate processes, exactly what production runs:

- the relay: ``gunicorn -c relay/gunicorn.conf.py relay.wsgi:app`` on 127.0.0.1:8080;
- the webhook: ``gunicorn webhook_app.wsgi:app`` on 127.0.0.1:5050;
- when OPENAI_API_KEY is unset, the stand-in Realtime model on 127.0.0.1:8765, with the
  relay pointed at it (and a loud notice saying so).

Secrets the local stack needs (a Twilio auth token to sign with, the stream token secret,
the diagnostic token) are generated once and kept in ``.local/stack.env``, which
``make call`` and the verify scripts read. Values already in the environment win.
Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from scripts.verify import settings

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = settings.DEFAULT_ENV_FILE
GENERATED = ("TWILIO_AUTH_TOKEN", "STREAM_TOKEN_SECRET", "DIAGNOSTIC_TOKEN")


def stack_environment(base: dict[str, str], *, relay_port: int, webhook_port: int,
                      standin_port: int, env_file: Path = ENV_FILE) -> tuple[dict[str, str], bool]:
    """The environment for every process, and whether the stand-in model is needed."""
    saved = settings.read_env_file(env_file) if env_file.exists() else {}
    env = dict(base)
    for name in GENERATED:
        if not env.get(name):
            env[name] = saved.get(name) or secrets.token_urlsafe(32)
    use_standin = not env.get("OPENAI_API_KEY")
    if use_standin:
        env["OPENAI_API_KEY"] = "sk-local-standin"
        env["OPENAI_REALTIME_URL"] = f"ws://127.0.0.1:{standin_port}/v1/realtime"
    env.setdefault("RELAY_BIND", f"127.0.0.1:{relay_port}")
    env.setdefault("RELAY_PUBLIC_URL", f"ws://127.0.0.1:{relay_port}")
    env.setdefault("RELAY_WORKERS", "1")
    env.setdefault("WEBHOOK_PUBLIC_URL", f"http://127.0.0.1:{webhook_port}")
    env["PYTHONPATH"] = str(ROOT)
    lines = [f"{name}={env[name]}" for name in GENERATED]
    lines += [
        f"RELAY_URL=http://127.0.0.1:{relay_port}",
        f"RELAY_PUBLIC_URL={env['RELAY_PUBLIC_URL']}",
        f"WEBHOOK_URL=http://127.0.0.1:{webhook_port}",
        f"WEBHOOK_PUBLIC_URL={env['WEBHOOK_PUBLIC_URL']}",
    ]
    _write_private(env_file, "# written by make run (scripts/local_stack.py); local secrets only\n"
                   + "\n".join(lines) + "\n")
    return env, use_standin


def _write_private(path: Path, text: str) -> None:
    """Write secrets readable by this user only, from the first byte: a 0600 file in a 0700 folder."""
    created = not path.parent.exists()
    if created:
        path.parent.mkdir(mode=0o700, parents=True)
    if created or path.parent == ENV_FILE.parent:  # whatever the umask; an older run made .local/ 0755
        path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # a file left from an older run may have been 0644
        out.write(text)


def wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes]) -> bool:
    """Poll ``url`` until it answers (any status) or the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.1)
    return False


def main(argv: list[str] | None = None) -> int:
    """Start the stack and keep it up until interrupted."""
    parser = argparse.ArgumentParser(description="Run the local Liveline stack.")
    parser.add_argument("--relay-port", type=int, default=8080)
    parser.add_argument("--webhook-port", type=int, default=5050)
    parser.add_argument("--standin-port", type=int, default=8765)
    parser.add_argument("--softphone-port", type=int, default=8070, help="the softphone page (0: none)")
    parser.add_argument("--env-file", type=Path, default=ENV_FILE,
                        help="where to keep the local secrets and URLs (make call reads it)")
    args = parser.parse_args(argv)

    env, use_standin = stack_environment(dict(os.environ), relay_port=args.relay_port,
                                         webhook_port=args.webhook_port,
                                         standin_port=args.standin_port, env_file=args.env_file)
    python = sys.executable
    gunicorn = [python, "-m", "gunicorn"]
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def stop(*_: object) -> None:
        for _name, proc in reversed(processes):
            if proc.poll() is None:
                proc.terminate()
        for _name, proc in processes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()

    # Ctrl-C reaches the children too: once it is pressed their exit is expected.
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        if use_standin:
            print("=" * 78)
            print("  OPENAI_API_KEY is not set: the relay talks to the LOCAL STAND-IN MODEL")
            print(f"  (ws://127.0.0.1:{args.standin_port}/v1/realtime). It greets you and plays")
            print("  back what you say. Export OPENAI_API_KEY to talk to the real gpt-realtime.")
            print("=" * 78, flush=True)
            processes.append(("stand-in model", subprocess.Popen(
                [python, "-m", "scripts.fakes.openai", "--port", str(args.standin_port)],
                cwd=ROOT, env=env)))
        processes.append(("relay", subprocess.Popen(
            [*gunicorn, "-c", "relay/gunicorn.conf.py", "relay.wsgi:app"], cwd=ROOT, env=env)))
        if (ROOT / "webhook_app" / "wsgi.py").exists():
            processes.append(("webhook", subprocess.Popen(
                [*gunicorn, "--no-control-socket", "-b", f"127.0.0.1:{args.webhook_port}",
                 "webhook_app.wsgi:app"], cwd=ROOT, env=env)))
        checks = {"relay": f"http://127.0.0.1:{args.relay_port}/healthz",
                  "webhook": f"http://127.0.0.1:{args.webhook_port}/healthz"}
        if args.softphone_port:  # the browser softphone: a local stand-in for Twilio (scripts/softphone)
            processes.append(("softphone", subprocess.Popen(
                [python, "-m", "scripts.softphone", "--port", str(args.softphone_port),
                 "--webhook", f"http://127.0.0.1:{args.webhook_port}", "--env-file", str(args.env_file)],
                cwd=ROOT, env=env)))
            checks["softphone"] = f"http://127.0.0.1:{args.softphone_port}/healthz"
        for name, proc in processes:
            if name in checks and not wait_http(checks[name], 30, proc):
                if stopping.is_set():  # Ctrl-C while starting: the children exited on it too
                    return 0
                print(f"\n{name} did not come up: see its error above.", file=sys.stderr)
                return 1
        softphone = (f"  softphone http://127.0.0.1:{args.softphone_port}/   (open it in a browser: click Call "
                     f"and talk)\n" if args.softphone_port else "")
        print(f"""
Liveline is running:
  relay     ws://127.0.0.1:{args.relay_port}/twilio/realtime   (health: http://127.0.0.1:{args.relay_port}/healthz)
  webhook   http://127.0.0.1:{args.webhook_port}/twilio/voice
  secrets   {args.env_file}
{softphone}Place a simulated call from another terminal:   make call
Check the relay path:   .venv/bin/python scripts/verify_relay.py http://127.0.0.1:{args.relay_port}
Ctrl-C stops everything.
""", flush=True)
        while not stopping.is_set():
            for name, proc in processes:
                if proc.poll() is not None and not stopping.is_set():
                    print(f"{name} exited with status {proc.returncode}; stopping the stack.",
                          file=sys.stderr)
                    return 1
            time.sleep(0.2)
        print("\nstopping...", flush=True)
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
