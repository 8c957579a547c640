################################################################################
# Alarms an operator wants on day one, to one SNS topic whose subscribers are a variable
#
#   no-healthy-relay      no relay takes calls: every relay is down, or every relay is full
#   calls-failing         calls fail: OpenAI unreachable or refusing (the relays' upstream failures),
#                         upgrades refused or broken at the load balancer (5xx)
#   first-audio-slow      callers wait too long to hear the assistant (p90 of the time to first audio)
#   webhook-errors        Twilio's voice webhook fails or is throttled (the caller hears an error)
#   relay-metrics-missing the relays' metrics stopped: scaling on calls is blind (CPU still guards)
#
# Every alarm notifies on ALARM and on OK. README: Alarms says what to look at for each.
################################################################################

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  alarm_arn_prefix = "arn:${data.aws_partition.current.partition}:cloudwatch:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}:alarm:${var.name}-"
  actions          = [aws_sns_topic.this.arn]
}

################################################################################
# Topic: encrypted with the stack's key; only this stack's alarms may publish
################################################################################

resource "aws_sns_topic" "this" {
  name              = "${var.name}-alarms"
  display_name      = "Liveline (${var.name}) alarms"
  kms_master_key_id = var.kms_key_arn
}

data "aws_iam_policy_document" "topic" {
  statement {
    sid       = "StackAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.this.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["${local.alarm_arn_prefix}*"]
    }
  }
}

resource "aws_sns_topic_policy" "this" {
  arn    = aws_sns_topic.this.arn
  policy = data.aws_iam_policy_document.topic.json
}

# An email subscription stays "pending confirmation" until its recipient follows the link AWS mails.
resource "aws_sns_topic_subscription" "this" {
  for_each = { for subscriber in var.subscribers : "${subscriber.protocol}:${subscriber.endpoint}" => subscriber }

  topic_arn = aws_sns_topic.this.arn
  protocol  = each.value.protocol
  endpoint  = each.value.endpoint
}

################################################################################
# The relays
################################################################################

# Saturated relays answer 503 on /healthz too, so this also fires when every relay is full: either
# way no new call can be taken. Missing data (no target group metrics at all) counts as breaching.
resource "aws_cloudwatch_metric_alarm" "no_healthy_relay" {
  alarm_name          = "${var.name}-no-healthy-relay"
  alarm_description   = "No relay takes calls (load balancer: no healthy target for 2 minutes). Every relay is down, or every relay is full. README: Alarms."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  dimensions = {
    TargetGroup  = var.target_group_arn_suffix
    LoadBalancer = var.alb_arn_suffix
  }
}

resource "aws_cloudwatch_metric_alarm" "calls_failing" {
  alarm_name          = "${var.name}-calls-failing"
  alarm_description   = "At least ${var.failed_calls_threshold} calls failed in 5 minutes: the relays could not reach or use OpenAI, or the load balancer answered an upgrade with 5xx. README: Alarms."
  evaluation_periods  = 1
  threshold           = var.failed_calls_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "failed"
    label       = "Failed calls"
    expression  = "FILL(upstream, 0) + FILL(target5xx, 0) + FILL(elb5xx, 0)"
    return_data = true
  }

  metric_query {
    id = "upstream"

    metric {
      namespace   = var.metric_namespace
      metric_name = "liveline_upstream_failures_total"
      stat        = "Sum"
      period      = 300
      dimensions  = { AutoScalingGroupName = var.autoscaling_group_name }
    }
  }

  metric_query {
    id = "target5xx"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      stat        = "Sum"
      period      = 300
      dimensions = {
        TargetGroup  = var.target_group_arn_suffix
        LoadBalancer = var.alb_arn_suffix
      }
    }
  }

  metric_query {
    id = "elb5xx"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      stat        = "Sum"
      period      = 300
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "first_audio_slow" {
  alarm_name          = "${var.name}-first-audio-slow"
  alarm_description   = "For 10 minutes, one call in ten waited more than ${var.first_audio_p90_ms} ms for the assistant's first audio. README: Alarms."
  namespace           = var.metric_namespace
  metric_name         = var.first_audio_metric
  extended_statistic  = "p90"
  period              = 300
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = var.first_audio_p90_ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# Scaling on calls needs this metric; without it target tracking does nothing and only the CPU policy
# still scales.
resource "aws_cloudwatch_metric_alarm" "relay_metrics_missing" {
  alarm_name          = "${var.name}-relay-metrics-missing"
  alarm_description   = "No ${var.active_calls_metric} data for 5 minutes: the CloudWatch agent or /metrics is down on every relay, so scaling on calls is blind. README: Alarms."
  namespace           = var.metric_namespace
  metric_name         = var.active_calls_metric
  statistic           = "SampleCount"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  dimensions = {
    AutoScalingGroupName = var.autoscaling_group_name
  }
}

################################################################################
# The webhook
################################################################################

# Any error counts: Twilio plays its error message to the caller for each one.
resource "aws_cloudwatch_metric_alarm" "webhook_errors" {
  alarm_name          = "${var.name}-webhook-errors"
  alarm_description   = "Twilio's voice webhook failed (function error, throttle or 5xx) in the last 5 minutes: those callers heard Twilio's error message. README: Alarms."
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "failed"
    label       = "Failed webhook requests"
    expression  = "FILL(errors, 0) + FILL(throttles, 0) + FILL(url5xx, 0)"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = { errors = "Errors", throttles = "Throttles", url5xx = "Url5xxCount" }

    content {
      id = metric_query.key

      metric {
        namespace   = "AWS/Lambda"
        metric_name = metric_query.value
        stat        = "Sum"
        period      = 300
        dimensions  = { FunctionName = var.webhook_function_name }
      }
    }
  }
}
