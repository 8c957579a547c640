"""What a relay instance runs: the cloud-init, install script, systemd unit and secrets fetcher.

The templates are rendered the way Terraform's templatefile would, with the values modules/relay
passes (test values only where Terraform would ask AWS), and the results are read as systemd,
cloud-init and bash would read them. The secrets fetcher runs for real against a fake ``aws``.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import (
    INFRA,
    RELAY_TEMPLATES,
    ROOT,
    TEST_REGION,
    Stack,
    exec_argv,
    parse_env_file,
    parse_unit,
    relay_env_file,
    render,
    template_names,
)
from tests.infra.test_design_invariants import resolved_unit_vars, ssm_parameter_names

START_COMMAND = ["-c", "relay/gunicorn.conf.py", "relay.wsgi:app"]
FETCH_SECRETS = RELAY_TEMPLATES / "fetch-secrets.py"


@pytest.fixture(scope="module")
def unit(stack: Stack) -> dict[str, list[str]]:
    text = render((RELAY_TEMPLATES / "relay.service.tftpl").read_text(), resolved_unit_vars(stack))
    return parse_unit(text)["Service"]


def test_unit_template_takes_exactly_the_variables_terraform_passes(stack: Stack) -> None:
    module = stack.modules["relay"]
    for template, variables in [("relay.service.tftpl", "unit_vars"),
                                ("install-relay.sh.tftpl", "install_vars"),
                                ("cloud-init.yaml.tftpl", "cloud_init_vars")]:
        names = template_names((RELAY_TEMPLATES / template).read_text())
        assert names == set(module.locals[variables]), template


def test_unit_starts_the_documented_gunicorn_command(unit: dict[str, list[str]]) -> None:
    (start,) = unit["ExecStart"]
    argv = exec_argv(start)
    assert Path(argv[0]).name == "gunicorn"
    assert argv[0] == "/opt/liveline-relay/current/venv/bin/gunicorn", "the release's own virtualenv"
    assert argv[1:] == START_COMMAND
    assert unit["WorkingDirectory"] == ["/opt/liveline-relay/current"], "relative paths are the bundle root's"
    command = "gunicorn " + " ".join(START_COMMAND)
    readme = (INFRA / "README.md").read_text()
    assert command in readme, "infra/README.md documents the same start command"
    local_stack = (ROOT / "scripts/local_stack.py").read_text()
    assert '"-c", "relay/gunicorn.conf.py", "relay.wsgi:app"' in local_stack, "make run starts it alike"


def test_unit_binds_port_80_as_a_non_root_user(unit: dict[str, list[str]], stack: Stack) -> None:
    assert unit["User"] == ["liveline-relay"] and unit["Group"] == ["liveline-relay"]
    assert unit["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert unit["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"], "an empty set drops the ambient one"
    assert unit["NoNewPrivileges"] == ["true"]
    env_file = stack.resolve("relay", "${local.env_file}")
    assert unit["EnvironmentFile"][0] == env_file


def test_unit_drains_before_it_kills(unit: dict[str, list[str]]) -> None:
    assert unit["KillMode"] == ["mixed"], "SIGTERM to the gunicorn master only, SIGKILL to all at the end"
    assert unit.get("KillSignal", ["SIGTERM"]) == ["SIGTERM"]
    (stop,) = unit["TimeoutStopSec"]
    assert int(stop) > 3600


def test_unit_fetches_secrets_into_a_root_only_tmpfs_file(unit: dict[str, list[str]], stack: Stack) -> None:
    (pre,) = unit["ExecStartPre"]
    assert pre.startswith("+"), "runs as root, outside the sandbox"
    argv = exec_argv(pre)
    secrets_file = "/run/liveline-relay/secrets.env"
    assert argv[:3] == ["/usr/local/libexec/liveline-relay-fetch-secrets", TEST_REGION, secrets_file]
    assert sorted(argv[3:]) == sorted(ssm_parameter_names(stack).values())
    assert unit["EnvironmentFile"] == ["/etc/liveline/relay.env", "-" + secrets_file], (
        "settings first, secrets second; '-' because ExecStartPre runs before the file exists")
    assert unit["ExecStopPost"] == ["+/bin/rm -f " + secrets_file]
    assert secrets_file.startswith("/run/"), "tmpfs: secrets never reach the disk"


def test_environment_file_is_literal_for_systemd(stack: Stack, relay_env_values: dict[str, Any]) -> None:
    text = relay_env_file(relay_env_values)
    env = parse_env_file(text)
    assert env["RELAY_BIND"] == "0.0.0.0:80"
    assert env["RELAY_PUBLIC_URL"] == "wss://relay.example.com"
    assert set(env) >= {"RELAY_MAX_CALL_SECONDS", "RELAY_GRACEFUL_TIMEOUT_SECONDS", "OPENAI_REALTIME_MODEL",
                        "OPENAI_VOICE", "RELAY_MAX_CALLS", "RELAY_LOG_LEVEL"}
    assert not set(env) & {"OPENAI_API_KEY", "TWILIO_AUTH_TOKEN", "STREAM_TOKEN_SECRET", "DIAGNOSTIC_TOKEN"}
    expression = stack.modules["relay"].locals["relay_env_file"]
    assert "for key in sort(keys(local.relay_env))" in expression
    assert "if local.relay_env[key] != null" in expression
    assert '\\"${local.relay_env[key]}\\"' in expression, "values double-quoted, as this test writes them"


def rendered_install(stack: Stack) -> str:
    variables = dict(stack.resolve("relay", {
        k: v for k, v in stack.modules["relay"].locals["install_vars"].items()
        if k not in ("aws_region", "bundle_bucket", "bundle_key", "bundle_sha256")}))
    sha = "ab" * 32
    variables.update(aws_region=TEST_REGION, bundle_bucket="liveline-relay-artifacts-test",
                     bundle_key=f"relay/{sha}.zip", bundle_sha256=sha)
    return render((RELAY_TEMPLATES / "install-relay.sh.tftpl").read_text(), variables)


def test_install_script_is_valid_bash_and_installs_offline(stack: Stack) -> None:
    script = rendered_install(stack)
    bash = shutil.which("bash")
    assert bash, "bash is needed to check the script's syntax"
    result = subprocess.run([bash, "-n"], input=script, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert script.startswith("#!/bin/bash\n") and "set -euo pipefail" in script
    assert "dnf install -y python3.11" in script
    assert "sha256sum --check" in script, "the bundle is checked against the hash in its key"
    assert ('pip" install --disable-pip-version-check --no-index \\\n  --find-links "$release/wheelhouse" '
            '-r "$release/requirements/relay.txt"') in script
    assert "useradd --system" in script
    assert script.rstrip().endswith('systemctl enable --now "liveline-relay.service"')


def cloud_init_values(stack: Stack) -> tuple[dict[str, Any], dict[str, bytes]]:
    """cloud_init_vars resolved, and the decoded content expected at each path."""
    module = stack.modules["relay"]
    raw = module.locals["cloud_init_vars"]
    paths = {key: stack.resolve("relay", raw[key]) for key in ("unit_path", "env_file", "fetch_secrets",
                                                               "install_script")}
    unit = render((RELAY_TEMPLATES / "relay.service.tftpl").read_text(), resolved_unit_vars(stack))
    env = relay_env_file({k: v for k, v in stack.resolve("relay", module.locals["relay_env"]).items()
                          if v is not None})
    contents = {
        paths["unit_path"]: unit.encode(),
        paths["env_file"]: env.encode(),
        paths["fetch_secrets"]: FETCH_SECRETS.read_bytes(),
        paths["install_script"]: rendered_install(stack).encode(),
    }
    assert raw["fetch_secrets_b64"] == '${filebase64("${path.module}/templates/fetch-secrets.py")}'
    b64 = {name: base64.b64encode(contents[paths[path_key]]).decode() for name, path_key in [
        ("unit_b64", "unit_path"), ("env_b64", "env_file"), ("fetch_secrets_b64", "fetch_secrets"),
        ("install_b64", "install_script")]}
    return {**paths, **b64}, contents


def load_yaml(text: str) -> Any:
    """Parse YAML with PyYAML from checkov's virtualenv (the dev venv has no YAML parser)."""
    checkov = os.environ.get("CHECKOV")
    python = Path(checkov).parent / "python" if checkov else None
    if python is None or not python.exists():
        pytest.skip("CHECKOV is not set: its virtualenv's PyYAML parses the cloud-config (make test sets it)")
    code = "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))"
    result = subprocess.run([str(python), "-c", code], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cloud_init_writes_the_files_and_runs_the_installer(stack: Stack) -> None:
    variables, contents = cloud_init_values(stack)
    text = render((RELAY_TEMPLATES / "cloud-init.yaml.tftpl").read_text(), variables)
    assert text.startswith("#cloud-config\n")
    document = load_yaml(text)
    assert set(document) == {"write_files", "runcmd"}
    written = {entry["path"]: entry for entry in document["write_files"]}
    assert set(written) == set(contents)
    for path, entry in written.items():
        assert entry["encoding"] == "b64" and entry["owner"] == "root:root"
        assert base64.b64decode(entry["content"]) == contents[path], path
    assert written[variables["fetch_secrets"]]["permissions"] == "0755"
    assert written[variables["install_script"]]["permissions"] == "0755"
    assert document["runcmd"] == [[variables["install_script"]]]


def test_user_data_fits_the_ec2_limit(stack: Stack) -> None:
    variables, _ = cloud_init_values(stack)
    text = render((RELAY_TEMPLATES / "cloud-init.yaml.tftpl").read_text(), variables)
    assert len(base64.b64encode(text.encode())) < 16 * 1024, "EC2 user data is capped at 16 KB"


# -- fetch-secrets: run for real, with a fake aws CLI -----------------------------------------


def fake_aws(tmp_path: Path, document: dict[str, Any], exit_code: int = 0) -> dict[str, str]:
    """A PATH whose ``aws`` prints ``document`` and records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "answer.json").write_text(json.dumps(document))
    script = bin_dir / "aws"
    script.write_text(f"""#!{sys.executable}
import sys
open({str(tmp_path / "argv.json")!r}, "w").write(__import__("json").dumps(sys.argv[1:]))
sys.stdout.write(open({str(tmp_path / "answer.json")!r}).read())
sys.stderr.write("denied" if {exit_code} else "")
sys.exit({exit_code})
""")
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}


def run_fetch(env: dict[str, str], out: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(FETCH_SECRETS), TEST_REGION, str(out), *names],
                          env=env, capture_output=True, text=True, timeout=30)


def test_fetch_secrets_writes_a_root_only_env_file(tmp_path: Path) -> None:
    names = ["/liveline/OPENAI_API_KEY", "/liveline/TWILIO_AUTH_TOKEN"]
    env = fake_aws(tmp_path, {"Parameters": [
        {"Name": "/liveline/OPENAI_API_KEY", "Value": "sk-proj-abc_DEF-123"},
        {"Name": "/liveline/TWILIO_AUTH_TOKEN", "Value": "0123456789abcdef"},
    ], "InvalidParameters": []})
    out = tmp_path / "run" / "liveline-relay" / "secrets.env"
    result = run_fetch(env, out, *names)
    assert result.returncode == 0, result.stderr
    assert parse_env_file(out.read_text()) == {"OPENAI_API_KEY": "sk-proj-abc_DEF-123",
                                               "TWILIO_AUTH_TOKEN": "0123456789abcdef"}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[:2] == ["ssm", "get-parameters"] and "--with-decryption" in argv
    assert argv[argv.index("--names") + 1:] == names
    assert "sk-proj" not in result.stdout + result.stderr, "values are never printed"


def test_fetch_secrets_names_a_missing_parameter_and_writes_nothing(tmp_path: Path) -> None:
    env = fake_aws(tmp_path, {"Parameters": [], "InvalidParameters": ["/liveline/OPENAI_API_KEY"]})
    out = tmp_path / "secrets.env"
    result = run_fetch(env, out, "/liveline/OPENAI_API_KEY")
    assert result.returncode != 0
    assert "/liveline/OPENAI_API_KEY" in result.stderr and "do not exist" in result.stderr
    assert not out.exists()


def test_fetch_secrets_refuses_a_value_systemd_would_rewrite(tmp_path: Path) -> None:
    env = fake_aws(tmp_path, {"Parameters": [{"Name": "/liveline/OPENAI_API_KEY", "Value": 'ab"c$HOME'}]})
    result = run_fetch(env, tmp_path / "secrets.env", "/liveline/OPENAI_API_KEY")
    assert result.returncode != 0
    assert "/liveline/OPENAI_API_KEY" in result.stderr and "$HOME" not in result.stderr


def test_fetch_secrets_reports_an_aws_failure(tmp_path: Path) -> None:
    env = fake_aws(tmp_path, {}, exit_code=254)
    result = run_fetch(env, tmp_path / "secrets.env", "/liveline/OPENAI_API_KEY")
    assert result.returncode != 0 and "exit 254" in result.stderr and "denied" in result.stderr


def test_fetch_secrets_runs_on_amazon_linux_system_python() -> None:
    # Amazon Linux 2023's /usr/bin/python3 is 3.9: the script must parse there.
    ast.parse(FETCH_SECRETS.read_text(), feature_version=(3, 9))
    assert FETCH_SECRETS.read_text().startswith("#!/usr/bin/python3\n")
