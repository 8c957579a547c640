################################################################################
# Outputs, in alphabetical order. scripts/verify_deploy.py reads them with `terraform output -json`.
# None is secret: the secrets stay in SSM (ssm_parameter_names says where).
################################################################################

output "aws_region" {
  description = "Region of the stack (for aws CLI commands such as reading the SSM parameters)."
  value       = var.aws_region
}

output "relay_autoscaling_group_name" {
  description = "Auto Scaling group of the relays: aws autoscaling describe-instance-refreshes --auto-scaling-group-name <this> shows a rollout's progress."
  value       = module.relay.autoscaling_group_name
}

output "relay_bundle_s3_uri" {
  description = "S3 URI of the relay bundle the fleet runs (its key is the bundle's SHA-256)."
  value       = module.relay.bundle_s3_uri
}

output "relay_health_url" {
  description = "The relay's health check through the load balancer and its certificate: 200 when serving, 503 while draining or saturated."
  value       = module.relay.health_url
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
  value = {
    DIAGNOSTIC_TOKEN    = aws_ssm_parameter.diagnostic_token.name
    OPENAI_API_KEY      = aws_ssm_parameter.openai_api_key.name
    STREAM_TOKEN_SECRET = aws_ssm_parameter.stream_token_secret.name
    TWILIO_AUTH_TOKEN   = aws_ssm_parameter.twilio_auth_token.name
  }
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
