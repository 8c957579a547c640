################################################################################
# Outputs, in alphabetical order. scripts/verify_deploy.py reads them with `terraform output -json`.
# None is secret: the secrets stay in SSM (ssm_parameter_names says where).
################################################################################

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies (alarm_subscribers are subscribed to it)."
  value       = module.alarms.topic_arn
}

output "aws_region" {
  description = "Region of the stack (for aws CLI commands such as reading the SSM parameters)."
  value       = var.aws_region
}

output "relay_access_logs_bucket" {
  description = "S3 bucket of the relay load balancer's access logs (prefix alb/)."
  value       = module.relay.access_logs_bucket
}

output "relay_autoscaling_group_name" {
  description = "Auto Scaling group of the relays: aws autoscaling describe-instance-refreshes --auto-scaling-group-name <this> shows a rollout's progress."
  value       = module.relay.autoscaling_group_name
}

output "relay_bundle_s3_uri" {
  description = "S3 URI and version of the relay bundle the newest launch template version installs."
  value       = module.relay.bundle_s3_uri
}

output "relay_calls_target" {
  description = "Live calls per relay that scaling keeps the fleet at (relay_calls_target_percent of RELAY_MAX_CALLS)."
  value       = module.relay.calls_target
}

output "relay_health_url" {
  description = "The relay's health check through the load balancer and its certificate: 200 when a relay takes calls, 503 while every relay is full or draining."
  value       = module.relay.health_url
}

output "relay_launch_template_id" {
  description = "Launch template of the relays; its versions are what a rollback returns to (aws ec2 describe-launch-template-versions --launch-template-id <this>)."
  value       = module.relay.launch_template_id
}

output "relay_launch_template_version" {
  description = "Newest launch template version of the relays (the fleet runs it unless relay_launch_template_version pins another)."
  value       = module.relay.launch_template_version
}

output "relay_load_balancer_arn" {
  description = "ARN of the relay's load balancer: associate a regional WAF web ACL with it (README: Edge)."
  value       = module.relay.alb_arn
}

output "relay_log_group_name" {
  description = "CloudWatch Logs group of the relays (aws logs tail <this> --follow); one stream per instance."
  value       = module.relay.log_group_name
}

output "relay_metric_namespace" {
  description = "CloudWatch namespace of the relays' metrics (liveline_calls_active, liveline_calls_total, ..., first_audio_ms)."
  value       = module.relay.metric_namespace
}

output "relay_public_url" {
  description = "RELAY_PUBLIC_URL: the relay's wss:// origin, as configured in the relay and the webhook."
  value       = module.relay.public_url
}

output "relay_stream_url" {
  description = "The wss:// URL Twilio streams each call to (<Stream url> in the webhook's TwiML)."
  value       = module.relay.stream_url
}

output "ssm_parameter_names" {
  description = "SSM SecureString parameter of each secret, by environment variable name (aws ssm get-parameter --with-decryption --name <this>)."
  value = merge(
    {
      DIAGNOSTIC_TOKEN     = aws_ssm_parameter.diagnostic_token.name
      OPENAI_API_KEY       = aws_ssm_parameter.openai_api_key.name
      RELAY_SIGNING_SECRET = aws_ssm_parameter.relay_signing_secret.name
      STREAM_TOKEN_SECRET  = aws_ssm_parameter.stream_token_secret.name
      TWILIO_AUTH_TOKEN    = aws_ssm_parameter.twilio_auth_token.name
    },
    { for name, parameter in local.relay_secret_parameters : name => parameter.name if startswith(name, "TWILIO_API_KEY_") },
  )
}

output "verify_command" {
  description = "Ready command line, run from the repository root, that checks the deployed stack end to end: it loads the secrets the checks need from SSM with your AWS credentials, then runs scripts/verify_deploy.py, which reads these outputs."
  value = join(" ", concat(
    [
      for name, parameter in {
        TWILIO_AUTH_TOKEN   = aws_ssm_parameter.twilio_auth_token.name
        STREAM_TOKEN_SECRET = aws_ssm_parameter.stream_token_secret.name
        DIAGNOSTIC_TOKEN    = aws_ssm_parameter.diagnostic_token.name
      } : "${name}=\"$(aws ssm get-parameter --region ${var.aws_region} --with-decryption --name ${parameter} --query Parameter.Value --output text)\""
    ],
    [".venv/bin/python scripts/verify_deploy.py"],
  ))
}

output "webhook_function_name" {
  description = "Name of the webhook Lambda function (logs: aws logs tail /aws/lambda/<this> --follow)."
  value       = module.webhook.function_name
}

output "webhook_public_url" {
  description = "WEBHOOK_PUBLIC_URL: the Function URL origin the webhook checks Twilio's signatures against (stored in SSM for the handler)."
  value       = module.webhook.public_url
}

output "webhook_url" {
  description = "Paste into the Twilio console: Phone Numbers > your number > Voice > \"A call comes in\" > Webhook, HTTP POST."
  value       = module.webhook.voice_url
}
