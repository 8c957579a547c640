################################################################################
# Inputs of the Liveline stack, in alphabetical order. Copy terraform.tfvars.example to
# terraform.tfvars (git-ignored) for the non-secret ones; pass the two secrets as TF_VAR_ environment
# variables (see README.md).
#
# The timeouts are ordered so that a deploy drains calls instead of cutting them (infra.md 2a, 4):
#   relay_max_call_seconds < relay_deregistration_delay_seconds <= relay_graceful_timeout_seconds
#   < relay_stop_timeout_seconds
# Each link is checked by a validation below, by checkov (infra/policies) and by tests/infra.
################################################################################

variable "alb_deletion_protection" {
  description = "Refuse to delete the relay's load balancer (set to false, apply, then destroy to tear down)."
  type        = bool
  default     = true
}

variable "alb_idle_timeout_seconds" {
  description = "Load balancer idle timeout in seconds (AWS range 1-4000, AWS default 60). A call's WebSocket is closed after this long without a frame; 3600 covers a silent call."
  type        = number
  default     = 3600

  validation {
    condition     = var.alb_idle_timeout_seconds >= 1 && var.alb_idle_timeout_seconds <= 4000 && floor(var.alb_idle_timeout_seconds) == var.alb_idle_timeout_seconds
    error_message = "alb_idle_timeout_seconds must be a whole number from 1 to 4000 (the AWS range)."
  }
}

variable "alb_ssl_policy" {
  description = "TLS policy of the HTTPS:443 listener. Must be one of AWS's TLS 1.3 policies (ELBSecurityPolicy-TLS13-*); the default also offers TLS 1.2 and is AWS's recommended policy."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = startswith(var.alb_ssl_policy, "ELBSecurityPolicy-TLS13-")
    error_message = "alb_ssl_policy must be a TLS 1.3 policy (ELBSecurityPolicy-TLS13-...)."
  }
}

variable "assistant_greeting" {
  description = "What the assistant says when a call starts (ASSISTANT_GREETING). null keeps the relay's default; \"\" means no greeting. One line, without double quotes or backslashes."
  type        = string
  default     = null

  validation {
    condition     = var.assistant_greeting == null ? true : can(regex("^[^\"\\\\\\n\\r]*$", var.assistant_greeting))
    error_message = "assistant_greeting must be one line without double quotes or backslashes (it goes into a systemd environment file)."
  }
}

variable "assistant_instructions" {
  description = "The assistant's system instructions (ASSISTANT_INSTRUCTIONS). null keeps the relay's default. One line, without double quotes or backslashes."
  type        = string
  default     = null

  validation {
    condition     = var.assistant_instructions == null ? true : can(regex("^[^\"\\\\\\n\\r]+$", var.assistant_instructions))
    error_message = "assistant_instructions must be one non-empty line without double quotes or backslashes (it goes into a systemd environment file)."
  }
}

variable "aws_region" {
  description = "AWS region for every resource (the ACM certificate must be in the load balancer's region, so one region serves all)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be an AWS region name such as us-east-1."
  }
}

variable "enable_ipv6" {
  description = "Serve the relay over IPv6 too: a dualstack load balancer and an AAAA alias record. The subnets must have IPv6 CIDR blocks (the default VPC has none). Twilio connects over IPv4 either way."
  type        = bool
  default     = false
}

variable "enable_session_manager" {
  description = "Let operators open a shell on relay instances with AWS Systems Manager Session Manager (no SSH port is ever opened). Grants only the Session Manager channel actions, not AmazonSSMManagedInstanceCore, which could read every SSM parameter."
  type        = bool
  default     = true
}

variable "name" {
  description = "Name prefix for every resource, and the SSM path prefix of the secrets (/<name>/...). Lowercase letters, digits and hyphens, 2-20 characters."
  type        = string
  default     = "liveline"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "name must be 2-20 characters of lowercase letters, digits and hyphens, starting with a letter (it prefixes load balancer and target group names, which AWS caps at 32)."
  }
}

variable "openai_api_key" {
  description = "OpenAI API key for the relay. Ephemeral: written to SSM through a write-only argument, never stored in the plan or state, so pass it on every plan/apply (TF_VAR_openai_api_key). It is written only when secret_versions.openai_api_key changes."
  type        = string
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = length(var.openai_api_key) >= 20 && can(regex("^[A-Za-z0-9_-]+$", var.openai_api_key))
    error_message = "openai_api_key must look like an OpenAI key (at least 20 characters of letters, digits, '-' and '_')."
  }
}

variable "openai_realtime_model" {
  description = "OpenAI Realtime model the relay opens sessions with (OPENAI_REALTIME_MODEL)."
  type        = string
  default     = "gpt-realtime"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,100}$", var.openai_realtime_model))
    error_message = "openai_realtime_model must be a model name (letters, digits, '.', '_', '-')."
  }
}

variable "openai_voice" {
  description = "Voice of the assistant (OPENAI_VOICE): alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar, or a custom voice_... id."
  type        = string
  default     = "marin"

  validation {
    condition     = contains(["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"], var.openai_voice) || startswith(var.openai_voice, "voice_")
    error_message = "openai_voice must be one of alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar, or a voice_... id."
  }
}

variable "relay_ami_id" {
  description = "AMI for relay instances. null uses the latest Amazon Linux 2023 for the instance type's architecture (a newer AMI then rolls the fleet, draining calls, on the next apply); set an ID to pin it. Must be Amazon Linux 2023 (the cloud-init uses dnf and python3.11)."
  type        = string
  default     = null

  validation {
    condition     = var.relay_ami_id == null ? true : can(regex("^ami-[0-9a-f]{8,17}$", var.relay_ami_id))
    error_message = "relay_ami_id must be null or an AMI id (ami-...)."
  }
}

variable "relay_bundle_path" {
  description = "Path of the relay bundle built by `make relay-bundle`, relative to infra/ (where terraform runs). Its manifest (same path, .json instead of .zip) must sit beside it."
  type        = string
  default     = "../build/relay-bundle.zip"

  validation {
    condition     = endswith(var.relay_bundle_path, ".zip")
    error_message = "relay_bundle_path must point at the .zip built by `make relay-bundle`."
  }
}

variable "relay_cpu_target_percent" {
  description = "Average CPU of the relay fleet that target tracking aims for (scales out above it, in below it; a scale-in drains calls first)."
  type        = number
  default     = 60

  validation {
    condition     = var.relay_cpu_target_percent >= 10 && var.relay_cpu_target_percent <= 90
    error_message = "relay_cpu_target_percent must be between 10 and 90."
  }
}

variable "relay_deregistration_delay_seconds" {
  description = "How long the load balancer lets a relay that is leaving (deploy or scale-in) finish its calls before the instance is terminated (AWS range 0-3600). Must exceed relay_max_call_seconds."
  type        = number
  default     = 3600

  validation {
    condition     = var.relay_deregistration_delay_seconds >= 0 && var.relay_deregistration_delay_seconds <= 3600 && floor(var.relay_deregistration_delay_seconds) == var.relay_deregistration_delay_seconds
    error_message = "relay_deregistration_delay_seconds must be a whole number from 0 to 3600 (the AWS range)."
  }
}

variable "relay_domain_name" {
  description = "Fully qualified name of the relay, in the Route 53 zone route53_zone_id, e.g. relay.example.com. Twilio dials wss://<this>/twilio/realtime."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.relay_domain_name))
    error_message = "relay_domain_name must be a lowercase fully qualified domain name such as relay.example.com (no scheme, no path, no trailing dot)."
  }
}

variable "relay_graceful_timeout_seconds" {
  description = "gunicorn graceful_timeout (RELAY_GRACEFUL_TIMEOUT_SECONDS): after SIGTERM, how long live calls may go on. Must be >= relay_deregistration_delay_seconds and < relay_stop_timeout_seconds (relay range 1-7200)."
  type        = number
  default     = 3600

  validation {
    condition     = var.relay_graceful_timeout_seconds >= 1 && var.relay_graceful_timeout_seconds <= 7200
    error_message = "relay_graceful_timeout_seconds must be between 1 and 7200 (the relay's accepted range)."
  }

  validation {
    condition     = var.relay_graceful_timeout_seconds >= var.relay_deregistration_delay_seconds
    error_message = "relay_graceful_timeout_seconds must be >= relay_deregistration_delay_seconds: a call the load balancer still drains must not be cut by gunicorn."
  }
}

variable "relay_instance_type" {
  description = "EC2 instance type of the relays. Its architecture (x86_64 or arm64) must match the bundle's wheelhouse (`make relay-bundle RELAY_ARCH=...`); a precondition checks it."
  type        = string
  default     = "t3.small"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.relay_instance_type))
    error_message = "relay_instance_type must be an EC2 instance type such as t3.small."
  }
}

variable "relay_instance_warmup_seconds" {
  description = "Seconds a new relay instance gets to boot (cloud-init installs the bundle) before health checks count and before an instance refresh moves on."
  type        = number
  default     = 300

  validation {
    condition     = var.relay_instance_warmup_seconds >= 60 && var.relay_instance_warmup_seconds <= 3600
    error_message = "relay_instance_warmup_seconds must be between 60 and 3600."
  }
}

variable "relay_log_level" {
  description = "Relay log level (RELAY_LOG_LEVEL): DEBUG, INFO, WARNING or ERROR."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.relay_log_level)
    error_message = "relay_log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "relay_max_call_seconds" {
  description = "Longest call the relay allows (RELAY_MAX_CALL_SECONDS; relay range 10-3540, OpenAI ends sessions at 60 minutes). Must be below relay_deregistration_delay_seconds, or a deploy cuts the longest calls."
  type        = number
  default     = 3300

  validation {
    condition     = var.relay_max_call_seconds >= 10 && var.relay_max_call_seconds <= 3540
    error_message = "relay_max_call_seconds must be between 10 and 3540 (the relay's accepted range)."
  }

  validation {
    condition     = var.relay_max_call_seconds < var.relay_deregistration_delay_seconds
    error_message = "relay_max_call_seconds must be below relay_deregistration_delay_seconds, or a deploy or scale-in cuts the longest calls."
  }
}

variable "relay_max_calls_per_instance" {
  description = "Concurrent calls one relay instance accepts (RELAY_MAX_CALLS); past it new calls get 503 and /healthz reports saturated."
  type        = number
  default     = 300

  validation {
    condition     = var.relay_max_calls_per_instance >= 1 && var.relay_max_calls_per_instance <= 100000
    error_message = "relay_max_calls_per_instance must be between 1 and 100000."
  }
}

variable "relay_max_size" {
  description = "Most relay instances the Auto Scaling group runs (an instance refresh briefly needs one more than the current count)."
  type        = number
  default     = 4

  validation {
    condition     = var.relay_max_size >= var.relay_min_size && var.relay_max_size <= 100
    error_message = "relay_max_size must be at least relay_min_size and at most 100."
  }
}

variable "relay_min_size" {
  description = "Fewest relay instances; 2 keeps one per availability zone so a zone or instance failure does not stop calls."
  type        = number
  default     = 2

  validation {
    condition     = var.relay_min_size >= 1 && var.relay_min_size <= 100
    error_message = "relay_min_size must be between 1 and 100."
  }
}

variable "relay_stop_timeout_seconds" {
  description = "systemd TimeoutStopSec of the relay service: SIGKILL comes this long after SIGTERM. Must exceed relay_graceful_timeout_seconds so gunicorn's own drain always ends first."
  type        = number
  default     = 3660

  validation {
    condition     = var.relay_stop_timeout_seconds > var.relay_graceful_timeout_seconds
    error_message = "relay_stop_timeout_seconds must be greater than relay_graceful_timeout_seconds: systemd must not SIGKILL gunicorn while it drains calls."
  }
}

variable "relay_workers" {
  description = "gunicorn workers per relay instance (RELAY_WORKERS). null means one per core."
  type        = number
  default     = null

  validation {
    condition     = var.relay_workers == null ? true : var.relay_workers >= 1 && var.relay_workers <= 256
    error_message = "relay_workers must be null or between 1 and 256."
  }
}

variable "route53_zone_id" {
  description = "ID of the public Route 53 hosted zone that holds relay_domain_name; the certificate is validated and the alias record created in it."
  type        = string

  validation {
    condition     = can(regex("^Z[A-Z0-9]{4,32}$", var.route53_zone_id))
    error_message = "route53_zone_id must be a Route 53 hosted zone ID (Z...)."
  }
}

variable "secret_versions" {
  description = "Write-only version of each SSM secret. Terraform writes a secret only when its version changes: bump one to rotate it (the relay fleet rolls and the webhook restarts cold). stream_token_secret and diagnostic_token are generated by Terraform."
  type = object({
    diagnostic_token    = optional(number, 1)
    openai_api_key      = optional(number, 1)
    stream_token_secret = optional(number, 1)
    twilio_auth_token   = optional(number, 1)
  })
  default = {}

  validation {
    condition     = alltrue([for v in values(var.secret_versions) : v >= 1 && floor(v) == v])
    error_message = "Every secret_versions entry must be a whole number of at least 1."
  }
}

variable "subnet_ids" {
  description = "Subnets for the load balancer and the relays: public subnets (a route to an internet gateway) in at least two availability zones of vpc_id. Empty means the default VPC's default subnets."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.subnet_ids) == 0 || length(var.subnet_ids) >= 2
    error_message = "subnet_ids must be empty (default VPC) or list at least two subnets in different availability zones (an ALB needs two)."
  }
}

variable "tags" {
  description = "Extra tags for every resource (merged into the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "twilio_auth_token" {
  description = "Twilio account auth token: the webhook and the relay check X-Twilio-Signature with it. Ephemeral like openai_api_key (TF_VAR_twilio_auth_token); written only when secret_versions.twilio_auth_token changes."
  type        = string
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = length(var.twilio_auth_token) >= 8 && can(regex("^[A-Za-z0-9_-]+$", var.twilio_auth_token))
    error_message = "twilio_auth_token must be at least 8 characters of letters, digits, '-' and '_' (a Twilio auth token is 32 hex digits)."
  }
}

variable "vpc_id" {
  description = "VPC of subnet_ids. null (with subnet_ids empty) means the default VPC."
  type        = string
  default     = null

  validation {
    condition     = (var.vpc_id == null) == (length(var.subnet_ids) == 0)
    error_message = "Set vpc_id and subnet_ids together, or neither (default VPC)."
  }
}

variable "webhook_architecture" {
  description = "Lambda architecture of the webhook: x86_64 or arm64. Must match the wheels in the webhook zip (`make webhook-zip`)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.webhook_architecture)
    error_message = "webhook_architecture must be x86_64 or arm64."
  }
}

variable "webhook_fallback_message" {
  description = "What the caller hears if the relay fails or closes (FALLBACK_MESSAGE). null keeps the webhook's default."
  type        = string
  default     = null
}

variable "webhook_log_retention_days" {
  description = "Days CloudWatch keeps the webhook's logs (they name callers' phone numbers, so keep them no longer than needed)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.webhook_log_retention_days)
    error_message = "webhook_log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "webhook_memory_mb" {
  description = "Memory of the webhook Lambda in MB (CPU scales with it; 256 gives fast cold starts for a small Flask app)."
  type        = number
  default     = 256

  validation {
    condition     = var.webhook_memory_mb >= 128 && var.webhook_memory_mb <= 10240
    error_message = "webhook_memory_mb must be between 128 and 10240."
  }
}

variable "webhook_timeout_seconds" {
  description = "Webhook Lambda timeout in seconds. Twilio gives up on a webhook after 15 s, so a longer timeout only hides failures."
  type        = number
  default     = 10

  validation {
    condition     = var.webhook_timeout_seconds >= 1 && var.webhook_timeout_seconds <= 15
    error_message = "webhook_timeout_seconds must be between 1 and 15 (Twilio waits 15 s for a webhook)."
  }
}

variable "webhook_zip_path" {
  description = "Path of the Lambda zip built by `make webhook-zip`, relative to infra/ (where terraform runs)."
  type        = string
  default     = "../build/webhook-lambda.zip"

  validation {
    condition     = endswith(var.webhook_zip_path, ".zip")
    error_message = "webhook_zip_path must point at the .zip built by `make webhook-zip`."
  }
}
