"""The design's invariants (issue 6, docs/aws-deployment.md), checked on the Terraform's own values.

Values are followed through variables, module calls and locals to their defaults (and to
terraform.tfvars.example for the inputs that have none), so a change anywhere along the chain is seen.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from relay.config import DEFAULT_MAX_CALL_S
from tests.infra.conftest import (
    INFRA,
    RELAY_TEMPLATES,
    ROOT,
    TEST_REGION,
    Stack,
    parse_unit,
    render,
    terraform_string,
)

RELAY_SECRETS = {"OPENAI_API_KEY", "TWILIO_AUTH_TOKEN", "STREAM_TOKEN_SECRET", "DIAGNOSTIC_TOKEN"}
WEBHOOK_SECRETS = {"TWILIO_AUTH_TOKEN", "STREAM_TOKEN_SECRET"}


def relay(stack: Stack, type_name: str, name: str) -> dict[str, Any]:
    return stack.modules["relay"].resource(type_name, name)


def webhook(stack: Stack, type_name: str, name: str) -> dict[str, Any]:
    return stack.modules["webhook"].resource(type_name, name)


def value(stack: Stack, where: str | None, expression: Any) -> Any:
    return stack.resolve(where, expression)


# -- load balancer --------------------------------------------------------------------------


def test_only_an_https_443_listener(stack: Stack) -> None:
    listeners = [(where, name, body) for where, module in [("root", stack.root), *stack.modules.items()]
                 for name, body in module.resources.get("aws_lb_listener", {}).items()]
    assert len(listeners) == 1, "exactly one listener: HTTPS:443 (no :80 listener, not even a redirect)"
    _, _, listener = listeners[0]
    assert listener["port"] == 443
    assert listener["protocol"] == "HTTPS"
    assert value(stack, "relay", listener["ssl_policy"]).startswith("ELBSecurityPolicy-TLS13-")
    assert listener["certificate_arn"] == "${aws_acm_certificate_validation.this.certificate_arn}", (
        "the listener must wait for the certificate's DNS validation")
    (action,) = listener["default_action"]
    assert action == {"type": "forward", "target_group_arn": "${aws_lb_target_group.this.arn}"}


def test_target_group_is_http_80_with_healthz(stack: Stack) -> None:
    group = relay(stack, "aws_lb_target_group", "this")
    assert (group["protocol"], group["port"]) == ("HTTP", 80)
    (check,) = group["health_check"]
    assert check["path"] == "/healthz"
    assert check["matcher"] == "200"
    assert check["port"] == "traffic-port"


def test_load_balancer_settings(stack: Stack) -> None:
    lb = relay(stack, "aws_lb", "this")
    assert lb["load_balancer_type"] == "application"
    assert lb["internal"] is False
    assert lb["drop_invalid_header_fields"] is True
    assert lb["subnets"] == "${var.subnet_ids}"
    idle = value(stack, "relay", lb["idle_timeout"])
    assert 1 <= idle <= 4000, "AWS range of idle_timeout"
    assert idle >= 3600, "a silent call must not be cut by the load balancer"


def test_deregistration_delay_is_within_the_aws_range(stack: Stack) -> None:
    delay = value(stack, "relay", relay(stack, "aws_lb_target_group", "this")["deregistration_delay"])
    assert 0 <= delay <= 3600


# -- the shutdown chain ---------------------------------------------------------------------


def gunicorn_graceful_timeout(env: dict[str, str]) -> int:
    """graceful_timeout from the real relay/gunicorn.conf.py, executed with ``env``."""
    code = "import runpy; print(runpy.run_path('relay/gunicorn.conf.py')['graceful_timeout'])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": os.environ.get("PATH", ""), **env}, timeout=60)
    assert result.returncode == 0, f"relay/gunicorn.conf.py refused infra's environment:\n{result.stderr}"
    return int(result.stdout.strip())


def dummy_secrets() -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-dummy-for-tests", "TWILIO_AUTH_TOKEN": "dummy-auth-token",
            "STREAM_TOKEN_SECRET": "d" * 48, "DIAGNOSTIC_TOKEN": "t" * 40}


def rendered_unit(stack: Stack) -> dict[str, dict[str, list[str]]]:
    unit_vars = resolved_unit_vars(stack)
    return parse_unit(render((RELAY_TEMPLATES / "relay.service.tftpl").read_text(), unit_vars))


def resolved_unit_vars(stack: Stack) -> dict[str, Any]:
    """local.unit_vars, with test values only where terraform would read AWS."""
    raw = stack.modules["relay"].locals["unit_vars"]
    resolved = {}
    for key, expression in raw.items():
        if key == "aws_region":
            assert expression == "${local.region}"
            resolved[key] = TEST_REGION
        elif key == "secret_parameters":
            resolved[key] = " ".join(ssm_parameter_names(stack)[name] for name in sorted(RELAY_SECRETS))
        else:
            resolved[key] = value(stack, "relay", expression)
    return resolved


def ssm_parameter_names(stack: Stack) -> dict[str, str]:
    """{ENV_NAME: SSM parameter name} of the root's secrets."""
    names = {}
    for body in stack.root.resources["aws_ssm_parameter"].values():
        name = value(stack, None, body["name"])
        names[name.rsplit("/", 1)[-1]] = name
    return names


def test_max_call_lt_deregistration_le_graceful_lt_timeout_stop_sec(
        stack: Stack, relay_env_values: dict[str, Any]) -> None:
    # The relay's maximum call length: what Terraform passes, or the relay's own default.
    max_call = int(relay_env_values.get("RELAY_MAX_CALL_SECONDS", DEFAULT_MAX_CALL_S))
    delay = value(stack, "relay", relay(stack, "aws_lb_target_group", "this")["deregistration_delay"])
    env = {key: terraform_string(v) for key, v in relay_env_values.items()}
    graceful = gunicorn_graceful_timeout({**env, **dummy_secrets()})
    (stop,) = rendered_unit(stack)["Service"]["TimeoutStopSec"]
    assert max_call < delay <= graceful < int(stop), (
        f"max call {max_call} < deregistration {delay} <= graceful_timeout {graceful} "
        f"< TimeoutStopSec {stop} must hold, or a deploy cuts calls")


def test_the_validations_enforce_the_chain(stack: Stack) -> None:
    def conditions(name: str) -> str:
        return " ".join(rule["condition"] for rule in stack.root.variables[name]["validation"])

    assert "var.relay_max_call_seconds < var.relay_deregistration_delay_seconds" in conditions(
        "relay_max_call_seconds")
    assert "var.relay_graceful_timeout_seconds >= var.relay_deregistration_delay_seconds" in conditions(
        "relay_graceful_timeout_seconds")
    assert "var.relay_stop_timeout_seconds > var.relay_graceful_timeout_seconds" in conditions(
        "relay_stop_timeout_seconds")
    assert "var.alb_idle_timeout_seconds >= 1 && var.alb_idle_timeout_seconds <= 4000" in conditions(
        "alb_idle_timeout_seconds")
    assert ("var.relay_deregistration_delay_seconds >= 0 && var.relay_deregistration_delay_seconds <= 3600"
            in conditions("relay_deregistration_delay_seconds"))
    domain = stack.root.variables["relay_domain_name"]["validation"][0]["condition"]
    pattern = re.search(r'regex\("(.*)", var\.relay_domain_name\)', domain)
    assert pattern, domain
    regex = pattern.group(1).replace("\\\\", "\\")
    assert re.fullmatch(regex, "relay.example.com")
    for bad in ("https://relay.example.com", "relay.example.com/", "relay", "Relay.Example.com",
                "relay.example.com."):
        assert not re.fullmatch(regex, bad), bad


def test_relay_accepts_the_environment_infra_writes(relay_env_values: dict[str, Any]) -> None:
    """RelayConfig.from_env (run by gunicorn's master at boot) takes Terraform's settings as they are."""
    from relay.config import RelayConfig

    env = {key: terraform_string(v) for key, v in relay_env_values.items()}
    config = RelayConfig.from_env({**env, **dummy_secrets()}, cores=2)
    assert config.relay_bind == "0.0.0.0:80"
    assert config.relay_public_url == "wss://relay.example.com"
    assert config.stream_url == "wss://relay.example.com/twilio/realtime"


# -- instances ------------------------------------------------------------------------------


def test_launch_template_requires_imdsv2(stack: Stack) -> None:
    template = relay(stack, "aws_launch_template", "this")
    (metadata,) = template["metadata_options"]
    assert metadata["http_tokens"] == "required"
    assert metadata["http_endpoint"] == "enabled"
    assert metadata["http_put_response_hop_limit"] == 1
    assert template["update_default_version"] is True


def test_autoscaling_group_rolls_with_latest_version(stack: Stack) -> None:
    group = relay(stack, "aws_autoscaling_group", "this")
    (template,) = group["launch_template"]
    assert template["version"] == "${aws_launch_template.this.latest_version}", (
        "a refresh does not start for $Latest (docs/aws-deployment.md#draining-and-instance-refresh)")
    assert group["health_check_type"] == "ELB"
    assert group["target_group_arns"] == ["${aws_lb_target_group.this.arn}"]
    (refresh,) = group["instance_refresh"]
    assert refresh["strategy"] == "Rolling"
    (preferences,) = refresh["preferences"]
    assert (preferences["min_healthy_percentage"], preferences["max_healthy_percentage"]) == (100, 200)
    assert value(stack, "relay", group["min_size"]) >= 2, "one relay per availability zone at least"


def test_user_data_is_the_cloud_init_template(stack: Stack) -> None:
    template = relay(stack, "aws_launch_template", "this")
    cloud_init = '"${path.module}/templates/cloud-init.yaml.tftpl"'
    assert template["user_data"] == f"${{base64encode(templatefile({cloud_init}, local.cloud_init_vars))}}"


def test_bundle_key_is_its_hash(stack: Stack) -> None:
    module = stack.modules["relay"]
    assert module.locals["bundle_sha256"] == "${filesha256(var.bundle_path)}"
    assert module.locals["bundle_key"] == "relay/${local.bundle_sha256}.zip"
    assert module.resource("aws_s3_object", "bundle")["key"] == "${local.bundle_key}"
    assert module.locals["install_vars"]["bundle_key"] == "${aws_s3_object.bundle.key}"


# -- network --------------------------------------------------------------------------------


def test_relay_port_80_is_open_only_to_the_load_balancer(stack: Stack) -> None:
    module = stack.modules["relay"]
    for group in module.resources["aws_security_group"].values():
        assert "ingress" not in group and "egress" not in group, "rules are separate resources"
    assert "aws_security_group_rule" not in module.resources
    ingress = module.resources["aws_vpc_security_group_ingress_rule"]
    relay_group, alb_group = "${aws_security_group.relay.id}", "${aws_security_group.alb.id}"
    to_relay = [rule for rule in ingress.values() if rule["security_group_id"] == relay_group]
    assert to_relay == [{
        "security_group_id": "${aws_security_group.relay.id}",
        "description": to_relay[0]["description"],
        "ip_protocol": "tcp",
        "from_port": 80,
        "to_port": 80,
        "referenced_security_group_id": "${aws_security_group.alb.id}",
    }]
    to_alb = [rule for rule in ingress.values() if rule["security_group_id"] == alb_group]
    assert {(rule["from_port"], rule["to_port"]) for rule in to_alb} == {(443, 443)}
    assert len(ingress) == len(to_relay) + len(to_alb)


def test_relay_instances_are_in_the_load_balancers_subnets(stack: Stack) -> None:
    assert relay(stack, "aws_autoscaling_group", "this")["vpc_zone_identifier"] == "${var.subnet_ids}"
    subnets = stack.root.calls["relay"]["subnet_ids"]
    assert subnets == "${local.subnet_ids}"
    assert "length(var.subnet_ids) >= 2" in stack.modules["relay"].variables["subnet_ids"]["validation"][0][
        "condition"]


# -- webhook --------------------------------------------------------------------------------


def test_webhook_lambda(stack: Stack) -> None:
    function = webhook(stack, "aws_lambda_function", "this")
    assert function["runtime"] == "python3.12"
    assert function["handler"] == "webhook_app.lambda_handler.handler"
    assert function["filename"] == "${var.zip_path}"
    assert function["source_code_hash"] == "${filebase64sha256(var.zip_path)}"
    zip_default = stack.root.variables["webhook_zip_path"]["default"]
    assert zip_default == "../build/webhook-lambda.zip", "where make webhook-zip writes it"
    url = webhook(stack, "aws_lambda_function_url", "this")
    assert url["authorization_type"] == "NONE"
    text = (INFRA / "modules/webhook/main.tf").read_text()
    block = text[text.index('resource "aws_lambda_function_url" "this" {'):]
    block = block[: block.index("\n}\n")]
    assert re.search(r"#checkov:skip=CKV_AWS_258:\S.*X-Twilio-Signature", block), (
        "the CKV_AWS_258 skip sits inside the Function URL block and says why")


def test_webhook_relay_public_url_is_wss_without_query(stack: Stack) -> None:
    function = webhook(stack, "aws_lambda_function", "this")
    (environment,) = function["environment"]
    # variables = { for key, value in {...} : key => value if value != null }: read the inner object.
    expression = environment["variables"]
    match = re.search(r"RELAY_PUBLIC_URL\s*=\s*var\.relay_public_url", expression)
    assert match, expression
    url = value(stack, "webhook", "${var.relay_public_url}")
    parts = urlsplit(url)
    assert parts.scheme == "wss"
    assert parts.hostname == "relay.example.com"
    assert not parts.query and not parts.fragment and parts.path == "", "Twilio drops query strings"
    assert url == value(stack, "relay", "${local.relay_public_url}"), "webhook and relay agree"


def test_webhook_environment_holds_no_secret(stack: Stack) -> None:
    (environment,) = webhook(stack, "aws_lambda_function", "this")["environment"]
    names = set(re.findall(r"\b([A-Z][A-Z0-9_]+)\s*=", environment["variables"]))
    assert names == {"RELAY_PUBLIC_URL", "SSM_PARAMETER_PREFIX", "FALLBACK_MESSAGE",
                     "LIVELINE_SECRETS_VERSION"}
    assert not names & (RELAY_SECRETS | WEBHOOK_SECRETS)


def test_webhook_public_url_reaches_the_handler_through_ssm(stack: Stack) -> None:
    module = stack.modules["webhook"]
    parameter = module.resource("aws_ssm_parameter", "public_url")
    assert parameter["name"] == "${local.public_url_parameter}"
    assert module.locals["public_url_parameter"] == "${var.ssm_parameter_prefix}/WEBHOOK_PUBLIC_URL"
    assert parameter["value"] == "${local.public_url}"
    assert module.locals["public_url"] == '${trimsuffix(aws_lambda_function_url.this.function_url, "/")}'
    assert stack.root.calls["webhook"]["ssm_parameter_prefix"] == "${local.ssm_prefix}"


def handler_constants() -> dict[str, Any]:
    """The SSM names webhook_app/lambda_handler.py reads (parsed: importing it runs the cold start)."""
    tree = ast.parse((ROOT / "webhook_app/lambda_handler.py").read_text())
    wanted = {"SSM_PREFIX_VARIABLE", "SSM_SECRET_NAMES", "SSM_URL_NAME"}
    found = {target.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
             for target in node.targets if isinstance(target, ast.Name) and target.id in wanted}
    assert set(found) == wanted, "webhook_app/lambda_handler.py no longer names its SSM parameters"
    return found


def test_webhook_handler_reads_what_infra_writes_and_grants(stack: Stack) -> None:
    names = handler_constants()
    (environment,) = webhook(stack, "aws_lambda_function", "this")["environment"]
    pattern = names["SSM_PREFIX_VARIABLE"] + r"\s*=\s*var\.ssm_parameter_prefix"
    assert re.search(pattern, environment["variables"])
    # Its two secrets are the parameters the webhook module may read...
    granted = set(stack.root.calls["webhook"]["secret_parameters"])
    assert set(names["SSM_SECRET_NAMES"]) == WEBHOOK_SECRETS == granted
    # ...named <prefix>/<NAME>, as the handler builds them...
    prefix = value(stack, None, "${local.ssm_prefix}")
    for name in names["SSM_SECRET_NAMES"]:
        assert ssm_parameter_names(stack)[name] == f"{prefix}/{name}"
    # ...and the URL parameter is the one the module writes and grants.
    assert value(stack, "webhook", "${local.public_url_parameter}") == f"{prefix}/{names['SSM_URL_NAME']}"


def test_webhook_accepts_the_environment_infra_sets(stack: Stack) -> None:
    from webhook_app.config import WebhookConfig

    env = {
        "RELAY_PUBLIC_URL": value(stack, "webhook", "${var.relay_public_url}"),
        "SSM_PARAMETER_PREFIX": value(stack, "webhook", "${var.ssm_parameter_prefix}"),
        "LIVELINE_SECRETS_VERSION": "1",
        # What the handler lays over the environment from SSM at cold start:
        "WEBHOOK_PUBLIC_URL": "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
        "TWILIO_AUTH_TOKEN": "0123456789abcdef" * 2,
        "STREAM_TOKEN_SECRET": "s" * 48,
    }
    config = WebhookConfig.from_env(env)
    assert config.relay_public_url == "wss://relay.example.com"


# -- secrets and IAM ------------------------------------------------------------------------


def test_secrets_are_write_only_secure_strings(stack: Stack) -> None:
    parameters = stack.root.resources["aws_ssm_parameter"]
    assert set(ssm_parameter_names(stack)) == RELAY_SECRETS
    for name, body in parameters.items():
        assert body["type"] == "SecureString"
        assert "value" not in body and "insecure_value" not in body, f"{name} would store its value in state"
        assert body["value_wo"].startswith(("${var.", "${ephemeral.random_password."))
        assert body["value_wo_version"] == f"${{var.secret_versions.{name}}}"
        assert body["key_id"] == "${aws_kms_key.this.arn}"
        assert value(stack, None, body["name"]) == f"/liveline/{name.upper()}"
    for variable in ("openai_api_key", "twilio_auth_token"):
        spec = stack.root.variables[variable]
        assert spec["sensitive"] is True and spec["ephemeral"] is True
        assert "default" not in spec


def test_each_half_gets_exactly_its_secrets(stack: Stack) -> None:
    relay_secrets = stack.root.calls["relay"]["secret_parameters"]
    webhook_secrets = stack.root.calls["webhook"]["secret_parameters"]
    assert set(relay_secrets) == RELAY_SECRETS
    assert set(webhook_secrets) == WEBHOOK_SECRETS
    for secrets in (relay_secrets, webhook_secrets):
        for env_name, entry in secrets.items():
            resource = f"aws_ssm_parameter.{env_name.lower()}"
            assert entry == {"name": f"${{{resource}.name}}", "arn": f"${{{resource}.arn}}"}


def statements(module: Any, document: str) -> list[dict[str, Any]]:
    return module.data["aws_iam_policy_document"][document]["statement"]  # type: ignore[no-any-return]


def test_relay_role_reads_only_its_parameters_and_bundles(stack: Stack) -> None:
    module = stack.modules["relay"]
    by_sid = {s["sid"]: s for s in statements(module, "this")}
    assert set(by_sid) == {"ReadRelaySecrets", "DecryptViaSsmAndS3", "ReadRelayBundles"}
    assert by_sid["ReadRelaySecrets"]["actions"] == ["ssm:GetParameters"]
    assert by_sid["ReadRelaySecrets"]["resources"] == (
        "${sort([for p in values(var.secret_parameters) : p.arn])}")
    assert by_sid["DecryptViaSsmAndS3"]["actions"] == ["kms:Decrypt"]
    assert by_sid["DecryptViaSsmAndS3"]["resources"] == ["${var.kms_key_arn}"]
    (condition,) = by_sid["DecryptViaSsmAndS3"]["condition"]
    assert condition["variable"] == "kms:ViaService"
    assert by_sid["ReadRelayBundles"] == {
        "sid": "ReadRelayBundles", "actions": ["s3:GetObject"],
        "resources": ["${aws_s3_bucket.bundle.arn}/relay/*"]}
    # Session Manager: only the channel actions; never the managed policy that reads every parameter.
    text = (INFRA / "modules/relay/main.tf").read_text()
    assert "AmazonSSMManagedInstanceCore\n" not in text.replace("AmazonSSMManagedInstanceCore would", "")
    for statement in statements(module, "session_manager"):
        for action in statement["actions"]:
            assert action.startswith(("ssmmessages:", "ssm:UpdateInstanceInformation")), action


def test_webhook_role_reads_only_its_parameters(stack: Stack) -> None:
    module = stack.modules["webhook"]
    by_sid = {s["sid"]: s for s in statements(module, "this")}
    assert set(by_sid) == {"WriteOwnLogs", "ReadWebhookParameters", "DecryptViaSsm"}
    assert by_sid["ReadWebhookParameters"]["actions"] == ["ssm:GetParameter", "ssm:GetParameters"]
    assert by_sid["ReadWebhookParameters"]["resources"] == "${local.read_parameter_arns}"
    assert "GetParametersByPath" not in (INFRA / "modules/webhook/main.tf").read_text(), (
        "by path, the webhook could read the relay's OpenAI key under the same prefix")
    arns = module.locals["read_parameter_arns"]
    assert "var.secret_parameters" in arns and "local.public_url_parameter_arn" in arns


def test_no_iam_statement_allows_everything(stack: Stack) -> None:
    for where, module in stack.modules.items():
        for document, body in module.data.get("aws_iam_policy_document", {}).items():
            for statement in body["statement"]:
                actions = statement.get("actions", [])
                assert "*" not in actions and not any(a.endswith(":*") for a in actions if
                                                      statement.get("effect") != "Deny"), (where, document)
                if statement.get("resources") == ["*"]:
                    assert all(a.startswith("ssmmessages:") for a in actions), (
                        f"{where}/{document}: '*' only for actions without resource-level permissions")


# -- no secret literal anywhere -------------------------------------------------------------

SECRET_PATTERNS = {
    "OpenAI key": re.compile(r"sk-[A-Za-z0-9_-]{16,}"),
    "AWS access key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "Twilio account SID or key": re.compile(r"\b(AC|SK)[0-9a-f]{32}\b"),
    "long hex string": re.compile(r"\b[0-9a-fA-F]{32,}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "secret assigned a literal": re.compile(
        r"(?i)\b\w*(api_key|auth_token|secret|password|token)\w*\s*=\s*\"(?=[^\"]*[0-9])[A-Za-z0-9_+=.~-]{8,}\""),
}


INFRA_FILES = sorted(p for p in INFRA.rglob("*") if p.is_file() and ".terraform" not in p.parts)


@pytest.mark.parametrize("path", INFRA_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_no_secret_literal_in_infra(path: Path) -> None:
    text = path.read_text()
    found = [f"{kind}: {m.group(0)[:12]}..." for kind, pattern in SECRET_PATTERNS.items()
             for m in pattern.finditer(text)]
    assert not found, f"{path.relative_to(ROOT)} holds what looks like a secret: {found}"


def test_no_ssm_parameter_takes_a_literal_value(stack: Stack) -> None:
    for where, module in [(None, stack.root), *stack.modules.items()]:
        for name, body in module.resources.get("aws_ssm_parameter", {}).items():
            for attribute in ("value", "value_wo", "insecure_value"):
                if attribute in body:
                    assert str(body[attribute]).startswith("${"), f"{where}: {name}.{attribute} is a literal"


def test_secret_scan_would_catch_a_key() -> None:
    planted = 'value = "sk-proj-' + "A1b2" * 8 + '"'
    assert any(pattern.search(planted) for pattern in SECRET_PATTERNS.values())
    assert SECRET_PATTERNS["secret assigned a literal"].search('twilio_auth_token = "' + "x9" * 8 + '"')
    assert SECRET_PATTERNS["long hex string"].search("token " + "0123456789abcdef" * 2)


# -- outputs --------------------------------------------------------------------------------


def test_outputs_for_twilio_and_verify(stack: Stack) -> None:
    outputs = stack.root.outputs
    assert value(stack, None, outputs["relay_stream_url"]["value"]) == "wss://relay.example.com/twilio/realtime"
    assert value(stack, None, outputs["relay_health_url"]["value"]) == "https://relay.example.com/healthz"
    assert value(stack, None, outputs["relay_public_url"]["value"]) == "wss://relay.example.com"
    assert outputs["webhook_url"]["value"] == "${module.webhook.voice_url}"
    assert stack.modules["webhook"].outputs["voice_url"]["value"] == "${local.public_url}/twilio/voice"
    assert "scripts/verify_deploy.py" in outputs["verify_command"]["value"]
    for name in ("sensitive",):
        assert not any(spec.get(name) for spec in outputs.values()), "no output carries a secret"
