output "function_name" {
  description = "Name of the webhook Lambda function (aws logs tail /aws/lambda/<name>)."
  value       = aws_lambda_function.this.function_name
}

output "public_url" {
  description = "WEBHOOK_PUBLIC_URL: the Function URL's origin (https://<id>.lambda-url.<region>.on.aws, no trailing slash), the base Twilio signs."
  value       = local.public_url
}

output "public_url_parameter_name" {
  description = "SSM parameter holding WEBHOOK_PUBLIC_URL, read by the handler at cold start."
  value       = aws_ssm_parameter.public_url.name
}

output "voice_url" {
  description = "The URL for the Twilio number's \"A call comes in\" webhook (HTTP POST)."
  value       = "${local.public_url}/twilio/voice"
}
