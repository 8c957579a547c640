################################################################################
# Inputs of the alarms module, in alphabetical order.
################################################################################

variable "active_calls_metric" {
  description = "CloudWatch metric of live calls per relay, in metric_namespace."
  type        = string
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the relays' load balancer (LoadBalancer dimension)."
  type        = string
}

variable "autoscaling_group_name" {
  description = "Name of the relays' Auto Scaling group (AutoScalingGroupName dimension of the relay metrics)."
  type        = string
}

variable "failed_calls_threshold" {
  description = "Failed calls in 5 minutes that raise the calls-failing alarm."
  type        = number

  validation {
    condition     = var.failed_calls_threshold >= 1
    error_message = "failed_calls_threshold must be at least 1."
  }
}

variable "first_audio_metric" {
  description = "CloudWatch metric of each call's time to first audio in milliseconds, in metric_namespace."
  type        = string
}

variable "first_audio_p90_ms" {
  description = "Time to first audio (ms) that one call in ten may exceed before the first-audio-slow alarm fires."
  type        = number

  validation {
    condition     = var.first_audio_p90_ms >= 100
    error_message = "first_audio_p90_ms must be at least 100."
  }
}

variable "kms_key_arn" {
  description = "ARN of the customer managed KMS key that encrypts the topic (its key policy lets CloudWatch use it)."
  type        = string
}

variable "metric_namespace" {
  description = "CloudWatch namespace of the relays' metrics."
  type        = string
}

variable "name" {
  description = "Name prefix of the topic and the alarms."
  type        = string
}

variable "subscribers" {
  description = "Who the alarms notify: a list of { protocol, endpoint } SNS subscriptions, e.g. { protocol = \"email\", endpoint = \"oncall@example.com\" }."
  type = list(object({
    protocol = string
    endpoint = string
  }))

  validation {
    condition     = alltrue([for s in var.subscribers : contains(["email", "email-json", "https", "sms", "sqs", "lambda"], s.protocol)])
    error_message = "Each subscriber's protocol must be email, email-json, https, sms, sqs or lambda."
  }
}

variable "target_group_arn_suffix" {
  description = "ARN suffix of the relays' target group (TargetGroup dimension)."
  type        = string
}

variable "webhook_function_name" {
  description = "Name of the webhook's Lambda function (FunctionName dimension)."
  type        = string
}
