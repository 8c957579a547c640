"""verify_relay: check a relay layer by layer, and say in plain words why a caller would hear dead air.

    .venv/bin/python scripts/verify_relay.py http://127.0.0.1:8080      # after `make run`
    .venv/bin/python scripts/verify_relay.py https://relay.example.com  # a deployed relay
    .venv/bin/python scripts/verify_relay.py wss://relay.example.com --json

The layers are relay_checks.py (1-6: DNS, TCP, TLS, plain GET, /healthz, handshake) and
relay_session.py (7-8: the relay's own path to OpenAI, a synthetic call). The run stops at
the first failing layer (the later ones depend on it); a layer skipped for a missing
credential does not stop the others. A failure is reported with a stable diagnosis code
(``--json``: ``"code"``; the table is diagnoses.py). Exit codes: see checklist.py (0
passed, 1 failed, 2 usage, 3 incomplete).

Credentials come from flags, the environment (TWILIO_AUTH_TOKEN, RELAY_PUBLIC_URL,
DIAGNOSTIC_TOKEN, STREAM_TOKEN_SECRET, WEBHOOK_PUBLIC_URL) or ``--env-file`` (by default
``.local/stack.env`` for a loopback target, as written by ``make run``). Secrets are never
printed. The unsigned probe of layer 6 leaves one ``call.refused reason=bad_signature``
warning in the relay's log per run, by design.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit

from scripts.verify import checklist, settings
from scripts.verify.checklist import Layer, Report
from scripts.verify.diagnoses import STREAM_PATH
from scripts.verify.relay_checks import check_dns, check_handshake, check_healthz, check_plain_get, check_tcp, check_tls
from scripts.verify.relay_session import check_diagnostic, check_synthetic_call
from scripts.verify.targets import HEALTH_PATH, RelayTarget


def verify(t: RelayTarget) -> Report:
    """Run every layer against ``t``; stop at the first failure."""
    layers = [Layer("dns", "DNS", lambda: check_dns(t)),
              Layer("tcp", "TCP", lambda: check_tcp(t)),
              Layer("tls", "TLS", lambda: check_tls(t)),
              Layer("plain_get", f"GET {STREAM_PATH} → 426", lambda: check_plain_get(t)),
              Layer("healthz", f"GET {HEALTH_PATH}", lambda: check_healthz(t)),
              Layer("handshake", "WebSocket handshake", lambda: check_handshake(t)),
              Layer("diagnostic", "OpenAI diagnostic", lambda: check_diagnostic(t)),
              Layer("synthetic_call", "synthetic call", lambda: check_synthetic_call(t))]
    return Report("verify_relay", t.url, checklist.run_layers(layers))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared with verify_deploy.py."""
    parser.add_argument("--env-file", help="read credentials from this NAME=value file (default: "
                        ".local/stack.env, for a loopback target only)")
    parser.add_argument("--no-env-file", action="store_true", help="read no env file")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per network step (5)")
    parser.add_argument("--call-timeout", type=float, default=10.0,
                        help="seconds for the assistant's audio to come back in the synthetic call (10)")
    parser.add_argument("--ca-file", help="trust this CA instead of the public ones (Twilio would not)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Command line; returns the exit code (see checklist.py)."""
    parser = argparse.ArgumentParser(prog="verify_relay.py", description=__doc__.split("\n\n")[0],
                                     epilog=checklist.EXIT_CODES_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="the relay: https://…, wss://…, http://127.0.0.1:8080 "
                        "(default: RELAY_URL)")
    parser.add_argument("--public-url", help="the wss:// origin Twilio dials (default: RELAY_PUBLIC_URL)")
    parser.add_argument("--webhook", help="get the call's stream token from this webhook, as Twilio does")
    parser.add_argument("--webhook-public-url", help="the origin Twilio signs webhook POSTs for (default: "
                        "WEBHOOK_PUBLIC_URL)")
    parser.add_argument("--auth-token", help="Twilio Auth Token (prefer TWILIO_AUTH_TOKEN: flags show in ps)")
    parser.add_argument("--diagnostic-token", help="prefer DIAGNOSTIC_TOKEN")
    parser.add_argument("--stream-secret", help="prefer STREAM_TOKEN_SECRET")
    add_arguments(parser)
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    # No URL: RELAY_URL from the environment, or from .local/stack.env (the local stack).
    probe = args.url or env.get("RELAY_URL") or "http://127.0.0.1"
    try:
        values, source = settings.gather_settings(env, args.env_file, args.no_env_file, urlsplit(probe).hostname)
        url = args.url or values.get("RELAY_URL")
        if not url:
            raise ValueError("give the relay's URL (or set RELAY_URL)")
        target = RelayTarget.create(
            url, public_url=args.public_url or values.get("RELAY_PUBLIC_URL"),
            auth_token=args.auth_token or values.get("TWILIO_AUTH_TOKEN"),
            diagnostic_token=args.diagnostic_token or values.get("DIAGNOSTIC_TOKEN"),
            stream_secret=args.stream_secret or values.get("STREAM_TOKEN_SECRET"),
            webhook_url=args.webhook,
            webhook_public_url=args.webhook_public_url or values.get("WEBHOOK_PUBLIC_URL"),
            timeout_s=args.timeout, call_timeout_s=args.call_timeout, ca_file=args.ca_file)
    except ValueError as exc:
        print(f"verify_relay: {exc}", file=sys.stderr)
        return checklist.EXIT_USAGE
    report = verify(target)
    report.context = context_lines(target, source)
    print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) if args.json else report.render())
    return report.exit_code


def context_lines(t: RelayTarget, source: str) -> list[str]:
    """What the run used, without a secret in it."""
    names = {"TWILIO_AUTH_TOKEN": t.auth_token, "DIAGNOSTIC_TOKEN": t.diagnostic_token,
             "STREAM_TOKEN_SECRET": t.stream_secret}
    lines = [f"upgrades signed for {t.signed_url} ({t.signed_url_source})",
             f"credentials from {source}: {settings.credential_summary(names)}"]
    if t.webhook_url:
        lines.append(f"stream token from the webhook {t.webhook_url}")
    return lines
