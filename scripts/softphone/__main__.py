"""``python -m scripts.softphone``: serve the softphone page for a running local stack.

``make run`` starts it with the stack. Alone, it reads the webhook's address and the
local auth token from the environment, then ``.local/stack.env`` (written by make run).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - after gevent's patching, as every gevent program starts
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402

from scripts.softphone.gateway import Gateway  # noqa: E402
from scripts.softphone.incoming_call import Webhook  # noqa: E402
from scripts.softphone.phone_call import Line  # noqa: E402
from scripts.verify.settings import DEFAULT_ENV_FILE, read_env_file  # noqa: E402

DEFAULT_PORT = 8070


def settings(environ: Mapping[str, str], env_file: Path, webhook_url: str | None) -> Line:
    """The line to play, from flags, the environment and the env file; SystemExit with the fix."""
    values = {**(read_env_file(env_file) if env_file.is_file() else {}),
              **{k: v for k, v in environ.items() if v}}
    url = webhook_url or values.get("WEBHOOK_URL")
    token = values.get("TWILIO_AUTH_TOKEN")
    problems = []
    if not url:
        problems.append("no webhook address: pass --webhook http://127.0.0.1:5050 or start the stack with make run")
    if not token:
        problems.append(f"TWILIO_AUTH_TOKEN is not set (nor in {env_file}): start the stack with make run, "
                        f"which generates it")
    if problems:
        raise SystemExit("softphone: " + "; ".join(problems))
    assert url and token
    return Line(Webhook(url=url, public_url=values.get("WEBHOOK_PUBLIC_URL") or url, auth_token=token))


def main(argv: list[str] | None = None) -> int:
    """Serve the page until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Serve the softphone page (a local stand-in for Twilio).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="where the page is served, on 127.0.0.1")
    parser.add_argument("--webhook", help="the webhook's local address (default: WEBHOOK_URL)")
    parser.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE,
                        help="read TWILIO_AUTH_TOKEN and the webhook's URLs from this file too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("geventwebsocket.handler").setLevel(logging.WARNING)  # one line per request otherwise
    gateway = Gateway(settings(os.environ, args.env_file, args.webhook), port=args.port)
    try:
        gateway.start()
    except OSError as exc:
        print(f"softphone: cannot listen on 127.0.0.1:{args.port} ({exc.strerror}): "
              f"choose another port with --port", file=sys.stderr)
        return 1
    print(f"softphone on {gateway.url} (Twilio's REST API for its calls: TWILIO_API_BASE_URL={gateway.rest_api_url})",
          flush=True)
    stopping = Event()
    gevent.signal_handler(signal.SIGINT, stopping.set)
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    stopping.wait()
    gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
