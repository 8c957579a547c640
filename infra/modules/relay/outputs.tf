output "access_logs_bucket" {
  description = "S3 bucket holding the load balancer's access logs (prefix alb/)."
  value       = aws_s3_bucket.access_logs.id
}

output "active_calls_metric" {
  description = "CloudWatch metric of live calls per relay (namespace metric_namespace, dimension AutoScalingGroupName): what scaling tracks."
  value       = local.active_calls_metric
}

output "alb_arn" {
  description = "ARN of the relay's load balancer (to associate a WAF web ACL with it)."
  value       = aws_lb.this.arn
}

output "alb_arn_suffix" {
  description = "ARN suffix of the load balancer (the LoadBalancer dimension of its CloudWatch metrics)."
  value       = aws_lb.this.arn_suffix
}

output "alb_dns_name" {
  description = "DNS name of the relay's load balancer (the alias target of domain_name)."
  value       = aws_lb.this.dns_name
}

output "autoscaling_group_name" {
  description = "Name of the relays' Auto Scaling group (aws autoscaling describe-instance-refreshes --auto-scaling-group-name ...)."
  value       = aws_autoscaling_group.this.name
}

output "bundle_s3_uri" {
  description = "S3 URI and object version of the relay bundle the newest launch template version installs."
  value       = "s3://${aws_s3_object.bundle.bucket}/${aws_s3_object.bundle.key}?versionId=${aws_s3_object.bundle.version_id}"
}

output "calls_target" {
  description = "Live calls per relay that target tracking keeps the group at (below RELAY_MAX_CALLS)."
  value       = local.calls_target
}

output "first_audio_metric" {
  description = "CloudWatch metric of each call's time to first audio in milliseconds (namespace metric_namespace), from the relays' logs."
  value       = local.first_audio_metric
}

output "health_url" {
  description = "The relay's health check through the load balancer: 200 when a relay takes calls, 503 while all are full or draining."
  value       = "https://${var.domain_name}/healthz"
}

output "launch_template_id" {
  description = "ID of the relays' launch template (aws ec2 describe-launch-template-versions --launch-template-id <this>)."
  value       = aws_launch_template.this.id
}

output "launch_template_version" {
  description = "Newest launch template version; the group runs it unless launch_template_version pins an older one."
  value       = aws_launch_template.this.latest_version
}

output "log_group_name" {
  description = "CloudWatch Logs group of the relays' output, one stream per instance (and <instance>/boot)."
  value       = aws_cloudwatch_log_group.relay.name
}

output "metric_namespace" {
  description = "CloudWatch namespace of the relays' metrics."
  value       = local.metric_namespace
}

output "public_url" {
  description = "The relay's public origin, RELAY_PUBLIC_URL for the relay and the webhook (wss://, no path, no query)."
  value       = local.relay_public_url
}

output "security_group_id" {
  description = "Security group of the relay instances (port 80 from the load balancer only)."
  value       = aws_security_group.relay.id
}

output "stream_url" {
  description = "The URL Twilio streams calls to: <Stream url> in the webhook's TwiML."
  value       = "${local.relay_public_url}/twilio/realtime"
}

output "target_group_arn_suffix" {
  description = "ARN suffix of the relays' target group (the TargetGroup dimension of its CloudWatch metrics)."
  value       = aws_lb_target_group.this.arn_suffix
}
