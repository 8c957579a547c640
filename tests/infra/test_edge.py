"""Edge hardening (issue 14, 5): the load balancer, the operator-only paths, the webhook's concurrency, tags.

The listener's rules are evaluated here the way an Application Load Balancer does (priority order, path
patterns with ``*``, source addresses), on the rules exactly as the Terraform declares them, so the
test sees what a request from the internet would get.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from typing import Any

from relay.server import DIAGNOSTIC_PATH, HEALTH_PATH, STREAM_PATH
from tests.infra.conftest import Stack

# ALB limits: up to 3 values per condition, 5 per rule (Elastic Load Balancing user guide, "Listener
# rules": condition types).
VALUES_PER_CONDITION = 3
VALUES_PER_RULE = 5


def relay(stack: Stack, type_name: str, name: str) -> dict[str, Any]:
    return stack.modules["relay"].resource(type_name, name)


# -- load balancer ----------------------------------------------------------------------------


def test_load_balancer_mitigates_desync_and_logs_access(stack: Stack) -> None:
    lb = relay(stack, "aws_lb", "this")
    assert lb["desync_mitigation_mode"] == "strictest"
    (logs,) = lb["access_logs"]
    assert logs == {"bucket": "${aws_s3_bucket.access_logs.id}", "prefix": "alb", "enabled": True}
    assert lb["depends_on"] == ["${aws_s3_bucket_policy.access_logs}"], "ALB checks it may write when enabled"
    (rule,) = relay(stack, "aws_s3_bucket_lifecycle_configuration", "access_logs")["rule"]
    (expiration,) = rule["expiration"]
    assert expiration["days"] == "${var.access_log_retention_days}"
    assert stack.resolve("relay", "${var.access_log_retention_days}") == 30
    (sse,) = relay(stack, "aws_s3_bucket_server_side_encryption_configuration", "access_logs")["rule"]
    (default,) = sse["apply_server_side_encryption_by_default"]
    assert default == {"sse_algorithm": "AES256"}, "ALB access logs support SSE-S3 only"
    (block,) = [relay(stack, "aws_s3_bucket_public_access_block", "access_logs")]
    assert all(block[key] is True for key in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                              "restrict_public_buckets"))
    statements = stack.modules["relay"].data["aws_iam_policy_document"]["access_logs_bucket"]["statement"]
    writers = {s["sid"]: s for s in statements if s.get("actions") == ["s3:PutObject"]}
    assert set(writers) == {"LoadBalancerAccessLogs", "LoadBalancerLogDelivery"}
    for statement in writers.values():
        (resource,) = statement["resources"]
        assert resource == "${aws_s3_bucket.access_logs.arn}/alb/AWSLogs/${local.account_id}/*", (
            "under the prefix the load balancer writes, for this account only")


@dataclass
class Rule:
    """One listener rule as the load balancer evaluates it."""

    priority: int
    paths: list[str]
    sources: list[str] | None
    action: str  # "forward" or the fixed response's status code

    def matches(self, path: str, source: str) -> bool:
        if not any(fnmatch.fnmatchcase(path, pattern) for pattern in self.paths):
            return False
        if self.sources is None:
            return True
        address = ipaddress.ip_address(source)
        return any(address in ipaddress.ip_network(cidr) for cidr in self.sources)


def action_of(body: dict[str, Any]) -> str:
    (action,) = body["action"] if "action" in body else body["default_action"]
    if action["type"] == "forward":
        assert action["target_group_arn"] == "${aws_lb_target_group.this.arn}"
        return "forward"
    (response,) = action["fixed_response"]
    return str(response["status_code"])


def listener_rules(stack: Stack, allowed: list[str]) -> list[Rule]:
    """The listener's rules for diagnostic_allowed_cidrs = ``allowed``, in evaluation order."""
    resources = stack.modules["relay"].resources["aws_lb_listener_rule"]
    rules = []
    for name, body in resources.items():
        conditions = {key: value for condition in body["condition"] for key, value in condition.items()}
        (paths,) = conditions["path_pattern"]
        paths = stack.resolve("relay", paths["values"])
        if "for_each" in body:
            assert body["for_each"] == ("${{for index, chunk in chunklist(var.diagnostic_allowed_cidrs, "
                                        "local.operator_cidr_rule_size) : tostring(index) => chunk}}")
            assert body["priority"] == "${10 + tonumber(each.key)}"
            (sources,) = conditions["source_ip"]
            assert sources["values"] == "${each.value}"
            size = stack.resolve("relay", "${local.operator_cidr_rule_size}")
            chunks = [allowed[i:i + size] for i in range(0, len(allowed), size)]
            rules += [Rule(10 + index, paths, chunk, action_of(body)) for index, chunk in enumerate(chunks)]
        else:
            assert "source_ip" not in conditions, name
            rules.append(Rule(body["priority"], paths, None, action_of(body)))
    default = Rule(50_000, ["*"], None, action_of(relay(stack, "aws_lb_listener", "https")))
    return sorted(rules, key=lambda rule: rule.priority) + [default]


def route(rules: list[Rule], path: str, source: str = "198.51.100.20") -> str:
    return next(rule.action for rule in rules if rule.matches(path, source))


def test_listener_forwards_only_the_relays_public_paths(stack: Stack) -> None:
    assert stack.resolve("relay", "${var.diagnostic_allowed_cidrs}") == [], "nobody by default"
    rules = listener_rules(stack, [])
    for path in (STREAM_PATH, HEALTH_PATH, "/livez"):
        assert route(rules, path) == "forward", path
    for path in ("/", "/admin", "/twilio/realtime/x", "/twilio%2Frealtime", "/diagnostic%2Fopenai", "/metrics/x"):
        assert route(rules, path) == "404", path
    for path in (DIAGNOSTIC_PATH, "/diagnostic/anything", "/metrics"):
        assert route(rules, path) == "403", f"{path} is not served to the internet"


def test_operator_paths_are_served_to_allowed_addresses_only(stack: Stack) -> None:
    allowed = ["203.0.113.7/32", "198.51.100.0/28", "2001:db8::/64", "192.0.2.1/32", "192.0.2.99/32"]
    rules = listener_rules(stack, allowed)
    for source in ("203.0.113.7", "198.51.100.5", "2001:db8::1", "192.0.2.99"):
        assert route(rules, DIAGNOSTIC_PATH, source) == "forward", source
        assert route(rules, "/metrics", source) == "forward", source
    assert route(rules, DIAGNOSTIC_PATH, "203.0.113.8") == "403"
    assert route(rules, "/", "203.0.113.7") == "404", "allowed addresses get no other path"
    refused = relay(stack, "aws_lb_listener_rule", "operator_refused")
    (action,) = refused["action"]
    assert "relay_diagnostic_allowed_cidrs" in action["fixed_response"][0]["message_body"]
    assert "relay_diagnostic_allowed_cidrs" in stack.root.variables, "the 403 names a real variable"


def test_operator_rules_stay_within_the_load_balancers_limits(stack: Stack) -> None:
    size = stack.resolve("relay", "${local.operator_cidr_rule_size}")
    paths = stack.resolve("relay", "${local.operator_paths}")
    assert size <= VALUES_PER_CONDITION and len(paths) <= VALUES_PER_CONDITION
    assert size + len(paths) <= VALUES_PER_RULE
    public = stack.resolve("relay", "${local.public_paths}")
    assert len(public) <= VALUES_PER_CONDITION
    rule = stack.root.variables["relay_diagnostic_allowed_cidrs"]["validation"][0]["condition"]
    assert "length(var.relay_diagnostic_allowed_cidrs) <= 15" in rule and "cidrhost(cidr, 0)" in rule
    priorities = [rule.priority for rule in listener_rules(stack, ["203.0.113.0/32"] * 15)]
    assert len(priorities) == len(set(priorities)), "15 addresses: five rules, distinct priorities"
    assert max(p for p in priorities if p < 50) < 50 < 100 < 50_000


# -- the webhook ------------------------------------------------------------------------------


def test_the_webhook_has_reserved_concurrency(stack: Stack) -> None:
    function = stack.modules["webhook"].resource("aws_lambda_function", "this")
    assert function["reserved_concurrent_executions"] == "${var.reserved_concurrency}"
    assert stack.root.calls["webhook"]["reserved_concurrency"] == "${var.webhook_reserved_concurrency}"
    assert stack.resolve("webhook", "${var.reserved_concurrency}") == 20
    text = (stack.modules["webhook"].path / "main.tf").read_text()
    assert "CKV_AWS_115" not in text, "reserved concurrency is set: its checkov skip is gone"


# -- tags -------------------------------------------------------------------------------------


def test_tags_reach_instances_volumes_and_network_interfaces(stack: Stack) -> None:
    template = relay(stack, "aws_launch_template", "this")
    tagged = {spec["resource_type"]: spec["tags"] for spec in template["tag_specifications"]}
    assert set(tagged) == {"instance", "volume", "network-interface"}
    assert set(tagged.values()) == {"${local.instance_tags}"}
    assert stack.modules["relay"].locals["instance_tags"] == (
        '${merge(var.tags, {Name = "${var.name}-relay", Component = "relay"})}'), "the stack's tags and the relay's"
    assert stack.root.calls["relay"]["tags"] == "${local.tags}"
    assert stack.root.locals["tags"] == '${merge({Project = var.name, ManagedBy = "terraform"}, var.tags)}'
    provider = stack.root.files["providers.tf"]["provider"][0]["aws"]
    (default_tags,) = provider["default_tags"]
    assert default_tags["tags"] == "${local.tags}", "the same tags as every other resource"
    group = relay(stack, "aws_autoscaling_group", "this")
    (dynamic,) = group["dynamic"]
    tag = dynamic["tag"]
    assert tag["for_each"] == "${local.instance_tags}"
    (content,) = tag["content"]
    assert content == {"key": "${tag.key}", "value": "${tag.value}", "propagate_at_launch": True}


# -- egress -----------------------------------------------------------------------------------


def test_relays_reach_twilio_tools_and_report_urls(stack: Stack) -> None:
    egress = stack.modules["relay"].resources["aws_vpc_security_group_egress_rule"]
    https = egress["relay_https"]
    assert (https["ip_protocol"], https["from_port"], https["to_port"], https["cidr_ipv4"]) == (
        "tcp", 443, 443, "0.0.0.0/0"), "api.twilio.com, tool URLs, CALL_REPORT_URL: any HTTPS host"
    extra = egress["relay_extra"]
    assert extra["for_each"] == "${toset([for port in var.egress_extra_ports : tostring(port)])}"
    assert (extra["from_port"], extra["to_port"]) == ("${tonumber(each.value)}", "${tonumber(each.value)}")
    assert stack.root.calls["relay"]["egress_extra_ports"] == "${var.relay_egress_extra_ports}"
    assert stack.resolve("relay", "${var.egress_extra_ports}") == []
    relay_group = "${aws_security_group.relay.id}"
    assert {name for name, rule in egress.items() if rule["security_group_id"] == relay_group} == {
        "relay_https", "relay_extra"}, "nothing else leaves the relays"
