"""What a relay instance runs: the cloud-init, install script, systemd unit and secrets fetcher.

The templates are rendered the way Terraform's templatefile would, with the values modules/relay
passes (test values only where Terraform would ask AWS), and the results are read as systemd,
cloud-init and bash would read them. The secrets fetcher runs for real against a fake ``aws``.
"""

from __future__ import annotations

import ast
import gzip
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
from tests.infra.test_design_invariants import RELAY_SECRETS, resolved_unit_vars, ssm_parameter_names

START_COMMAND = ["-c", "relay/gunicorn.conf.py", "relay.wsgi:app"]
FETCH_SECRETS = RELAY_TEMPLATES / "fetch-secrets.py"


@pytest.fixture(scope="module")
def unit(stack: Stack) -> dict[str, list[str]]:
    text = render((RELAY_TEMPLATES / "relay.service.tftpl").read_text(), resolved_unit_vars(stack))
    return parse_unit(text)["Service"]


TEMPLATE_VARIABLES = {
    "relay.service.tftpl": "unit_vars",
    "relay-watchdog.service.tftpl": "watchdog_vars",
    "install-relay.sh.tftpl": "install_vars",
    "cloud-init.yaml.tftpl": "cloud_init_vars",
    "logrotate.conf.tftpl": "logrotate_vars",
    "cloudwatch-agent.json.tftpl": "agent_config_vars",
    "prometheus.yaml.tftpl": "prometheus_config_vars",
}


def test_unit_template_takes_exactly_the_variables_terraform_passes(stack: Stack) -> None:
    module = stack.modules["relay"]
    assert {p.name for p in RELAY_TEMPLATES.glob("*.tftpl")} == set(TEMPLATE_VARIABLES), "every template is checked"
    terraform = "".join(p.read_text() for p in (INFRA / "modules/relay").glob("*.tf"))
    for template, variables in TEMPLATE_VARIABLES.items():
        names = template_names((RELAY_TEMPLATES / template).read_text())
        assert names == set(module.locals[variables]), template
        assert f'templates/{template}", local.{variables})' in terraform, f"{template} is rendered with {variables}"


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


def test_unit_gives_each_worker_room_for_its_calls_descriptors(unit: dict[str, list[str]]) -> None:
    # About three descriptors a call; systemd's default soft limit (1024) would cap a worker near 300.
    (limit,) = unit["LimitNOFILE"]
    assert int(limit) >= 10 * 3 * 300


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
    token_file = "/run/liveline-relay/metrics.token"
    assert argv[:3] == ["/usr/local/libexec/liveline-relay-fetch-secrets", TEST_REGION, secrets_file]
    assert argv[3:5] == ["--value-file", f"DIAGNOSTIC_TOKEN={token_file}"], (
        "the CloudWatch agent's bearer token for /metrics, beside the secrets, root only")
    assert sorted(argv[5:]) == sorted(ssm_parameter_names(stack)[n] for n in RELAY_SECRETS)
    assert unit["EnvironmentFile"] == ["/etc/liveline/relay.env", "-" + secrets_file], (
        "settings first, secrets second; '-' because ExecStartPre runs before the file exists")
    assert unit["ExecStopPost"] == [f"+/bin/rm -f {secrets_file} {token_file}"]
    assert secrets_file.startswith("/run/") and token_file.startswith("/run/"), "tmpfs: secrets never reach the disk"


def test_unit_writes_its_output_where_the_agent_reads_it(unit: dict[str, list[str]], stack: Stack) -> None:
    log_file = stack.resolve("relay", "${local.log_file}")
    assert unit["StandardOutput"] == [f"append:{log_file}"] and unit["StandardError"] == [f"append:{log_file}"]
    assert unit["LogsDirectory"] == ["liveline-relay"] and log_file.startswith("/var/log/liveline-relay/")
    agent = json.loads(render_template(stack, "cloudwatch-agent.json.tftpl"))
    collected = agent["logs"]["logs_collected"]["files"]["collect_list"]
    assert {entry["file_path"] for entry in collected} == {log_file, "/var/log/cloud-init-output.log"}
    rotate = render_template(stack, "logrotate.conf.tftpl")
    assert f"\n{log_file} {{\n" in rotate and "copytruncate" in rotate, (
        "the unit keeps the file open (append:), so it is truncated in place, never moved")


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


# What only AWS knows at apply time, for rendering.
APPLY_TIME = {"aws_region": TEST_REGION, "artifacts_bucket": "liveline-relay-artifacts-test",
              "bundle_key": "relay/bundle.zip", "bundle_version": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
              "bundle_sha256": "ab" * 32, "assistant_version": "Rb_l2T8ZzWLlCaVRg9J4xCW.JwVj5Pkn",
              "assistant_sha256": "cd" * 32}


def template_values(stack: Stack, variables: str) -> dict[str, Any]:
    """local.<variables> resolved, with APPLY_TIME values where Terraform would ask AWS."""
    if variables == "unit_vars":
        return resolved_unit_vars(stack)
    raw = stack.modules["relay"].locals[variables]
    return {key: APPLY_TIME[key] if key in APPLY_TIME else stack.resolve("relay", expression)
            for key, expression in raw.items()}


def render_template(stack: Stack, template: str) -> str:
    return render((RELAY_TEMPLATES / template).read_text(), template_values(stack, TEMPLATE_VARIABLES[template]))


def rendered_install(stack: Stack) -> str:
    assert stack.modules["relay"].locals["install_vars"]["bundle_key"] == "${aws_s3_object.bundle.key}"
    assert stack.resolve("relay", "${local.bundle_key}") == APPLY_TIME["bundle_key"]
    return render_template(stack, "install-relay.sh.tftpl")


def test_install_script_is_valid_bash_and_installs_offline(stack: Stack) -> None:
    script = rendered_install(stack)
    bash = shutil.which("bash")
    assert bash, "bash is needed to check the script's syntax"
    result = subprocess.run([bash, "-n"], input=script, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert script.startswith("#!/bin/bash\n") and "set -euo pipefail" in script
    assert "dnf install -y python3.11 python3.11-pip amazon-cloudwatch-agent logrotate" in script
    assert ('pip" install --disable-pip-version-check --no-index \\\n  --find-links "$release/wheelhouse" '
            '-r "$release/requirements/relay.txt"') in script
    assert "useradd --system" in script
    # Each artifact by its object version, checked against the hash this launch template version holds.
    assert '--version-id "$2"' in script and "sha256sum --check --strict" in script
    assert f'fetch "relay/bundle.zip" "{APPLY_TIME["bundle_version"]}" "{APPLY_TIME["bundle_sha256"]}"' in script
    assert (f'fetch "$assistant_key" "{APPLY_TIME["assistant_version"]}" "{APPLY_TIME["assistant_sha256"]}"'
            in script)
    assert 'install -D -m 0640 -o root -g "liveline-relay"' in script, "the assistant file: relay user only"
    # In service only once ready, and only then judged for liveness.
    lines = script.rstrip().splitlines()
    ready = next(i for i, line in enumerate(lines) if 'liveline-relay-health" ready' in line)
    start = lines.index('systemctl enable --now "liveline-relay.service"')
    assert start < ready < len(lines) - 1
    assert lines[-1] == 'systemctl enable --now "liveline-relay-watchdog.service"'
    assert '--url "http://127.0.0.1/healthz"' in lines[ready], "ready = takes calls, not merely alive"


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


CLOUD_INIT_FILES = {  # path variable -> (content variable, template or static file, mode)
    "unit_path": ("unit", "relay.service.tftpl", "0644"),
    "watchdog_unit_path": ("watchdog_unit", "relay-watchdog.service.tftpl", "0644"),
    "env_file": ("env", None, "0644"),
    "fetch_secrets": ("fetch_secrets_py", "fetch-secrets.py", "0755"),
    "relay_health": ("relay_health_py", "relay-health.py", "0755"),
    "agent_config": ("agent_config_json", "cloudwatch-agent.json.tftpl", "0644"),
    "prometheus_config": ("prometheus_config_json", "prometheus.yaml.tftpl", "0644"),
    "logrotate_config": ("logrotate", "logrotate.conf.tftpl", "0644"),
    "install_script": ("install_sh", "install-relay.sh.tftpl", "0755"),
}


def indent(spaces: int, text: str) -> str:
    """Terraform's indent(): every line but the first gets the spaces (empty ones included)."""
    return text.replace("\n", "\n" + " " * spaces)


def cloud_init_values(stack: Stack) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """cloud_init_vars as Terraform computes them, and the (content, mode) expected at each path."""
    module = stack.modules["relay"]
    raw = module.locals["cloud_init_vars"]
    assert set(raw) == set(CLOUD_INIT_FILES) | {content for content, _, _ in CLOUD_INIT_FILES.values()}
    values: dict[str, Any] = {}
    contents: dict[str, tuple[str, str]] = {}
    for path_key, (content_key, source, mode) in CLOUD_INIT_FILES.items():
        path = stack.resolve("relay", raw[path_key])
        if source is None:
            env = stack.resolve("relay", module.locals["relay_env"])
            text = relay_env_file({k: v for k, v in env.items() if v is not None})
            assert raw[content_key] == "${indent(6, local.relay_env_file)}"
        elif source.endswith(".tftpl"):
            text = render_template(stack, source)
            assert raw[content_key] == (f'${{indent(6, templatefile("${{path.module}}/templates/{source}", '
                                        f"local.{TEMPLATE_VARIABLES[source]}))}}")
        else:
            text = (RELAY_TEMPLATES / source).read_text()
            assert raw[content_key] == f'${{indent(6, file("${{path.module}}/templates/{source}"))}}'
        values[path_key] = path
        values[content_key] = indent(6, text)
        contents[path] = (text, mode)
    return values, contents


def rendered_cloud_init(stack: Stack) -> tuple[str, dict[str, tuple[str, str]]]:
    values, contents = cloud_init_values(stack)
    return render((RELAY_TEMPLATES / "cloud-init.yaml.tftpl").read_text(), values), contents


def test_cloud_init_writes_the_files_and_runs_the_installer(stack: Stack) -> None:
    text, contents = rendered_cloud_init(stack)
    assert text.startswith("#cloud-config\n")
    document = load_yaml(text)
    assert set(document) == {"write_files", "runcmd"}
    written = {entry["path"]: entry for entry in document["write_files"]}
    assert set(written) == set(contents)
    for path, entry in written.items():
        assert "encoding" not in entry and entry["owner"] == "root:root"
        assert entry["content"] == contents[path][0], f"{path}: the literal block is the file, byte for byte"
        assert entry["permissions"] == contents[path][1], path
    install = stack.resolve("relay", "${local.install_script}")
    assert document["runcmd"] == [[install]]


def test_user_data_fits_the_ec2_limit_whatever_the_assistant_says(stack: Stack) -> None:
    text, _ = rendered_cloud_init(stack)
    module = stack.modules["relay"]
    assert module.locals["user_data"] == "${base64gzip(local.cloud_init)}"
    # EC2 caps user data at 16 KB before base64; Python's gzip is within a few bytes of Terraform's.
    gzipped = len(gzip.compress(text.encode()))
    assert gzipped < 12 * 1024, f"{gzipped} bytes gzipped: keep well under 16 KB"
    template = module.resource("aws_launch_template", "this")
    (limit,) = [p for p in template["lifecycle"][0]["precondition"] if "user_data" in p["condition"]]
    assert limit["condition"] == "${length(local.user_data) <= 21848}"
    assert 21848 == 4 * -(-16384 // 3), "the base64 length of 16 KB"
    # The assistant's words never enter it: only the file's S3 key, version and hash do.
    install_vars = stack.modules["relay"].locals["install_vars"]
    assistant = {key: expression for key, expression in install_vars.items() if key.startswith("assistant_")}
    assert assistant == {
        "assistant_key": "${local.assistant_key}",
        "assistant_version": '${var.assistant_config_path == null ? "" : aws_s3_object.assistant[0].version_id}',
        "assistant_sha256": "${local.assistant_sha256}",
        "assistant_path": "${local.assistant_path}",
    }
    env = stack.modules["relay"].locals["relay_env"]
    assert "ASSISTANT_INSTRUCTIONS" not in env and "ASSISTANT_GREETING" not in env
    assert not {"assistant_instructions", "assistant_greeting"} & set(stack.root.variables), (
        "the assistant's words live in the assistant file, shipped through S3")


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


def test_fetch_secrets_also_writes_a_value_alone_for_the_agent(tmp_path: Path) -> None:
    names = ["/liveline/DIAGNOSTIC_TOKEN", "/liveline/OPENAI_API_KEY"]
    env = fake_aws(tmp_path, {"Parameters": [
        {"Name": "/liveline/DIAGNOSTIC_TOKEN", "Value": "t" * 40},
        {"Name": "/liveline/OPENAI_API_KEY", "Value": "sk-proj-abc_DEF-123"},
    ], "InvalidParameters": []})
    out = tmp_path / "run" / "secrets.env"
    token = tmp_path / "run" / "metrics.token"
    result = subprocess.run([sys.executable, str(FETCH_SECRETS), TEST_REGION, str(out), "--value-file",
                             f"DIAGNOSTIC_TOKEN={token}", *names], env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert token.read_text() == "t" * 40, "the bare value: a bearer token file, no NAME= and no newline"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert set(parse_env_file(out.read_text())) == {"DIAGNOSTIC_TOKEN", "OPENAI_API_KEY"}
    refused = subprocess.run([sys.executable, str(FETCH_SECRETS), TEST_REGION, str(out), "--value-file",
                              f"STREAM_TOKEN_SECRET={token}", *names], env=env, capture_output=True, text=True,
                             timeout=30)
    assert refused.returncode != 0 and "names no fetched parameter: STREAM_TOKEN_SECRET" in refused.stderr


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
