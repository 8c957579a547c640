output "alb_dns_name" {
  description = "DNS name of the relay's load balancer (the alias target of domain_name)."
  value       = aws_lb.this.dns_name
}

output "autoscaling_group_name" {
  description = "Name of the relays' Auto Scaling group (aws autoscaling start-instance-refresh --auto-scaling-group-name ...)."
  value       = aws_autoscaling_group.this.name
}

output "bundle_s3_uri" {
  description = "S3 URI of the relay bundle the current launch template installs."
  value       = "s3://${aws_s3_object.bundle.bucket}/${aws_s3_object.bundle.key}"
}

output "health_url" {
  description = "The relay's health check through the load balancer: 200 when a relay is serving, 503 while draining or saturated."
  value       = "https://${var.domain_name}/healthz"
}

output "launch_template_version" {
  description = "Launch template version the Auto Scaling group runs (a new bundle or setting makes a new one and rolls the fleet)."
  value       = aws_launch_template.this.latest_version
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
