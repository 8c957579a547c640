"""scripts/verify_deploy.py: terraform's outputs (a file, as `terraform output -json` writes it)
pointing at a whole local stack: webhook, relay and stand-in model, in this process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from scripts import verify_deploy
from tests.conftest import RunningRelay, free_port
from tests.scripts.conftest import SECRETS

Run = Callable[..., tuple[int, str]]


def outputs_file(tmp_path: Path, relay_public_url: str, webhook: str) -> str:
    """What `terraform output -json` prints (infra/outputs.tf names), aimed at the local stack."""
    outputs = {
        "relay_public_url": relay_public_url,
        "relay_stream_url": relay_public_url + "/twilio/realtime",
        "webhook_public_url": webhook,
        "webhook_url": webhook + "/twilio/voice",
        "ssm_parameter_names": {"TWILIO_AUTH_TOKEN": "/liveline/twilio_auth_token"},
    }
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({name: {"sensitive": False, "type": "string", "value": value}
                                for name, value in outputs.items()}))
    return str(path)


def test_the_whole_local_stack_from_terraform_outputs(run_script: Run, relay: RunningRelay,
                                                      start_webhook: Callable[..., str], tmp_path: Path) -> None:
    webhook = start_webhook(relay.ws_url)
    path = outputs_file(tmp_path, relay.ws_url, webhook)
    code, out = run_script(verify_deploy.main, "--outputs-file", path, env=SECRETS)
    assert code == 0, out
    assert out.count("✓") == 16
    assert "(token from the webhook)" in out  # the relay's call took its token from the webhook
    assert out.endswith("verify_deploy: PASSED (exit 0)")

    code, out = run_script(verify_deploy.main, "--outputs-file", path, "--json", env=SECRETS)
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["exit_code"] == 0
    assert [r["tool"] for r in report["reports"]] == ["verify_webhook", "verify_relay"]
    assert len(report["layers"]) == 16 and report["layers"][0]["name"] == "webhook.unsigned_post"
    assert report["layers"][-1]["name"] == "relay.synthetic_call"
    assert report["outputs"]["relay_public_url"] == relay.ws_url


def test_the_exit_code_is_the_worse_of_the_two(run_script: Run, start_webhook: Callable[..., str]) -> None:
    relay = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    webhook = start_webhook(relay)
    code, out = run_script(verify_deploy.main, "--relay-url", relay, "--webhook-url", webhook + "/twilio/voice",
                           env=SECRETS)
    assert code == 1
    assert "verify_webhook" in out and "PASSED: all 8 layers (exit 0)" in out
    assert "FAILED at TCP (exit 1)" in out and "verify_deploy: FAILED (exit 1)" in out


def test_unusable_outputs_are_a_usage_error(run_script: Run, tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    assert run_script(verify_deploy.main, "--outputs-file", str(empty))[0] == 2
    assert run_script(verify_deploy.main, "--outputs-file", str(tmp_path / "missing.json"))[0] == 2
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"relay_public_url": {"value": "wss://relay.example.com"}}))
    assert run_script(verify_deploy.main, "--outputs-file", str(partial))[0] == 2
