"""checkov over infra/ with the project's policies (infra/policies): zero failures, every skip explained.

checkov lives in its own virtualenv (it replaces python-hcl2's ``hcl2`` module with bc-python-hcl2), so
it runs as a subprocess named by ``$CHECKOV``; ``make test`` sets it to ``.venv-checkov/bin/checkov``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import INFRA

POLICIES = INFRA / "policies"
CUSTOM_IDS = {f"CKV2_LIVELINE_{n}" for n in range(1, 7)}


def checkov_binary() -> str:
    checkov = os.environ.get("CHECKOV")
    if not checkov:
        pytest.skip("CHECKOV is not set: make test sets it to .venv-checkov/bin/checkov (or: python3 -m venv "
                    ".venv-checkov && .venv-checkov/bin/pip install -r requirements/checkov.txt)")
    if not Path(checkov).exists():
        pytest.fail(f"CHECKOV={checkov} does not exist: create it with make .venv-checkov/.installed")
    return checkov


def run_checkov(directory: Path, *extra: str) -> dict[str, Any]:
    command = [checkov_binary(), "-d", str(directory), "--framework", "terraform", "--compact",
               "--skip-download", "--external-checks-dir", str(POLICIES), "-o", "json", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=110)
    assert result.stdout.strip(), f"checkov printed nothing (exit {result.returncode}):\n{result.stderr}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    (terraform,) = [r for r in reports if r["check_type"] == "terraform"]
    return terraform  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_checkov(INFRA)


def test_no_check_fails(report: dict[str, Any]) -> None:
    summary = report["summary"]
    failures = [f"{f['check_id']} {f['resource']} ({f['file_path']}): {f['check_name']}"
                for f in report["results"]["failed_checks"]]
    assert not failures, "checkov failures:\n" + "\n".join(failures)
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 40, "checkov saw the modules' resources"


def test_every_skip_says_why(report: dict[str, Any]) -> None:
    skipped = report["results"]["skipped_checks"]
    assert skipped, "the design has known skips (e.g. CKV_AWS_258 on the Function URL)"
    for check in skipped:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) >= 20, f"{check['check_id']} on {check['resource']} is skipped without a reason"


def test_every_inline_skip_is_one_checkov_honours(report: dict[str, Any]) -> None:
    """A #checkov:skip outside a resource block is silently ignored: count them.

    docs/infra-testing.md#suppressing-a-checkov-check
    """
    written: Counter[tuple[str, str]] = Counter()
    for path in INFRA.rglob("*.tf"):
        for check_id in re.findall(r"#checkov:skip=([A-Z0-9_]+):", path.read_text()):
            written[("/" + path.relative_to(INFRA).as_posix(), check_id)] += 1
    honoured = Counter((c["file_path"], c["check_id"]) for c in report["results"]["skipped_checks"])
    assert honoured == written


def test_function_url_skip_is_the_documented_one(report: dict[str, Any]) -> None:
    (skip,) = [c for c in report["results"]["skipped_checks"] if c["check_id"] == "CKV_AWS_258"]
    assert skip["resource"] == "module.webhook.aws_lambda_function_url.this"
    assert "Twilio cannot sign with IAM" in skip["check_result"]["suppress_comment"]
    assert "X-Twilio-Signature" in skip["check_result"]["suppress_comment"]


def test_project_policies_ran_and_passed(report: dict[str, Any]) -> None:
    passed = Counter(c["check_id"] for c in report["results"]["passed_checks"])
    assert CUSTOM_IDS <= set(passed), f"policies that matched nothing: {sorted(CUSTOM_IDS - set(passed))}"
    assert len(list(POLICIES.glob("*.yaml"))) == len(CUSTOM_IDS), "one policy per file, each with its own id"


BAD = """
variable "idle" {
  type    = number
  default = 60
}
resource "aws_lb" "short_idle" {
  idle_timeout = var.idle
}
resource "aws_lb_target_group" "short_drain" {
  port                 = 80
  protocol             = "HTTP"
  deregistration_delay = 300
  health_check {
    path    = "/healthz"
    matcher = "200"
  }
}
resource "aws_lb_target_group" "wrong_health_path" {
  port                 = 80
  protocol             = "HTTP"
  deregistration_delay = 3600
  health_check {
    path    = "/"
    matcher = "200"
  }
}
resource "aws_lb_listener" "plain_http" {
  port     = 80
  protocol = "HTTP"
}
resource "aws_autoscaling_group" "terminate_first" {
  health_check_type = "ELB"
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 90
      max_healthy_percentage = 100
    }
  }
}
resource "aws_ssm_parameter" "stored_secret" {
  name  = "/x/OPENAI_API_KEY"
  type  = "SecureString"
  value = var.idle
}
"""


def test_project_policies_catch_what_they_guard(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(BAD)
    report = run_checkov(tmp_path, "--check", ",".join(sorted(CUSTOM_IDS)))
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    assert failed == {
        ("CKV2_LIVELINE_1", "aws_lb.short_idle"),
        ("CKV2_LIVELINE_2", "aws_lb_target_group.short_drain"),
        ("CKV2_LIVELINE_3", "aws_lb_target_group.wrong_health_path"),
        ("CKV2_LIVELINE_4", "aws_lb_listener.plain_http"),
        ("CKV2_LIVELINE_5", "aws_autoscaling_group.terminate_first"),
        ("CKV2_LIVELINE_6", "aws_ssm_parameter.stored_secret"),
    }
