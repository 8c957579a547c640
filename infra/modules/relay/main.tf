################################################################################
# The relay: gunicorn + gevent on port 80 of Amazon Linux 2023 instances in an Auto Scaling
# group, behind an HTTPS-only Application Load Balancer with an ACM certificate (README.md).
# One file per concern: storage.tf (artifacts, access logs), iam.tf, network.tf, load_balancer.tf,
# instances.tf (launch template, group, scaling), observability.tf (logs, agent, metrics).
#
# Two health questions, two answers (README: Surges):
#   "send it calls?"  the load balancer's check, GET /healthz: 503 while full or draining, so a full
#                     relay stops getting calls. The group never acts on it (health_check_type EC2).
#   "is it broken?"   the instance's watchdog, GET /livez: 200 whenever a worker answers at all. After
#                     a minute without an answer it marks the instance Unhealthy and the group replaces
#                     it, launching the replacement first (instance_maintenance_policy 100-200 %).
#
# Shutdown chain on a deploy or scale-in, and the values that keep it draining instead of cutting:
#   ALB stops sending new calls to the target and drains it for deregistration_delay_seconds
#   -> the ASG terminates the instance -> systemd sends SIGTERM, gunicorn (relay/worker.py) lets live
#   calls finish for graceful_timeout_seconds -> systemd SIGKILLs after stop_timeout_seconds.
#   max_call_seconds < deregistration_delay_seconds <= graceful_timeout_seconds < stop_timeout_seconds
################################################################################

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  region     = data.aws_region.current.region
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Names AWS resources refer to before they exist (the instances name their own group).
  autoscaling_group_name = "${var.name}-relay"
  autoscaling_group_arn  = "arn:${local.partition}:autoscaling:${local.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.autoscaling_group_name}"
  lifecycle_hook_name    = "relay-ready"

  # Paths on the instance. The units, the install script and cloud-init all take them from here.
  service_name       = "liveline-relay"
  service_user       = "liveline-relay"
  watchdog_name      = "liveline-relay-watchdog"
  install_dir        = "/opt/liveline-relay"
  unit_path          = "/etc/systemd/system/liveline-relay.service"
  watchdog_unit_path = "/etc/systemd/system/liveline-relay-watchdog.service"
  env_file           = "/etc/liveline/relay.env"
  assistant_path     = "/etc/liveline/assistant.toml"
  secrets_file       = "/run/liveline-relay/secrets.env"
  metrics_token_file = "/run/liveline-relay/metrics.token"
  fetch_secrets      = "/usr/local/libexec/liveline-relay-fetch-secrets"
  relay_health       = "/usr/local/libexec/liveline-relay-health"
  install_script     = "/usr/local/libexec/liveline-relay-install"
  instance_id_file   = "/var/lib/cloud/data/instance-id"
  log_directory_name = "liveline-relay"
  log_directory      = "/var/log/liveline-relay"
  log_file           = "/var/log/liveline-relay/relay.log"
  agent_config       = "/opt/aws/amazon-cloudwatch-agent/etc/liveline-relay.json"
  prometheus_config  = "/opt/aws/amazon-cloudwatch-agent/etc/liveline-relay-prometheus.yaml"
  logrotate_config   = "/etc/logrotate.d/liveline-relay"
  healthz_url        = "http://127.0.0.1/healthz"
  livez_url          = "http://127.0.0.1/livez"
  metrics_target     = "127.0.0.1:80"

  # Liveness (README: Surges). A probe every 10 s that waits 5 s; six misses in a row, a minute
  # without any answer, mean broken. That is longer than a crashed relay takes to be restarted by
  # systemd (RestartSec=5 plus a few seconds of start) and than gunicorn takes to replace a hung worker
  # (timeout = 30 s), so only a relay neither of them can bring back is replaced.
  watchdog_interval_s = 10
  watchdog_timeout_s  = 5
  watchdog_failures   = 6

  # Launch readiness: the install script waits this long for /healthz 200, leaving a minute of the
  # lifecycle hook's timeout to complete the action.
  ready_deadline_s = var.boot_timeout_seconds - 60

  # Scaling on calls (README: Surges): target tracking keeps the average relay at this many live
  # calls, below RELAY_MAX_CALLS, so the headroom absorbs a surge while new relays boot.
  calls_target = max(1, floor(var.settings.max_calls * var.calls_target_percent / 100))

  # CloudWatch names shared by the agent's configuration, the scaling policy and the alarms.
  metric_namespace        = "${var.name}/relay"
  active_calls_metric     = "liveline_calls_active"
  first_audio_metric      = "first_audio_ms"
  relay_log_group_name    = "/${var.name}/relay"
  metrics_log_group_name  = "/${var.name}/relay-metrics"
  prometheus_job          = "liveline-relay"
  relay_public_url        = "wss://${var.domain_name}"
  public_paths            = ["/twilio/realtime", "/healthz", "/livez"]
  operator_paths          = ["/diagnostic/*", "/metrics"]
  operator_cidr_rule_size = 3
}
