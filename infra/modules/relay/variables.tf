################################################################################
# Inputs of the relay module, in alphabetical order. The root module (infra/variables.tf) documents
# the operator-facing defaults; the ranges the design depends on are validated again here so the
# module stays safe on its own.
################################################################################

variable "access_log_retention_days" {
  description = "Days the load balancer's access logs are kept in their S3 bucket (1-3650)."
  type        = number

  validation {
    condition     = var.access_log_retention_days >= 1 && var.access_log_retention_days <= 3650
    error_message = "access_log_retention_days must be between 1 and 3650."
  }
}

variable "assistant_config_path" {
  description = "Path of the assistant file (TOML, ASSISTANT_CONFIG) shipped to the relays through S3; null ships none (the relay's built-in assistant)."
  type        = string
  default     = null

  validation {
    condition     = var.assistant_config_path == null ? true : endswith(var.assistant_config_path, ".toml") && fileexists(var.assistant_config_path)
    error_message = "assistant_config_path must be null or the path of an existing .toml file."
  }
}

variable "boot_timeout_seconds" {
  description = "How long a new relay may take from launch to taking calls (installing, starting, /healthz 200) before it is given up and replaced: the launch lifecycle hook's timeout (180-3600)."
  type        = number

  validation {
    condition     = var.boot_timeout_seconds >= 180 && var.boot_timeout_seconds <= 3600
    error_message = "boot_timeout_seconds must be between 180 and 3600."
  }
}

variable "bundle_path" {
  description = "Path of the relay bundle zip (`make relay-bundle`). Its manifest, written by scripts/build_relay_bundle.py, is the same path with .json instead of .zip."
  type        = string

  validation {
    condition     = endswith(var.bundle_path, ".zip")
    error_message = "bundle_path must point at the relay bundle .zip."
  }
}

variable "call_report_url" {
  description = "CALL_REPORT_URL: where each relay POSTs every call's signed record when it ends; null sends none."
  type        = string
  default     = null

  validation {
    condition     = var.call_report_url == null ? true : can(regex("^https://[^\\s\"'`$\\\\]+$", var.call_report_url))
    error_message = "call_report_url must be an https:// URL without spaces, quotes, backslashes or '$'."
  }
}

variable "calls_target_percent" {
  description = "Live calls per relay that target tracking aims for, as a percentage of RELAY_MAX_CALLS (10-90)."
  type        = number

  validation {
    condition     = var.calls_target_percent >= 10 && var.calls_target_percent <= 90
    error_message = "calls_target_percent must be between 10 and 90."
  }
}

variable "cpu_target_percent" {
  description = "Average CPU of the fleet that target tracking keeps (10-90)."
  type        = number

  validation {
    condition     = var.cpu_target_percent >= 10 && var.cpu_target_percent <= 90
    error_message = "cpu_target_percent must be between 10 and 90."
  }
}

variable "deletion_protection" {
  description = "Turn on the load balancer's deletion protection."
  type        = bool
}

variable "deregistration_delay_seconds" {
  description = "Target group deregistration delay: how long a leaving relay keeps its calls (AWS range 0-3600). Must exceed max_call_seconds."
  type        = number

  validation {
    condition     = var.deregistration_delay_seconds >= 0 && var.deregistration_delay_seconds <= 3600
    error_message = "deregistration_delay_seconds must be from 0 to 3600 (the AWS range)."
  }
}

variable "diagnostic_allowed_cidrs" {
  description = "Source addresses (CIDR blocks) the load balancer forwards /diagnostic/* and /metrics from; empty means nobody (at most 15)."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.diagnostic_allowed_cidrs) <= 15 && alltrue([for cidr in var.diagnostic_allowed_cidrs : can(cidrhost(cidr, 0))])
    error_message = "diagnostic_allowed_cidrs must list at most 15 CIDR blocks such as 203.0.113.7/32."
  }
}

variable "domain_name" {
  description = "Fully qualified name of the relay (e.g. relay.example.com), inside the zone zone_id."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name))
    error_message = "domain_name must be a lowercase fully qualified domain name such as relay.example.com."
  }
}

variable "egress_extra_ports" {
  description = "TCP ports besides 443 the relays may connect out to (tool or report URLs served on another port)."
  type        = list(number)
  default     = []

  validation {
    condition     = alltrue([for port in var.egress_extra_ports : port >= 1 && port <= 65535 && floor(port) == port])
    error_message = "egress_extra_ports must hold TCP port numbers (1-65535)."
  }
}

variable "enable_ipv6" {
  description = "Make the load balancer dualstack and add an AAAA alias record (the subnets need IPv6 CIDR blocks)."
  type        = bool
}

variable "enable_session_manager" {
  description = "Grant relay instances the Session Manager channel actions so operators can open a shell without SSH."
  type        = bool
}

variable "graceful_timeout_seconds" {
  description = "gunicorn graceful_timeout (RELAY_GRACEFUL_TIMEOUT_SECONDS), 1-7200: >= deregistration_delay_seconds and < stop_timeout_seconds."
  type        = number

  validation {
    condition     = var.graceful_timeout_seconds >= 1 && var.graceful_timeout_seconds <= 7200
    error_message = "graceful_timeout_seconds must be between 1 and 7200."
  }

  validation {
    condition     = var.graceful_timeout_seconds >= var.deregistration_delay_seconds
    error_message = "graceful_timeout_seconds must be >= deregistration_delay_seconds."
  }
}

variable "idle_timeout_seconds" {
  description = "Load balancer idle timeout in seconds (AWS range 1-4000)."
  type        = number

  validation {
    condition     = var.idle_timeout_seconds >= 1 && var.idle_timeout_seconds <= 4000
    error_message = "idle_timeout_seconds must be from 1 to 4000 (the AWS range)."
  }
}

variable "image_id" {
  description = "AMI for the relays, overriding image_release; null uses the Amazon Linux 2023 release image_release."
  type        = string
  default     = null
}

variable "image_release" {
  description = "Amazon Linux 2023 release the relays boot (AMI al2023-ami-<release>-kernel-6.1-<arch>), e.g. 2023.11.20260514.0."
  type        = string

  validation {
    condition     = can(regex("^2023\\.[0-9]+\\.[0-9]{8}\\.[0-9]+$", var.image_release))
    error_message = "image_release must be an Amazon Linux 2023 release such as 2023.11.20260514.0."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the relays; must support the bundle's architecture."
  type        = string
}

variable "instance_warmup_seconds" {
  description = "Seconds after a new relay enters service (already taking calls) before its metrics count for scaling and an instance refresh moves on (30-3600)."
  type        = number

  validation {
    condition     = var.instance_warmup_seconds >= 30 && var.instance_warmup_seconds <= 3600
    error_message = "instance_warmup_seconds must be between 30 and 3600."
  }
}

variable "kms_key_arn" {
  description = "ARN of the customer managed KMS key that encrypts the SSM secrets and the bundle bucket; the instance role may decrypt with it through SSM and S3 only."
  type        = string
}

variable "launch_template_version" {
  description = "Pin the group to this launch template version (a rollback, README: Roll back); null follows the latest version."
  type        = number
  default     = null

  validation {
    condition     = var.launch_template_version == null ? true : var.launch_template_version >= 1 && floor(var.launch_template_version) == var.launch_template_version
    error_message = "launch_template_version must be null or a launch template version number (1, 2, ...)."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps the relays' logs."
  type        = number
}

variable "max_call_seconds" {
  description = "Longest call the relay allows (RELAY_MAX_CALL_SECONDS, 10-3540); must be below deregistration_delay_seconds."
  type        = number

  validation {
    condition     = var.max_call_seconds >= 10 && var.max_call_seconds <= 3540
    error_message = "max_call_seconds must be between 10 and 3540."
  }

  validation {
    condition     = var.max_call_seconds < var.deregistration_delay_seconds
    error_message = "max_call_seconds must be below deregistration_delay_seconds."
  }
}

variable "max_size" {
  description = "Most instances in the Auto Scaling group."
  type        = number
}

variable "min_size" {
  description = "Fewest instances in the Auto Scaling group."
  type        = number

  validation {
    condition     = var.min_size >= 1
    error_message = "min_size must be at least 1."
  }
}

variable "name" {
  description = "Name prefix of every relay resource."
  type        = string
}

variable "releases_kept" {
  description = "Replaced versions of the bundle and of the assistant file kept in S3 however old (older ones go 30 days after being replaced): how far back a rollback can go (1-100)."
  type        = number

  validation {
    condition     = var.releases_kept >= 1 && var.releases_kept <= 100
    error_message = "releases_kept must be between 1 and 100 (S3's limit for newer noncurrent versions)."
  }
}

variable "secret_parameters" {
  description = "The relay's secrets in SSM, by environment variable name: { OPENAI_API_KEY = { name = \"/liveline/OPENAI_API_KEY\", arn = \"arn:...\" }, ... }. Each parameter's last path segment must equal its variable name."
  type = map(object({
    name = string
    arn  = string
  }))

  validation {
    condition     = alltrue([for k, p in var.secret_parameters : endswith(p.name, "/${k}")])
    error_message = "Each secret parameter's name must end in /<ENV_VAR_NAME> (the fetch script names the variable after it)."
  }
}

variable "secrets_version" {
  description = "Fingerprint of the secrets' versions; a change rolls the fleet so every relay re-reads its secrets."
  type        = string
}

variable "settings" {
  description = "Non-secret relay settings written to its environment file: openai_realtime_model, openai_voice, log_level, max_calls, and optional workers (null = one per core)."
  type = object({
    openai_realtime_model = string
    openai_voice          = string
    log_level             = string
    max_calls             = number
    workers               = optional(number)
  })
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS:443 listener (a TLS 1.3 policy)."
  type        = string

  validation {
    condition     = startswith(var.ssl_policy, "ELBSecurityPolicy-TLS13-")
    error_message = "ssl_policy must be a TLS 1.3 policy (ELBSecurityPolicy-TLS13-...)."
  }
}

variable "stop_timeout_seconds" {
  description = "systemd TimeoutStopSec of the relay service; must exceed graceful_timeout_seconds."
  type        = number

  validation {
    condition     = var.stop_timeout_seconds > var.graceful_timeout_seconds
    error_message = "stop_timeout_seconds must be greater than graceful_timeout_seconds."
  }
}

variable "subnet_ids" {
  description = "Public subnets (route to an internet gateway) in at least two availability zones, for the load balancer and the relays."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids must list at least two subnets (an ALB needs two availability zones)."
  }
}

variable "tags" {
  description = "Tags for the relay instances, their volumes and network interfaces, and the group (the provider's default_tags do not reach what the group launches)."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "VPC of subnet_ids."
  type        = string
}

variable "zone_id" {
  description = "Public Route 53 hosted zone that holds domain_name."
  type        = string
}
