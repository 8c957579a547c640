"""An example tool endpoint: ``lookup_order``, as an operator's own service would answer it.

``make run`` starts it on 127.0.0.1:8091 for scripts/assets/assistant.local.toml; tests start
it on a free port. It checks every request's ``X-Liveline-Signature`` with the lines
docs/tools.md shows a receiver (a signature that does not match, or is more than five
minutes old, gets 401), keeps what it received, and answers with an order's status.
Orders it knows: 1001 (shipped), 1002 (processing), 1003 (delivered); any other number is
answered ``{"found": false}``: a business answer is a 200, an error status is for failures.

Modes for tests: ``slow`` (answers after ``delay_s``), ``error`` (HTTP 500), ``oversized``
(a 200 body of ``oversize_bytes``), ``empty`` (HTTP 204, no body).

    python -m scripts.fakes.example_tool --port 8091 [--mode slow] [--secret ...]

The secret defaults to RELAY_SIGNING_SECRET. Independent of ``relay/``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.pywsgi import WSGIServer

MODES = ("normal", "slow", "error", "oversized", "empty")
ORDERS = {
    "1001": {"status": "shipped", "carrier": "UPS", "expected_delivery": "2026-12-18"},
    "1002": {"status": "processing", "expected_delivery": "2026-12-22"},
    "1003": {"status": "delivered", "delivered_on": "2026-12-10"},
}


# -- the receiver's check: the same lines as docs/tools.md ------------------------------------
def verify(secret: str, header: str, body: bytes, now: float, tolerance_s: float = 300) -> bool:
    """True when ``header`` (X-Liveline-Signature) signs this raw ``body``, made within ``tolerance_s``."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, signature = fields.get("t", ""), fields.get("v1", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
# ----------------------------------------------------------------------------------------------


@dataclass
class ToolRequest:
    """One request the tool received: where, what, and whether its signature held."""

    method: str
    path: str
    body: bytes
    signature_ok: bool
    content_type: str

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)


class ExampleTool:
    """The example tool on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, secret: str, *, host: str = "127.0.0.1", port: int = 0, mode: str = "normal",
                 delay_s: float = 10.0, oversize_bytes: int = 32 * 1024,
                 clock: Callable[[], float] = time.time) -> None:
        self.secret = secret
        self.host = host
        self.port = port
        self.mode = mode
        self.delay_s = delay_s
        self.oversize_bytes = oversize_bytes
        self.clock = clock
        self.requests: list[ToolRequest] = []
        self._server: WSGIServer | None = None

    @property
    def url(self) -> str:
        """The tool's URL, for an assistant file's ``url``."""
        return f"http://{self.host}:{self.port}/lookup_order"

    def start(self) -> ExampleTool:
        """Listen; ``port`` is then the real one."""
        self._server = WSGIServer((self.host, self.port), self._app, log=None)
        self._server.start()
        self.port = self._server.server_port
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.stop(timeout=1)
            self._server = None

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read()
        ok = verify(self.secret, environ.get("HTTP_X_LIVELINE_SIGNATURE", ""), body, self.clock())
        request = ToolRequest(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), body, ok,
                              environ.get("CONTENT_TYPE", ""))
        self.requests.append(request)
        status, answer = self._answer(request)
        print(f"example tool: {request.method} {request.path} -> {status.split()[0]}"
              f" (signature {'ok' if ok else 'REFUSED'})", flush=True)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
        start_response(status, headers if answer else [])
        return [answer]

    def _answer(self, request: ToolRequest) -> tuple[str, bytes]:
        if (request.method, request.path) != ("POST", "/lookup_order"):
            return "404 Not Found", b'{"error": "this tool answers POST /lookup_order"}'
        if not request.signature_ok:
            return "401 Unauthorized", b'{"error": "bad or stale X-Liveline-Signature"}'
        if self.mode == "slow":
            gevent.sleep(self.delay_s)
        elif self.mode == "error":
            return "500 Internal Server Error", b'{"error": "the order database is down"}'
        elif self.mode == "oversized":
            return "200 OK", b'"' + b"x" * (self.oversize_bytes - 2) + b'"'
        elif self.mode == "empty":
            return "204 No Content", b""
        try:
            order_id = str(request.json()["arguments"]["order_id"])
        except (ValueError, KeyError, TypeError):
            return "400 Bad Request", b'{"error": "expected {\\"arguments\\": {\\"order_id\\": ...}}"}'
        order = ORDERS.get(order_id)
        answer = {"order_id": order_id, "found": False} if order is None else \
            {"order_id": order_id, "found": True, **order}
        return "200 OK", json.dumps(answer).encode()


def main(argv: list[str] | None = None) -> int:
    """Run the example tool until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--secret", default=os.environ.get("RELAY_SIGNING_SECRET", ""),
                        help="the relay's RELAY_SIGNING_SECRET (default: from the environment)")
    args = parser.parse_args(argv)
    if not args.secret:
        print("example tool: set RELAY_SIGNING_SECRET (or --secret) to the relay's signing secret",
              file=sys.stderr)
        return 2
    tool = ExampleTool(args.secret, host=args.host, port=args.port, mode=args.mode).start()
    print(f"example tool lookup_order listening on {tool.url}", flush=True)
    try:
        gevent.wait()
    except KeyboardInterrupt:
        tool.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
