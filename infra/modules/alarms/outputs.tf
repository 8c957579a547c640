output "alarm_names" {
  description = "Names of the stack's CloudWatch alarms."
  value = sort([
    aws_cloudwatch_metric_alarm.calls_failing.alarm_name,
    aws_cloudwatch_metric_alarm.first_audio_slow.alarm_name,
    aws_cloudwatch_metric_alarm.no_healthy_relay.alarm_name,
    aws_cloudwatch_metric_alarm.relay_metrics_missing.alarm_name,
    aws_cloudwatch_metric_alarm.webhook_errors.alarm_name,
  ])
}

output "topic_arn" {
  description = "ARN of the SNS topic every alarm notifies (subscribe more endpoints to it as needed)."
  value       = aws_sns_topic.this.arn
}
