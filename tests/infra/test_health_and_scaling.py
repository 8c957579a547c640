"""A full relay stops getting calls; a broken one is replaced; the fleet scales on calls (issue 14, 1-2).

The Terraform's values are checked with python-hcl2, and the on-instance half, ``relay-health.py``, runs
for real: against a loopback stand-in for the relay's /healthz and /livez, and a stand-in ``aws`` CLI
that records what the instance would have told its Auto Scaling group.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.pywsgi import WSGIServer

from tests.infra.conftest import RELAY_TEMPLATES, ROOT, TEST_REGION, Stack, exec_argv, parse_unit, render

RELAY_HEALTH = RELAY_TEMPLATES / "relay-health.py"
INSTANCE_ID = "i-0123456789abcdef0"


def relay(stack: Stack, type_name: str, name: str) -> dict[str, Any]:
    return stack.modules["relay"].resource(type_name, name)


# -- the group: "broken" only, never "full" ---------------------------------------------------


def test_a_full_relay_is_never_replaced(stack: Stack) -> None:
    group = relay(stack, "aws_autoscaling_group", "this")
    assert group["health_check_type"] == "EC2", (
        "with ELB health checks the group would replace every relay whose /healthz says 503 (full)")
    assert group["health_check_grace_period"] == 0, "instances enter service ready (launch hook)"
    (check,) = relay(stack, "aws_lb_target_group", "this")["health_check"]
    assert check["path"] == "/healthz", "the load balancer still stops routing to a full or draining relay"
    module = stack.modules["relay"]
    assert group["target_group_arns"] == ["${aws_lb_target_group.this.arn}"]
    assert len(module.resources["aws_lb_target_group"]) == 1
    assert "aws_autoscaling_traffic_source_attachment" not in module.resources
    assert "aws_autoscaling_attachment" not in module.resources


def test_every_replacement_launches_first(stack: Stack) -> None:
    group = relay(stack, "aws_autoscaling_group", "this")
    (policy,) = group["instance_maintenance_policy"]
    assert (policy["min_healthy_percentage"], policy["max_healthy_percentage"]) == (100, 200), (
        "a relay replaced for failing its watchdog is replaced by launching first")
    (refresh,) = group["instance_refresh"]
    (preferences,) = refresh["preferences"]
    assert (preferences["min_healthy_percentage"], preferences["max_healthy_percentage"]) == (100, 200)
    assert preferences["auto_rollback"] is False, "it would return to the same version (provider #34189)"
    assert stack.resolve("relay", group["min_size"]) >= 2, "one relay per availability zone at least"


def hooks(stack: Stack) -> list[dict[str, Any]]:
    group = relay(stack, "aws_autoscaling_group", "this")
    return [*group["initial_lifecycle_hook"], relay(stack, "aws_autoscaling_lifecycle_hook", "ready")]


def test_instances_enter_service_only_when_ready(stack: Stack) -> None:
    for hook in hooks(stack):
        assert hook["name"] == "${local.lifecycle_hook_name}"
        assert hook["lifecycle_transition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
        assert hook["default_result"] == "ABANDON", "a relay that never reports ready is given up"
        assert hook["heartbeat_timeout"] == "${var.boot_timeout_seconds}"
    boot = stack.resolve("relay", "${var.boot_timeout_seconds}")
    deadline = stack.resolve("relay", "${local.ready_deadline_s}")
    assert 0 < deadline < boot, "the install script gives up (ABANDON) before the hook times out"
    assert boot <= 3600 and stack.root.variables["relay_boot_timeout_seconds"]["default"] == boot


# -- the watchdog unit --------------------------------------------------------------------------


def watchdog_unit(stack: Stack) -> dict[str, dict[str, list[str]]]:
    raw = stack.modules["relay"].locals["watchdog_vars"]
    values = {key: TEST_REGION if key == "aws_region" else stack.resolve("relay", expression)
              for key, expression in raw.items()}
    return parse_unit(render((RELAY_TEMPLATES / "relay-watchdog.service.tftpl").read_text(), values))


def test_the_watchdog_probes_livez_and_outlives_ordinary_restarts(stack: Stack) -> None:
    unit = watchdog_unit(stack)
    assert unit["Unit"]["After"] == ["liveline-relay.service"], "stopped before the relay on shutdown"
    for tie in ("Requires", "BindsTo", "PartOf", "Requisite"):
        assert tie not in unit["Unit"], f"{tie}= would stop or restart the watchdog with a crashing relay"
    (start,) = unit["Service"]["ExecStart"]
    argv = exec_argv(start)
    assert argv[:2] == ["/usr/local/libexec/liveline-relay-health", "watch"]
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert options["--url"] == "http://127.0.0.1/livez", "alive, not ready: a full relay still answers"
    assert options["--instance-id-file"] == "/var/lib/cloud/data/instance-id"
    interval, timeout, failures = (float(options[k]) for k in ("--interval-s", "--timeout-s", "--failures"))
    assert timeout < interval
    # A minute without an answer: longer than systemd restarting a crashed relay (RestartSec) plus
    # gunicorn replacing a hung worker (its timeout), so only what neither brings back is replaced.
    relay_unit = (RELAY_TEMPLATES / "relay.service.tftpl").read_text()
    restart_s = int(re.search(r"^RestartSec=(\d+)$", relay_unit, re.M).group(1))
    gunicorn_timeout_s = int(re.search(r"^timeout = (\d+)$", (ROOT / "relay/gunicorn.conf.py").read_text(),
                                       re.M).group(1))
    assert failures * interval >= 60 > restart_s + gunicorn_timeout_s


# -- relay-health.py, for real ----------------------------------------------------------------


class HealthStandIn:
    """The relay's /healthz and /livez on loopback, answering from a script: a status code or "hang"."""

    def __init__(self, *answers: int | str) -> None:
        self.answers = list(answers)
        self.served: list[str] = []
        self.server = WSGIServer(("127.0.0.1", 0), self.app, log=None, error_log=None)

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self.served.append(f"{environ['PATH_INFO']} {answer}")
        if answer == "hang":
            gevent.sleep(30)
        start_response(f"{answer} Status", [("Content-Type", "text/plain")])
        return [b"ok\n"]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"


@pytest.fixture
def health() -> Iterator[Any]:
    servers: list[HealthStandIn] = []

    def start(*answers: int | str) -> HealthStandIn:
        server = HealthStandIn(*answers)
        server.server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.server.stop(timeout=1)


class FakeAws:
    """A stand-in ``aws`` CLI on PATH: records each call, exits with the next scripted code."""

    def __init__(self, directory: Path, *exit_codes: int) -> None:
        self.calls_file = directory / "aws-calls.jsonl"
        codes = directory / "aws-exit-codes"
        codes.write_text("\n".join(str(code) for code in exit_codes or (0,)))
        bin_dir = directory / "bin"
        bin_dir.mkdir()
        script = bin_dir / "aws"
        script.write_text(f"""#!{sys.executable}
import json, sys
with open({str(self.calls_file)!r}, "a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
codes = open({str(codes)!r}).read().split()
used = sum(1 for _ in open({str(self.calls_file)!r}))
code = int(codes[min(used, len(codes)) - 1])
sys.stderr.write("AccessDenied" if code else "")
sys.exit(code)
""")
        script.chmod(0o755)
        self.path = f"{bin_dir}:/usr/bin:/bin"
        self.instance_id_file = directory / "instance-id"
        self.instance_id_file.write_text(INSTANCE_ID + "\n")

    def calls(self) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]


def run_health(aws: FakeAws, *argv: str) -> subprocess.CompletedProcess[str]:
    common = ["--region", TEST_REGION, "--instance-id-file", str(aws.instance_id_file)]
    return subprocess.run([sys.executable, str(RELAY_HEALTH), *argv, *common], env={"PATH": aws.path},
                          capture_output=True, text=True, timeout=60)


def watch(aws: FakeAws, url: str, *, failures: int, probes: int, timeout_s: float = 1.0) -> (
        subprocess.CompletedProcess[str]):
    return run_health(aws, "watch", "--url", url, "--interval-s", "0.01", "--timeout-s", str(timeout_s),
                      "--failures", str(failures), "--max-probes", str(probes))


UNHEALTHY = ["autoscaling", "set-instance-health", "--instance-id", INSTANCE_ID, "--health-status", "Unhealthy",
             "--region", TEST_REGION]


def test_watch_leaves_a_live_relay_alone_even_when_it_is_full(tmp_path: Path, health: Any) -> None:
    aws = FakeAws(tmp_path)
    server = health(200)  # /livez answers 200 whatever /healthz says
    result = watch(aws, server.url("/livez"), failures=2, probes=5)
    assert result.returncode == 0, result.stderr
    assert len(server.served) == 5 and aws.calls() == []


def test_watch_marks_the_instance_unhealthy_after_n_misses_in_a_row(tmp_path: Path, health: Any) -> None:
    server = health(503, 503, 503)
    aws = FakeAws(tmp_path)
    result = watch(aws, server.url("/livez"), failures=3, probes=2)
    assert result.returncode == 0 and aws.calls() == [], "two misses of three: not yet"
    result = watch(aws, server.url("/livez"), failures=3, probes=10)
    assert result.returncode == 0, result.stderr
    assert aws.calls() == [UNHEALTHY], "once, then the watchdog stops: the group replaces the instance"
    assert "marked this instance Unhealthy" in result.stderr


def test_watch_counts_only_misses_in_a_row(tmp_path: Path, health: Any) -> None:
    aws = FakeAws(tmp_path)
    server = health(503, 503, 200, 503, 503, 200)
    result = watch(aws, server.url("/livez"), failures=3, probes=6)
    assert result.returncode == 0 and aws.calls() == [], result.stderr
    assert "answers again after 2 failed probe(s)" in result.stderr


def test_watch_takes_a_relay_that_hangs_for_a_broken_one(tmp_path: Path, health: Any) -> None:
    aws = FakeAws(tmp_path)
    server = health("hang")
    result = watch(aws, server.url("/livez"), failures=2, probes=5, timeout_s=0.2)
    assert result.returncode == 0, result.stderr
    assert aws.calls() == [UNHEALTHY]


def test_watch_takes_a_relay_that_refuses_connections_for_a_broken_one(tmp_path: Path, health: Any) -> None:
    server = health(200)
    url = server.url("/livez")
    server.server.stop(timeout=1)  # nothing listens on that port any more
    aws = FakeAws(tmp_path)
    result = watch(aws, url, failures=2, probes=5)
    assert aws.calls() == [UNHEALTHY], result.stderr


def test_watch_retries_when_aws_refuses(tmp_path: Path, health: Any) -> None:
    aws = FakeAws(tmp_path, 255, 0)
    server = health(503)
    result = watch(aws, server.url("/livez"), failures=2, probes=6)
    assert aws.calls() == [UNHEALTHY, UNHEALTHY], result.stderr
    assert "will retry" in result.stderr and "AccessDenied" in result.stderr


def lifecycle(result: str) -> list[str]:
    return ["autoscaling", "complete-lifecycle-action", "--auto-scaling-group-name", "liveline-relay",
            "--lifecycle-hook-name", "relay-ready", "--instance-id", INSTANCE_ID,
            "--lifecycle-action-result", result, "--region", TEST_REGION]


def ready(aws: FakeAws, url: str, deadline_s: float) -> subprocess.CompletedProcess[str]:
    return run_health(aws, "ready", "--group", "liveline-relay", "--hook", "relay-ready", "--url", url,
                      "--interval-s", "0.01", "--timeout-s", "1", "--deadline-s", str(deadline_s))


def test_ready_puts_the_instance_in_service_once_it_takes_calls(tmp_path: Path, health: Any) -> None:
    aws = FakeAws(tmp_path)
    server = health(503, 503, 200)  # starting, starting, taking calls
    result = ready(aws, server.url("/healthz"), deadline_s=30)
    assert result.returncode == 0, result.stderr
    assert aws.calls() == [lifecycle("CONTINUE")]
    assert server.served == ["/healthz 503", "/healthz 503", "/healthz 200"]


def test_ready_gives_the_launch_up_at_its_deadline(tmp_path: Path, health: Any) -> None:
    aws = FakeAws(tmp_path)
    server = health(503)
    result = ready(aws, server.url("/healthz"), deadline_s=0.3)
    assert result.returncode == 1
    assert aws.calls() == [lifecycle("ABANDON")]
    assert "giving this instance up" in result.stderr


def test_relay_health_runs_on_amazon_linux_system_python() -> None:
    import ast

    ast.parse(RELAY_HEALTH.read_text(), feature_version=(3, 9))
    assert RELAY_HEALTH.read_text().startswith("#!/usr/bin/python3\n")
    imports = {node.names[0].name.split(".")[0] for node in ast.walk(ast.parse(RELAY_HEALTH.read_text()))
               if isinstance(node, ast.Import | ast.ImportFrom) and getattr(node, "module", "x") != "__future__"}
    assert imports <= set(sys.stdlib_module_names), "standard library only"


# -- scaling on calls -------------------------------------------------------------------------


def test_the_fleet_scales_on_live_calls_below_relay_max_calls(stack: Stack, relay_env_values: dict[str, Any]) -> None:
    policy = relay(stack, "aws_autoscaling_policy", "calls")
    assert policy["policy_type"] == "TargetTrackingScaling"
    (tracking,) = policy["target_tracking_configuration"]
    (metric,) = tracking["customized_metric_specification"]
    assert stack.resolve("relay", metric["metric_name"]) == "liveline_calls_active"
    assert stack.resolve("relay", metric["namespace"]) == "liveline/relay"
    assert metric["statistic"] == "Average", "calls per relay: the group's average of each relay's count"
    (dimension,) = metric["metric_dimension"]
    assert dimension["name"] == "AutoScalingGroupName"
    assert stack.resolve("relay", dimension["value"]) == "liveline-relay"
    # The target: relay_calls_target_percent of RELAY_MAX_CALLS, strictly below it.
    assert tracking["target_value"] == "${local.calls_target}"
    formula = stack.modules["relay"].locals["calls_target"]
    assert formula == "${max(1, floor(var.settings.max_calls * var.calls_target_percent / 100))}"
    max_calls = int(relay_env_values["RELAY_MAX_CALLS"])
    percent = stack.resolve("relay", "${var.calls_target_percent}")
    target = max(1, math.floor(max_calls * percent / 100))
    assert (max_calls, percent, target) == (300, 60, 180), "the numbers README: Surges explains"
    assert target < max_calls
    (guard,) = policy["lifecycle"][0]["precondition"]
    assert guard["condition"] == "${local.calls_target < var.settings.max_calls}"
    # CPU stays as a guard.
    (cpu,) = relay(stack, "aws_autoscaling_policy", "cpu")["target_tracking_configuration"]
    (predefined,) = cpu["predefined_metric_specification"]
    assert predefined["predefined_metric_type"] == "ASGAverageCPUUtilization"


def test_scaling_metric_is_the_one_the_agent_publishes_for_this_group(stack: Stack) -> None:
    from tests.infra.test_relay_templates import render_template

    agent = json.loads(render_template(stack, "cloudwatch-agent.json.tftpl"))
    emf = agent["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
    assert emf["metric_namespace"] == "liveline/relay"
    group_wide = [d for d in emf["metric_declaration"] if d["dimensions"] == [["AutoScalingGroupName"]]]
    assert any("^liveline_calls_active$" in d["metric_selectors"] for d in group_wide)
    scrape = json.loads(render_template(stack, "prometheus.yaml.tftpl"))
    (job,) = scrape["scrape_configs"]
    (targets,) = job["static_configs"]
    assert targets["labels"] == {"AutoScalingGroupName": "liveline-relay"}, (
        "the label the dimension comes from names this group, as the scaling policy does")
    assert all(re.fullmatch(d["label_matcher"], job["job_name"]) for d in emf["metric_declaration"])
