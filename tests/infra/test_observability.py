"""Logs, metrics and alarms that outlive an instance (issue 17's infra part).

The CloudWatch agent's two configuration files are rendered from their templates and read as the agent
reads them; the alarms are checked against what the agent and the log metric filter actually publish, so
an alarm on a metric nobody sends fails here, not silently in production.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.infra.conftest import INFRA, ROOT, Stack, parse_unit, render
from tests.infra.test_design_invariants import resolved_unit_vars
from tests.infra.test_relay_templates import render_template

# The relay's Prometheus series (CONTRACTS: GET /metrics). The agent publishes counters, gauges and
# summaries; it drops histograms (CloudWatch agent user guide, "Prometheus metric type conversion").
COUNTERS_AND_GAUGES = {"liveline_calls_active", "liveline_calls_total", "liveline_upstream_failures_total",
                       "liveline_tool_calls_total", "liveline_barge_ins_total"}
HISTOGRAMS = {"liveline_first_audio_seconds", "liveline_tool_call_seconds"}
LABELS = {"liveline_calls_total": ["end_reason"], "liveline_upstream_failures_total": ["stage"],
          "liveline_tool_calls_total": ["tool", "outcome"]}


def relay(stack: Stack, type_name: str, name: str) -> dict[str, Any]:
    return stack.modules["relay"].resource(type_name, name)


def agent_config(stack: Stack) -> dict[str, Any]:
    return json.loads(render_template(stack, "cloudwatch-agent.json.tftpl"))  # type: ignore[no-any-return]


def scrape_config(stack: Stack) -> dict[str, Any]:
    return json.loads(render_template(stack, "prometheus.yaml.tftpl"))  # type: ignore[no-any-return]


# -- logs -------------------------------------------------------------------------------------


def test_relay_logs_go_to_a_log_group_with_a_retention(stack: Stack) -> None:
    group = relay(stack, "aws_cloudwatch_log_group", "relay")
    assert stack.resolve("relay", group["name"]) == "/liveline/relay"
    assert group["retention_in_days"] == "${var.log_retention_days}"
    assert stack.resolve("relay", "${var.log_retention_days}") == 30
    assert group["kms_key_id"] == "${var.kms_key_arn}"
    agent = agent_config(stack)
    assert agent["agent"]["run_as_user"] == "root", "it reads the root-only metrics token"
    streams = {entry["log_stream_name"]: entry for entry in agent["logs"]["logs_collected"]["files"]["collect_list"]}
    assert set(streams) == {"{instance_id}", "{instance_id}/boot"}
    assert {entry["log_group_name"] for entry in streams.values()} == {"/liveline/relay"}
    # The key lets CloudWatch Logs encrypt the stack's groups (/liveline/...) as well as the webhook's.
    kms = (INFRA / "main.tf").read_text()
    assert ":log-group:/${var.name}/*" in kms and ":log-group:/aws/lambda/${var.name}-*" in kms


def test_the_deploy_logs_json_lines(relay_env_values: dict[str, Any]) -> None:
    assert relay_env_values["RELAY_LOG_FORMAT"] == "json"


def test_call_report_url_reaches_the_relay_when_set(stack: Stack) -> None:
    env = stack.modules["relay"].locals["relay_env"]
    assert env["CALL_REPORT_URL"] == "${var.call_report_url}"
    assert stack.root.calls["relay"]["call_report_url"] == "${var.call_report_url}"
    assert stack.root.variables["call_report_url"]["default"] is None
    rule = stack.root.variables["call_report_url"]["validation"][0]["condition"]
    pattern = re.search(r'regex\("(.*)", var\.call_report_url\)', rule).group(1)
    pattern = pattern.replace('\\"', '"').replace("\\\\", "\\")
    assert re.fullmatch(pattern, "https://reports.example.com/liveline?team=ops")
    for bad in ("http://reports.example.com/", 'https://x/"', "https://x/$HOME", "https://x/a b"):
        assert not re.fullmatch(pattern, bad), f"{bad!r} would not be carried literally by systemd"


# -- metrics ----------------------------------------------------------------------------------


def test_the_agent_scrapes_metrics_with_the_diagnostic_token(stack: Stack, relay_env_values: dict[str, Any]) -> None:
    (job,) = scrape_config(stack)["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["scheme"] == "http"
    token_file = stack.resolve("relay", "${local.metrics_token_file}")
    assert job["authorization"] == {"type": "Bearer", "credentials_file": token_file}
    unit = parse_unit(render((ROOT / "infra/modules/relay/templates/relay.service.tftpl").read_text(),
                             resolved_unit_vars(stack)))["Service"]
    assert f"--value-file DIAGNOSTIC_TOKEN={token_file}" in unit["ExecStartPre"][0], (
        "the file the agent reads is the relay's DIAGNOSTIC_TOKEN, written when the relay starts")
    (targets,) = job["static_configs"]
    port = relay_env_values["RELAY_BIND"].rsplit(":", 1)[1]
    assert targets["targets"] == [f"127.0.0.1:{port}"], "the relay on this instance, never through the ALB"
    (keep,) = job["metric_relabel_configs"]
    assert keep == {"source_labels": ["__name__"], "regex": "liveline_.*", "action": "keep"}
    prometheus = agent_config(stack)["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["prometheus_config_path"] == stack.resolve("relay", "${local.prometheus_config}")
    assert prometheus["log_group_name"] == stack.resolve("relay", "${local.metrics_log_group_name}")


def published(stack: Stack) -> dict[str, set[tuple[str, ...]]]:
    """{metric: dimension sets} as the agent's embedded-metric-format declarations publish them."""
    emf = agent_config(stack)["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
    (job,) = scrape_config(stack)["scrape_configs"]
    metrics: dict[str, set[tuple[str, ...]]] = {}
    for declaration in emf["metric_declaration"]:
        assert declaration["source_labels"] == ["job"] and re.fullmatch(declaration["label_matcher"], job["job_name"])
        for selector in declaration["metric_selectors"]:
            name = re.fullmatch(r"\^(\w+)\$", selector).group(1)
            metrics.setdefault(name, set()).update(tuple(d) for d in declaration["dimensions"])
    return metrics


def test_the_agent_publishes_the_relays_counters_and_gauge(stack: Stack) -> None:
    metrics = published(stack)
    assert set(metrics) == COUNTERS_AND_GAUGES
    assert not set(metrics) & HISTOGRAMS, "the agent would drop them: first audio comes from the logs"
    for name, dimensions in metrics.items():
        assert ("AutoScalingGroupName",) in dimensions, f"{name}: the fleet's total"
        for labels in [LABELS.get(name)] if name in LABELS else []:
            assert ("AutoScalingGroupName", *labels) in dimensions, f"{name} by {labels}"
    emf = agent_config(stack)["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
    assert set(emf["metric_unit"]) == COUNTERS_AND_GAUGES
    assert emf["metric_namespace"] == stack.resolve("relay", "${local.metric_namespace}")


def test_first_audio_comes_from_the_relays_json_log_line(stack: Stack) -> None:
    import logging

    from relay.log import JsonFormatter

    metric_filter = relay(stack, "aws_cloudwatch_log_metric_filter", "first_audio")
    assert metric_filter["log_group_name"] == "${aws_cloudwatch_log_group.relay.name}"
    event = re.fullmatch(r'\{ \$\.event = "([\w.]+)" \}', metric_filter["pattern"]).group(1)
    (transformation,) = metric_filter["metric_transformation"]
    field = re.fullmatch(r"\$\.(\w+)", transformation["value"]).group(1)
    assert transformation["unit"] == "Milliseconds"
    assert stack.resolve("relay", transformation["name"]) == "first_audio_ms"
    # The relay's own logging call, formatted by its own JSON formatter (RELAY_LOG_FORMAT=json).
    source = "".join(path.read_text() for path in sorted((ROOT / "relay").glob("bridge*.py")))
    call = re.search(r'self\.log\.info\("(call\.first_audio [^"]*)", ', source)
    assert call, "the relay no longer logs call.first_audio: the first-audio metric and alarm would go silent"
    record = logging.LogRecord("relay.bridge", logging.INFO, "bridge.py", 1, call.group(1), (812.34,), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == event, "the metric filter's pattern matches the relay's line"
    assert isinstance(line[field], float) and line[field] == 812.3, "the value is a number, in milliseconds"


# -- alarms -----------------------------------------------------------------------------------


def alarms(stack: Stack) -> dict[str, dict[str, Any]]:
    return stack.modules["alarms"].resources["aws_cloudwatch_metric_alarm"]  # type: ignore[no-any-return]


def metrics_of(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric an alarm reads, with its namespace, name, statistic and dimensions."""
    if "metric_name" in alarm:
        return [{"namespace": alarm["namespace"], "metric_name": alarm["metric_name"],
                 "dimensions": alarm.get("dimensions", {})}]
    found = []
    for query in alarm.get("metric_query", []):
        found += query.get("metric", [])
    for block in alarm.get("dynamic", []):
        query = block["metric_query"]
        (content,) = query["content"]
        (metric,) = content["metric"]
        assert metric["metric_name"] == "${metric_query.value}"
        found += [{**metric, "metric_name": name} for name in query["for_each"].values()]
    return found


def test_the_day_one_alarms_exist_and_notify_the_topic(stack: Stack) -> None:
    assert set(alarms(stack)) == {"no_healthy_relay", "calls_failing", "first_audio_slow", "webhook_errors",
                                  "relay_metrics_missing"}
    for name, alarm in alarms(stack).items():
        assert alarm["alarm_actions"] == "${local.actions}" and alarm["ok_actions"] == "${local.actions}", name
        assert alarm["alarm_name"].startswith("${var.name}-"), "the topic policy admits this stack's alarms"
        assert "README: Alarms" in alarm["alarm_description"], name
    assert stack.modules["alarms"].locals["actions"] == ["${aws_sns_topic.this.arn}"]


def test_each_alarm_reads_a_metric_that_is_published(stack: Stack) -> None:
    namespace = "${var.metric_namespace}"
    relay_metrics = set(published(stack)) | {"${var.first_audio_metric}", "${var.active_calls_metric}"}
    call = stack.root.calls["alarms"]
    assert call["metric_namespace"] == "${module.relay.metric_namespace}"
    assert stack.resolve(None, "${module.relay.first_audio_metric}") == "first_audio_ms"
    assert stack.resolve(None, "${module.relay.active_calls_metric}") == "liveline_calls_active"
    by_alarm = {name: metrics_of(alarm) for name, alarm in alarms(stack).items()}
    for name, metrics in by_alarm.items():
        assert metrics, name
        for metric in metrics:
            if metric["namespace"] == namespace:
                assert metric["metric_name"] in relay_metrics, f"{name}: {metric['metric_name']} is never sent"
    assert {m["metric_name"] for m in by_alarm["no_healthy_relay"]} == {"HealthyHostCount"}
    assert by_alarm["no_healthy_relay"][0]["dimensions"] == {
        "TargetGroup": "${var.target_group_arn_suffix}", "LoadBalancer": "${var.alb_arn_suffix}"}
    assert alarms(stack)["no_healthy_relay"]["treat_missing_data"] == "breaching"
    assert {m["metric_name"] for m in by_alarm["calls_failing"]} == {
        "liveline_upstream_failures_total", "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count"}
    assert {m["metric_name"] for m in by_alarm["webhook_errors"]} == {"Errors", "Throttles", "Url5xxCount"}
    assert all(m["dimensions"] == {"FunctionName": "${var.webhook_function_name}"}
               for m in by_alarm["webhook_errors"])
    assert alarms(stack)["first_audio_slow"]["extended_statistic"] == "p90"
    assert by_alarm["first_audio_slow"][0]["metric_name"] == "${var.first_audio_metric}"
    missing = alarms(stack)["relay_metrics_missing"]
    assert (missing["metric_name"], missing["statistic"], missing["treat_missing_data"]) == (
        "${var.active_calls_metric}", "SampleCount", "breaching")
    assert call["target_group_arn_suffix"] == "${module.relay.target_group_arn_suffix}"
    assert call["alb_arn_suffix"] == "${module.relay.alb_arn_suffix}"
    assert call["webhook_function_name"] == "${module.webhook.function_name}"
    assert call["autoscaling_group_name"] == "${module.relay.autoscaling_group_name}"


def test_the_topic_is_encrypted_and_its_subscribers_are_a_variable(stack: Stack) -> None:
    module = stack.modules["alarms"]
    topic = module.resource("aws_sns_topic", "this")
    assert topic["kms_master_key_id"] == "${var.kms_key_arn}"
    (statement,) = module.data["aws_iam_policy_document"]["topic"]["statement"]
    assert statement["actions"] == ["sns:Publish"]
    (principal,) = statement["principals"]
    assert principal == {"type": "Service", "identifiers": ["cloudwatch.amazonaws.com"]}
    (condition,) = statement["condition"]
    assert (condition["test"], condition["variable"]) == ("ArnLike", "aws:SourceArn")
    assert module.locals["alarm_arn_prefix"].endswith(":alarm:${var.name}-")
    subscription = module.resource("aws_sns_topic_subscription", "this")
    assert "var.subscribers" in subscription["for_each"]
    assert stack.root.calls["alarms"]["subscribers"] == "${var.alarm_subscribers}"
    assert stack.root.variables["alarm_subscribers"]["default"] == []
    # CloudWatch may use the stack's key to publish to the encrypted topic.
    kms = (INFRA / "main.tf").read_text()
    assert 'Principal = { Service = "cloudwatch.amazonaws.com" }' in kms
