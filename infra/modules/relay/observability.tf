################################################################################
# Logs and metrics that outlive an instance: the CloudWatch agent on every relay
#
# - The relay's output (JSON lines, RELAY_LOG_FORMAT=json) and the instance's boot log go to the log
#   group /<name>/relay, one stream per instance ({instance_id}, {instance_id}/boot).
# - The agent scrapes the relay's GET /metrics on the instance every 15 s, presenting DIAGNOSTIC_TOKEN
#   as a bearer token from a root-only file (relay.service.tftpl writes it), and publishes the counters
#   and the gauge in the embedded metric format under the namespace <name>/relay, dimension
#   AutoScalingGroupName: liveline_calls_active is the per-relay average that scaling tracks.
# - The agent drops Prometheus histograms (it supports counters, gauges and summaries only), so
#   liveline_first_audio_seconds and liveline_tool_call_seconds stay on /metrics; first audio reaches
#   CloudWatch from the relay's call.first_audio log line instead (metric filter below).
################################################################################

locals {
  # The CloudWatch agent's configuration and its Prometheus scrape file (JSON, which is YAML too):
  # templates/cloudwatch-agent.json.tftpl lists the metrics published and their dimensions.
  agent_config_vars = {
    log_file          = local.log_file
    log_group         = local.relay_log_group_name
    metrics_log_group = local.metrics_log_group_name
    prometheus_config = local.prometheus_config
    namespace         = local.metric_namespace
    job               = local.prometheus_job
  }

  prometheus_config_vars = {
    job               = local.prometheus_job
    token_file        = local.metrics_token_file
    target            = local.metrics_target
    autoscaling_group = local.autoscaling_group_name
  }
}

resource "aws_cloudwatch_log_group" "relay" {
  #checkov:skip=CKV_AWS_338:Operational logs of the relays (call SIDs, timings, outcomes), kept var.log_retention_days (30 by default), not a year.
  name              = local.relay_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

# The agent's embedded-metric-format records: CloudWatch extracts the metrics on arrival and keeps them
# 15 months; the records themselves serve only to look at one instance's numbers (InstanceId field).
resource "aws_cloudwatch_log_group" "metrics" {
  #checkov:skip=CKV_AWS_338:Carries only embedded-metric-format records; the metrics extracted from them are kept by CloudWatch Metrics, so a week of records is enough.
  name              = local.metrics_log_group_name
  retention_in_days = 7
  kms_key_id        = var.kms_key_arn
}

# Time to first audio, from the relay's JSON log line `call.first_audio ... ms_since_start=<ms>`: one
# data point per call, so alarms can use percentiles.
resource "aws_cloudwatch_log_metric_filter" "first_audio" {
  name           = "${var.name}-relay-first-audio"
  log_group_name = aws_cloudwatch_log_group.relay.name
  pattern        = "{ $.event = \"call.first_audio\" }"

  metric_transformation {
    name      = local.first_audio_metric
    namespace = local.metric_namespace
    value     = "$.ms_since_start"
    unit      = "Milliseconds"
  }
}
