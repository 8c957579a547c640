"""A receiver for the relay's call reports (CALL_REPORT_URL), as an operator's own would be.

It checks every report's ``X-Liveline-Signature`` with the lines docs/tools.md shows a
receiver (401 if it does not match or is more than five minutes old), prints each call's
record with its transcript readable at a glance, and keeps the records for tests.
``plan(503, "slow", ...)`` sets how the next requests are answered (a status, or ``slow``:
wait ``delay_s``, then 200), so tests can watch the relay retry.

``GET /calls/{CallSid}`` answers with the last record it accepted for that call (404 until
one has come), as an operator would look a call up in their own store: ``make call`` reads
it there (``fetch_record``) to show where the call's record went. It answers only requests
addressed to its own loopback address (a web page in a browser cannot read transcripts
through DNS rebinding).

    python -m scripts.fakes.report_receiver --port 8092 [--secret ...]

The secret defaults to RELAY_SIGNING_SECRET. Independent of ``relay/``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import gevent
from gevent.event import Event
from gevent.pywsgi import WSGIServer


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

_RECORD_PATH = re.compile(r"/calls/(CA[0-9A-Za-z]{1,62})")


@dataclass
class Delivery:
    """One request: its raw body, whether the signature held, the status answered."""

    body: bytes
    signature: str
    signature_ok: bool
    status: int


class ReportReceiver:
    """The receiver on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, secret: str, *, host: str = "127.0.0.1", port: int = 0, delay_s: float = 10.0,
                 clock: Callable[[], float] = time.time, out: TextIO | None = None) -> None:
        self.secret = secret
        self.host = host
        self.port = port
        self.delay_s = delay_s
        self.clock = clock
        self.out = out
        self.deliveries: list[Delivery] = []
        self.reports: list[dict[str, Any]] = []  # the accepted ones, parsed
        self._planned: list[int | str] = []
        self._arrived = Event()
        self._server: WSGIServer | None = None

    @property
    def url(self) -> str:
        """The relay's ``CALL_REPORT_URL``."""
        return f"http://{self.host}:{self.port}/calls"

    def start(self) -> ReportReceiver:
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

    def plan(self, *answers: int | str) -> None:
        """Answer the next requests so: a status (503, 400...) or "slow"; 200 once they are used up."""
        self._planned.extend(answers)

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """Wait until ``count`` reports have been accepted."""
        deadline = time.monotonic() + timeout_s
        while len(self.reports) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._arrived.clear()
            self._arrived.wait(min(remaining, 0.5))
        return True

    def record(self, call_sid: str) -> dict[str, Any] | None:
        """The last record accepted for ``call_sid``, or None."""
        return next((r for r in reversed(self.reports) if r.get("call_sid") == call_sid), None)

    def _read(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """``GET /calls/{CallSid}``: the record, for requests to this receiver's own address only."""
        own = {f"{self.host}:{self.port}", f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        match = _RECORD_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if environ.get("HTTP_HOST", "") not in own:
            status, document = "403 Forbidden", {"error": "records are read only at this receiver's own address"}
        elif match is None:
            status, document = "404 Not Found", {"error": "records are at /calls/{CallSid}"}
        else:
            found = self.record(match.group(1))
            status, document = ("200 OK", found) if found is not None else \
                ("404 Not Found", {"error": f"no record for {match.group(1)} (yet)"})
        data = json.dumps(document).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                                ("Cache-Control", "no-store")])
        return [data]

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "GET":
            return self._read(environ, start_response)
        body = environ["wsgi.input"].read()
        signature = environ.get("HTTP_X_LIVELINE_SIGNATURE", "")
        ok = verify(self.secret, signature, body, self.clock())
        planned = self._planned.pop(0) if self._planned else 200
        if planned == "slow":
            gevent.sleep(self.delay_s)
            planned = 200
        status = int(planned) if ok else 401
        if environ["REQUEST_METHOD"] != "POST":
            status = 405
        report: Any = None
        if status == 200:
            try:
                report = json.loads(body)
            except ValueError:
                report = None
            if not isinstance(report, dict):
                status = 400
        self.deliveries.append(Delivery(body, signature, ok, status))
        if status == 200:
            self.reports.append(report)
            if self.out is not None:
                print(render(report), file=self.out, flush=True)
        elif self.out is not None:
            why = "REFUSED: bad or stale X-Liveline-Signature" if not ok else f"answered {status}"
            print(f"report receiver: {why}", file=self.out, flush=True)
        self._arrived.set()
        data = json.dumps({"ok": status == 200}).encode()
        start_response(f"{status} {'OK' if status == 200 else 'Error'}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


def fetch_record(report_url: str, call_sid: str, *, wait_s: float = 5.0,
                 interval_s: float = 0.2) -> tuple[dict[str, Any] | None, str]:
    """(the record, "") from the receiver at ``report_url`` (CALL_REPORT_URL), or (None, why not).

    The relay posts a record once the call is over, in the background: this waits up to ``wait_s``.
    """
    url = f"{report_url.split('?', 1)[0].rstrip('/')}/{call_sid}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                document = json.loads(response.read())
            return (document, "") if isinstance(document, dict) else (None, f"{url} did not answer with a record")
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code != 404:
                return None, f"{url} answered HTTP {exc.code}"
            why = f"no record arrived at {report_url} within {wait_s:g} s"
        except (OSError, ValueError) as exc:
            return None, f"could not read {url} ({getattr(exc, 'reason', exc)}): is the report receiver running?"
        if time.monotonic() >= deadline:
            return None, why
        time.sleep(interval_s)


def render(report: dict[str, Any]) -> str:
    """A call's record as a few lines a person reads at a glance."""
    def get(name: str, default: Any = "?") -> Any:
        value = report.get(name)
        return default if value is None else value

    lines = [f"── call {get('call_sid')}  {get('from')} → {get('to')}  {get('started_at')}  "
             f"{get('duration_s')} s  ended: {get('end_reason')}"]
    tools = ", ".join(f"{t.get('name')} {'ok' if t.get('ok') else 'FAILED'} {t.get('ms')} ms"
                      for t in report.get("tool_calls") or [] if isinstance(t, dict)) or "none"
    transfer = report.get("transfer")
    lines.append(f"   first audio {get('first_audio_ms')} ms · barge-ins {get('barge_ins', 0)} · tools: {tools}"
                 f" · transfer: {json.dumps(transfer) if transfer else 'none'}")
    for turn in report.get("transcript") or []:
        if isinstance(turn, dict):
            at_s = (turn.get("at_ms") or 0) / 1000
            stamp = f"{int(at_s // 60):02d}:{at_s % 60:04.1f}"
            lines.append(f"   [{stamp}] {turn.get('role', '?'):>9}: {turn.get('text', '')}")
    usage = report.get("usage") or {}
    lines.append(f"   tokens in {usage.get('input_tokens', '?')} / out {usage.get('output_tokens', '?')} · "
                 f"model {get('model')} · voice {get('voice')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the receiver until interrupted, printing each report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument("--secret", default=os.environ.get("RELAY_SIGNING_SECRET", ""),
                        help="the relay's RELAY_SIGNING_SECRET (default: from the environment)")
    args = parser.parse_args(argv)
    if not args.secret:
        print("report receiver: set RELAY_SIGNING_SECRET (or --secret) to the relay's signing secret",
              file=sys.stderr)
        return 2
    receiver = ReportReceiver(args.secret, host=args.host, port=args.port, out=sys.stdout).start()
    print(f"report receiver listening on {receiver.url} (CALL_REPORT_URL)", flush=True)
    try:
        gevent.wait()
    except KeyboardInterrupt:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
