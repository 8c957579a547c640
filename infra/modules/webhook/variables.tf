################################################################################
# Inputs of the webhook module, in alphabetical order.
################################################################################

variable "architecture" {
  description = "Lambda architecture: x86_64 or arm64 (must match the wheels in the zip)."
  type        = string

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "fallback_message" {
  description = "FALLBACK_MESSAGE: what a caller hears if the relay fails or closes. null keeps the webhook's default."
  type        = string
  default     = null
}

variable "kms_key_arn" {
  description = "ARN of the customer managed KMS key of the SSM secrets and the log group; the function may decrypt with it through SSM only."
  type        = string
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the function's logs."
  type        = number
}

variable "memory_mb" {
  description = "Memory of the function in MB (128-10240)."
  type        = number

  validation {
    condition     = var.memory_mb >= 128 && var.memory_mb <= 10240
    error_message = "memory_mb must be between 128 and 10240."
  }
}

variable "name" {
  description = "Name prefix; the function is <name>-webhook."
  type        = string
}

variable "relay_public_url" {
  description = "RELAY_PUBLIC_URL: the relay's wss:// origin (no path, no query; Twilio drops query strings)."
  type        = string

  validation {
    condition     = can(regex("^wss://[a-z0-9.-]+$", var.relay_public_url))
    error_message = "relay_public_url must be wss://<host> with no path, port or query string."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions of the function: both its guaranteed share and its cap. null reserves none (accounts whose Lambda concurrency quota leaves less than 100 unreserved)."
  type        = number
  default     = null

  validation {
    condition     = var.reserved_concurrency == null ? true : var.reserved_concurrency >= 1 && var.reserved_concurrency <= 1000 && floor(var.reserved_concurrency) == var.reserved_concurrency
    error_message = "reserved_concurrency must be null or a whole number from 1 to 1000."
  }
}

variable "secret_parameters" {
  description = "The webhook's secrets in SSM by environment variable name (TWILIO_AUTH_TOKEN, STREAM_TOKEN_SECRET): { name, arn }. Each name must be <ssm_parameter_prefix>/<ENV_VAR_NAME>, where the handler looks for it."
  type = map(object({
    name = string
    arn  = string
  }))

  validation {
    condition     = alltrue([for k in ["TWILIO_AUTH_TOKEN", "STREAM_TOKEN_SECRET"] : contains(keys(var.secret_parameters), k)])
    error_message = "secret_parameters must include TWILIO_AUTH_TOKEN and STREAM_TOKEN_SECRET."
  }
}

variable "secrets_version" {
  description = "Fingerprint of the secrets' versions; a change updates the function's configuration so new cold starts read the new values."
  type        = string
}

variable "ssm_parameter_prefix" {
  description = "SSM_PARAMETER_PREFIX: the path under which the handler reads <prefix>/TWILIO_AUTH_TOKEN, <prefix>/STREAM_TOKEN_SECRET and <prefix>/WEBHOOK_PUBLIC_URL at cold start."
  type        = string

  validation {
    condition     = can(regex("^(/[A-Za-z0-9_.-]+)+$", var.ssm_parameter_prefix))
    error_message = "ssm_parameter_prefix must be an SSM path such as /liveline (leading slash, no trailing slash)."
  }
}

variable "timeout_seconds" {
  description = "Function timeout in seconds (1-15: Twilio waits 15 s for a webhook)."
  type        = number

  validation {
    condition     = var.timeout_seconds >= 1 && var.timeout_seconds <= 15
    error_message = "timeout_seconds must be between 1 and 15."
  }
}

variable "zip_path" {
  description = "Path of the Lambda zip built by `make webhook-zip`."
  type        = string
}
