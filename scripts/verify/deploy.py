"""verify_deploy: check a deployed stack, terraform's outputs wired into verify_webhook and verify_relay.

    eval "$(terraform -chdir=infra output -raw verify_command)"   # secrets from SSM, then this script
    .venv/bin/python scripts/verify_deploy.py                      # terraform -chdir=infra output -json
    .venv/bin/python scripts/verify_deploy.py --outputs-file outputs.json
    .venv/bin/python scripts/verify_deploy.py --relay-url wss://relay.example.com --webhook-url https://…/twilio/voice

Terraform outputs read (infra/outputs.tf): ``relay_public_url`` (the relay's wss:// origin,
also what upgrades are signed for), ``webhook_url`` (the /twilio/voice URL) and
``webhook_public_url`` (the origin Twilio signs; derived from webhook_url when absent).
Flags override outputs; with ``--relay-url`` and ``--webhook-url`` terraform is not run.
Secrets come from the environment (TWILIO_AUTH_TOKEN, STREAM_TOKEN_SECRET, DIAGNOSTIC_TOKEN;
``verify_command`` loads them from SSM) or ``--env-file``.

The webhook is checked first (Twilio calls it first), then the relay, whose synthetic call
takes its stream token from the webhook once the webhook's signed POST has passed: the whole
path a real call takes. One combined report; the exit code is the worse of the two
(see checklist.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from scripts.verify import checklist
from scripts.verify import relay as verify_relay
from scripts.verify import webhook as verify_webhook
from scripts.verify.checklist import Report
from scripts.verify.settings import ROOT, gather_settings

TERRAFORM_DIR = ROOT / "infra"
OUTPUT_NAMES = ("relay_public_url", "webhook_url", "webhook_public_url")


class OutputsError(ValueError):
    """The terraform outputs could not be read or lack what the checks need."""


def read_outputs(outputs_file: str | None, terraform_dir: Path) -> dict[str, str]:
    """String outputs by name, from a file or from ``terraform output -json``.

    Accepts terraform's shape (``{"name": {"value": …, "type": …, "sensitive": …}}``) and a
    plain ``{"name": "value"}`` map.
    """
    if outputs_file:
        try:
            text = Path(outputs_file).read_text()
        except OSError as exc:
            raise OutputsError(f"--outputs-file: {exc}") from None
    else:
        terraform = shutil.which("terraform")
        if terraform is None:
            raise OutputsError("terraform is not on PATH: pass --outputs-file FILE (from `terraform output "
                               "-json > FILE`) or --relay-url and --webhook-url")
        done = subprocess.run([terraform, f"-chdir={terraform_dir}", "output", "-json"],
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise OutputsError(f"terraform output failed in {terraform_dir}: {done.stderr.strip()[:300]}")
        text = done.stdout
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise OutputsError(f"the terraform outputs are not JSON: {exc}") from None
    if not isinstance(document, dict) or not document:
        raise OutputsError(f"no terraform outputs: has `terraform apply` run in {terraform_dir}?")
    values: dict[str, str] = {}
    for name, item in document.items():
        value = item.get("value") if isinstance(item, dict) else item
        if isinstance(value, str):
            values[name] = value
    return values


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Command line; returns the worse of the two reports' exit codes."""
    parser = argparse.ArgumentParser(prog="verify_deploy.py", description=__doc__.split("\n\n")[0],
                                     epilog=checklist.EXIT_CODES_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terraform-dir", type=Path, default=TERRAFORM_DIR,
                        help="where to run `terraform output -json` (default: infra/)")
    parser.add_argument("--outputs-file", help="read the outputs from this `terraform output -json` file")
    parser.add_argument("--relay-url", help="the relay (default: output relay_public_url)")
    parser.add_argument("--relay-public-url", help="what upgrades are signed for (default: relay_public_url)")
    parser.add_argument("--webhook-url", help="the webhook's /twilio/voice URL (default: output webhook_url)")
    parser.add_argument("--webhook-public-url", help="the origin Twilio signs (default: webhook_public_url)")
    verify_relay.add_arguments(parser)
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        outputs: dict[str, str] = {}
        if not (args.relay_url and args.webhook_url):
            outputs = read_outputs(args.outputs_file, args.terraform_dir)
        relay_url = args.relay_url or outputs.get("relay_public_url")
        webhook_url = args.webhook_url or outputs.get("webhook_url") or outputs.get("webhook_public_url")
        if not relay_url or not webhook_url:
            missing = [n for n, v in (("relay_public_url", relay_url), ("webhook_url", webhook_url)) if not v]
            raise OutputsError(f"the outputs lack {', '.join(missing)} (pass --relay-url / --webhook-url)")
        settings, source = gather_settings(env, args.env_file, args.no_env_file,
                                                     urlsplit(relay_url).hostname)
        relay_public = args.relay_public_url or outputs.get("relay_public_url") or relay_url
        webhook_public = args.webhook_public_url or outputs.get("webhook_public_url")
        auth_token = settings.get("TWILIO_AUTH_TOKEN")
        stream_secret = settings.get("STREAM_TOKEN_SECRET")
        webhook_target = verify_webhook.WebhookTarget.create(
            webhook_url, public_url=webhook_public, relay=relay_public, auth_token=auth_token,
            stream_secret=stream_secret, ca_file=args.ca_file)
        relay_target = verify_relay.RelayTarget.create(
            relay_url, public_url=relay_public, auth_token=auth_token,
            diagnostic_token=settings.get("DIAGNOSTIC_TOKEN"), stream_secret=stream_secret,
            webhook_public_url=webhook_target.public_origin, timeout_s=args.timeout,
            call_timeout_s=args.call_timeout, ca_file=args.ca_file)
    except (OutputsError, ValueError) as exc:
        print(f"verify_deploy: {exc}", file=sys.stderr)
        return checklist.EXIT_USAGE

    webhook_report = verify_webhook.verify(webhook_target)
    webhook_report.context = verify_webhook.context_lines(webhook_target, source)
    signed_post = next(layer for layer in webhook_report.layers if layer.name == "signed_post")
    if signed_post.ok:  # the relay's call takes its stream token from the webhook, as Twilio's does
        relay_target = dataclasses.replace(relay_target, webhook_url=webhook_target.voice_url)
    relay_report = verify_relay.verify(relay_target)
    relay_report.context = verify_relay.context_lines(relay_target, source)

    reports = [webhook_report, relay_report]
    code = checklist.worst(report.exit_code for report in reports)
    if args.json:
        print(json.dumps(combined(reports, code, outputs), indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(report.render() for report in reports))
        verdict = {checklist.EXIT_OK: "PASSED", checklist.EXIT_FAILED: "FAILED"}.get(code, "INCOMPLETE")
        print(f"\nverify_deploy: {verdict} (exit {code})")
    return code


def combined(reports: list[Report], code: int, outputs: Mapping[str, str]) -> dict[str, object]:
    """One JSON document: every layer (named ``tool.layer``), each report, the verdict."""
    layers = []
    for report in reports:
        prefix = report.tool.removeprefix("verify_")
        for layer in report.as_dict()["layers"]:
            layers.append({**layer, "name": f"{prefix}.{layer['name']}"})
    return {"tool": "verify_deploy", "outputs": {k: v for k, v in outputs.items() if k in OUTPUT_NAMES},
            "reports": [report.as_dict() for report in reports], "layers": layers,
            "ok": code == checklist.EXIT_OK, "exit_code": code}

