"""Deploys that keep calls alive and rollbacks that work (issue 14, 3-4).

- Each launch template version names the exact S3 object versions (and SHA-256) it installs, and the
  bucket keeps them, so an old version still boots; a rollback pins one (README: Roll back).
- An apply that changes nothing about the relay gives the group nothing to refresh: the launch
  template's inputs are followed through every local to what they read.
- The boot script refuses an artifact that is not the one its version names, and gives the launch up.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.infra.conftest import INFRA, RELAY_TEMPLATES, Stack, render
from tests.infra.test_relay_templates import APPLY_TIME, template_values

RELAY = INFRA / "modules/relay"


def relay(stack: Stack, type_name: str, name: str) -> dict[str, Any]:
    return stack.modules["relay"].resource(type_name, name)


# -- immutable artifacts ----------------------------------------------------------------------


def test_each_launch_template_version_names_the_object_versions_it_installs(stack: Stack) -> None:
    module = stack.modules["relay"]
    (versioning,) = relay(stack, "aws_s3_bucket_versioning", "artifacts")["versioning_configuration"]
    assert versioning["status"] == "Enabled"
    bundle, assistant = relay(stack, "aws_s3_object", "bundle"), relay(stack, "aws_s3_object", "assistant")
    # One key each: a new bundle is a new version of the same object, never a new key whose
    # predecessor is deleted (which broke every older launch template version).
    assert stack.resolve("relay", bundle["key"]) == "relay/bundle.zip"
    assert module.locals["assistant_key"] == '${var.assistant_config_path == null ? "" : "relay/assistant.toml"}'
    for artifact in (bundle, assistant):
        assert "aws_s3_bucket_versioning.artifacts" in str(artifact["depends_on"]), "versioned before upload"
    install = module.locals["install_vars"]
    assert install["bundle_version"] == "${aws_s3_object.bundle.version_id}"
    assert install["bundle_sha256"] == "${local.bundle_sha256}"
    assert "aws_s3_object.assistant[0].version_id" in install["assistant_version"]
    assert install["assistant_sha256"] == "${local.assistant_sha256}"
    assert "filesha256(var.assistant_config_path)" in module.locals["assistant_sha256"]


def test_the_bucket_keeps_what_a_rollback_needs(stack: Stack) -> None:
    (rule,) = relay(stack, "aws_s3_bucket_lifecycle_configuration", "artifacts")["rule"]
    assert "expiration" not in rule, "current versions never expire: later launches need them"
    (noncurrent,) = rule["noncurrent_version_expiration"]
    assert noncurrent["newer_noncurrent_versions"] == "${var.releases_kept}"
    kept = stack.resolve("relay", "${var.releases_kept}")
    assert kept == stack.root.variables["relay_releases_kept"]["default"] == 10
    assert 1 <= kept <= 100, "S3's range for newer noncurrent versions"


def render_install(stack: Stack, tmp_path: Path) -> str:
    values = template_values(stack, "install_vars")
    values.update(install_dir=str(tmp_path / "opt"), log_directory=str(tmp_path / "log"),
                  relay_health=str(tmp_path / "bin" / "relay-health"))
    return render((RELAY_TEMPLATES / "install-relay.sh.tftpl").read_text(), values)


def stub(directory: Path, name: str, body: str) -> None:
    """An executable ``name`` in ``directory`` that records its argv in calls.jsonl, then runs ``body``."""
    path = directory / name
    record = f"open({str(directory / 'calls.jsonl')!r}, 'a').write(json.dumps([{name!r}] + sys.argv[1:]) + '\\n')"
    path.write_text(f"#!{sys.executable}\nimport json, sys\n{record}\n{body}")
    path.chmod(0o755)


def boot(stack: Stack, tmp_path: Path, *, dnf_exit: int, artifact: bytes) -> tuple[int, str, list[list[str]]]:
    """Run the rendered install script with stand-ins for dnf, id, aws and relay-health."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "dnf", f"sys.exit({dnf_exit})\n")
    stub(bin_dir, "id", "sys.exit(0)\n")
    stub(bin_dir, "relay-health", "sys.exit(0)\n")
    stub(bin_dir, "python3.11", "sys.exit(0)\n")
    stub(bin_dir, "aws", f"open(sys.argv[-1], 'wb').write({artifact!r})\n")
    bash = shutil.which("bash")
    assert bash
    result = subprocess.run([bash, "-c", render_install(stack, tmp_path)], capture_output=True, text=True,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=60)
    calls = [json.loads(line) for line in (bin_dir / "calls.jsonl").read_text().splitlines()]
    return result.returncode, result.stderr, calls


ABANDON = ["relay-health", "complete", "ABANDON", "--region", APPLY_TIME["aws_region"], "--instance-id-file",
           "/var/lib/cloud/data/instance-id", "--group", "liveline-relay", "--hook", "relay-ready"]


def test_boot_refuses_an_artifact_that_is_not_the_named_version(stack: Stack, tmp_path: Path) -> None:
    status, stderr, calls = boot(stack, tmp_path, dnf_exit=0, artifact=b"some other bundle")
    assert status != 0
    (fetch,) = [call for call in calls if call[0] == "aws"]
    assert fetch[1:3] == ["s3api", "get-object"]
    assert fetch[fetch.index("--key") + 1] == "relay/bundle.zip"
    assert fetch[fetch.index("--version-id") + 1] == APPLY_TIME["bundle_version"]
    assert [call[0] for call in calls] == ["dnf", "id", "aws", "relay-health"], (
        "the hash check stops the boot: nothing is unpacked or installed")
    assert calls[-1] == ABANDON, "the group is told at once, instead of waiting out the hook"
    assert "abandoning this launch" in stderr
    assert not (tmp_path / "opt" / "current").exists(), "nothing was installed"


def test_boot_gives_the_launch_up_when_any_step_fails(stack: Stack, tmp_path: Path) -> None:
    status, _, calls = boot(stack, tmp_path, dnf_exit=1, artifact=b"")
    assert status != 0
    assert [call[0] for call in calls] == ["dnf", "relay-health"]
    assert calls[-1] == ABANDON


# -- rollback -------------------------------------------------------------------------------


def test_a_rollback_pins_a_launch_template_version(stack: Stack) -> None:
    group = relay(stack, "aws_autoscaling_group", "this")
    (template,) = group["launch_template"]
    assert template["id"] == "${aws_launch_template.this.id}"
    assert template["version"] == "${coalesce(var.launch_template_version, aws_launch_template.this.latest_version)}"
    assert stack.root.calls["relay"]["launch_template_version"] == "${var.relay_launch_template_version}"
    assert stack.root.variables["relay_launch_template_version"]["default"] is None, "normally: the newest"
    assert stack.resolve("relay", "${var.launch_template_version}") is None
    (exists,) = group["lifecycle"][0]["precondition"]
    assert "var.launch_template_version <= aws_launch_template.this.latest_version" in exists["condition"]
    assert relay(stack, "aws_launch_template", "this")["update_default_version"] is True


# -- an apply that changes nothing about the relay leaves the group alone ---------------------

# What the launch template may depend on. Data sources whose answer changes on its own (the "latest"
# AMI in SSM) would give it a new version, hence a fleet-wide refresh, on an unrelated apply.
STABLE_DATA = {"aws_ami.al2023", "aws_region.current", "aws_caller_identity.current", "aws_partition.current",
               "aws_ec2_instance_type.this"}
RELAY_RESOURCES = {"aws_s3_bucket.artifacts", "aws_s3_object.bundle", "aws_s3_object.assistant",
                   "aws_iam_instance_profile.this", "aws_security_group.relay"}
VOLATILE_FUNCTIONS = {"timestamp", "plantimestamp", "uuid", "bcrypt", "timeadd"}


def dependencies(stack: Stack, value: Any) -> tuple[set[str], set[str], set[str]]:
    """(data sources, resources, functions) that ``value`` reads, following locals transitively."""
    locals_ = stack.modules["relay"].locals
    seen: set[str] = set()
    data: set[str] = set()
    resources: set[str] = set()
    functions: set[str] = set()
    pending = [json.dumps(value)]
    while pending:
        text = pending.pop()
        data |= set(re.findall(r"\bdata\.(\w+\.\w+)", text))
        resources |= {m for m in re.findall(r"(?<![\w.])(aws_\w+\.\w+)", text) if not m.startswith("aws_ami.")}
        functions |= set(re.findall(r"\b([a-z][a-z0-9_]*)\(", text))
        for name in set(re.findall(r"\blocal\.(\w+)", text)) - seen:
            seen.add(name)
            pending.append(json.dumps(locals_[name]))
    return data, resources, functions


def test_an_apply_that_changes_nothing_about_the_relay_does_not_touch_the_group(stack: Stack) -> None:
    template = relay(stack, "aws_launch_template", "this")
    body = {key: item for key, item in template.items() if key != "lifecycle"}
    data, resources, functions = dependencies(stack, body)
    assert data <= STABLE_DATA, f"the launch template reads {sorted(data - STABLE_DATA)}"
    assert resources <= RELAY_RESOURCES, sorted(resources - RELAY_RESOURCES)
    assert not functions & VOLATILE_FUNCTIONS
    for name in ("bundle", "assistant"):
        artifact = relay(stack, "aws_s3_object", name)
        assert set(artifact) <= {"bucket", "key", "source", "source_hash", "depends_on", "count"}, (
            "an object changes (and with it the launch template) only with its content")
    group = relay(stack, "aws_autoscaling_group", "this")
    (refresh,) = group["instance_refresh"]
    assert "triggers" not in refresh, "only a new launch template version starts a refresh"


def test_the_ami_is_pinned_until_the_operator_moves_it(stack: Stack) -> None:
    for module in (stack.root, *stack.modules.values()):
        assert "aws_ssm_parameter" not in module.data, "the 'latest AMI' parameter rolls the fleet unasked"
    ami = stack.modules["relay"].data["aws_ami"]["al2023"]
    assert ami["owners"] == ["amazon"] and ami["include_deprecated"] is True
    (name,) = ami["filter"]
    assert name["name"] == "name"
    assert name["values"] == ["al2023-ami-${var.image_release}-kernel-6.1-${local.architecture}"]
    release = stack.root.variables["relay_ami_release"]["default"]
    rule = stack.root.variables["relay_ami_release"]["validation"][0]["condition"]
    pattern = re.search(r'regex\("(.*)", var\.relay_ami_release\)', rule).group(1).replace("\\\\", "\\")
    assert re.fullmatch(pattern, release) and not re.fullmatch(pattern, "latest")
    assert "default" not in stack.modules["relay"].variables["image_release"], "the root decides"
    assert stack.modules["relay"].locals["image_id"] == "${coalesce(var.image_id, one(data.aws_ami.al2023[*].id))}"


# -- replacing and destroying ---------------------------------------------------------------


def test_the_target_group_can_be_replaced(stack: Stack) -> None:
    group = relay(stack, "aws_lb_target_group", "this")
    assert "name" not in group, "a fixed name collides with itself when the group is replaced"
    assert len(group["name_prefix"]) <= 6, "AWS's limit for a target group's name prefix"
    (lifecycle,) = group["lifecycle"]
    assert lifecycle["create_before_destroy"] is True
    for name, rule in stack.modules["relay"].resources["aws_lb_listener_rule"].items():
        (action,) = rule["action"]
        assert action.get("target_group_arn", "${aws_lb_target_group.this.arn}") == (
            "${aws_lb_target_group.this.arn}"), name


def test_destroy_drains_the_relays_before_the_load_balancer_goes(stack: Stack) -> None:
    group = relay(stack, "aws_autoscaling_group", "this")
    rules = {f"${{aws_lb_listener_rule.{name}}}" for name in stack.modules["relay"].resources["aws_lb_listener_rule"]}
    assert set(group["depends_on"]) == {"${aws_lb_listener.https}"} | rules, (
        "the group goes first (its relays drain), then the listener and its rules, then the load balancer")
    assert relay(stack, "aws_lb_listener", "https")["load_balancer_arn"] == "${aws_lb.this.arn}"
    (timeouts,) = group["timeouts"]
    delay = stack.resolve("relay", "${var.deregistration_delay_seconds}")
    assert int(timeouts["delete"].rstrip("m")) * 60 > delay, "Terraform waits out the drain"


# -- the README's runbooks name what exists ---------------------------------------------------


def test_readme_commands_name_real_outputs_and_variables(stack: Stack) -> None:
    readme = (INFRA / "README.md").read_text()
    outputs = set(re.findall(r"output -(?:raw|json) (\w+)", readme))
    assert outputs, "the README reads terraform outputs"
    assert outputs <= set(stack.root.outputs), sorted(outputs - set(stack.root.outputs))
    variables = set(re.findall(r"-var '?(\w+)=", readme)) | set(re.findall(r"TF_VAR_(\w+)", readme))
    assert variables <= set(stack.root.variables), sorted(variables - set(stack.root.variables))
    rollback = readme[readme.index("## 6. Roll back"):]
    rollback = rollback[: rollback.index("\n## ", 1)]
    assert "relay_launch_template_version" in rollback
    assert "--no-wait-for-transitioning-instances" in rollback
    assert "describe-launch-template-versions" in rollback
    assert "head-object" in rollback and "--version-id" in rollback
    assert not re.search(r"roll(s|ed)? back (by itself|automatically)", readme, re.I), (
        "no automatic rollback is promised")
    assert RELAY.joinpath("instances.tf").read_text().count("auto_rollback          = false") == 1
