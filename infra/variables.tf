################################################################################
# Inputs of the Liveline stack, in alphabetical order. Copy terraform.tfvars.example to
# terraform.tfvars (git-ignored) for the non-secret ones; pass the two secrets as TF_VAR_ environment
# variables (see README.md).
#
# The timeouts are ordered so that a deploy drains calls instead of cutting them (README.md, Deploy):
#   relay_max_call_seconds < relay_deregistration_delay_seconds <= relay_graceful_timeout_seconds
#   < relay_stop_timeout_seconds
# Each link is checked by a validation below, by checkov (infra/policies) and by tests/infra.
################################################################################

variable "alarm_failed_calls_threshold" {
  description = "Failed calls in 5 minutes (OpenAI failures at the relays plus 5xx answers to upgrades) that raise the calls-failing alarm."
  type        = number
  default     = 5

  validation {
    condition     = var.alarm_failed_calls_threshold >= 1
    error_message = "alarm_failed_calls_threshold must be at least 1."
  }
}

variable "alarm_first_audio_p90_ms" {
  description = "Time to first audio in milliseconds that one call in ten may exceed, two 5-minute periods running, before the first-audio-slow alarm fires."
  type        = number
  default     = 2500

  validation {
    condition     = var.alarm_first_audio_p90_ms >= 100
    error_message = "alarm_first_audio_p90_ms must be at least 100."
  }
}

variable "alarm_subscribers" {
  description = "Who the alarms notify, as SNS subscriptions: [{ protocol = \"email\", endpoint = \"oncall@example.com\" }, ...]. Email subscribers must confirm the message AWS sends them. Empty: the topic exists, nobody is told."
  type = list(object({
    protocol = string
    endpoint = string
  }))
  default = []

  validation {
    condition     = alltrue([for s in var.alarm_subscribers : contains(["email", "email-json", "https", "sms", "sqs", "lambda"], s.protocol)])
    error_message = "Each alarm_subscribers protocol must be email, email-json, https, sms, sqs or lambda."
  }
}

variable "alb_access_log_retention_days" {
  description = "Days the relay load balancer's access logs are kept in S3 (they hold each request's time, client address and path)."
  type        = number
  default     = 30

  validation {
    condition     = var.alb_access_log_retention_days >= 1 && var.alb_access_log_retention_days <= 3650
    error_message = "alb_access_log_retention_days must be between 1 and 3650."
  }
}

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

variable "assistant_config_file" {
  description = "The assistant file (TOML; ASSISTANT_CONFIG): instructions, greeting, voice, tools, hang-up, transfer destinations, per-number assistants. Path relative to infra/; shipped to the relays through S3 (a change rolls the fleet). null ships none: the relay's built-in assistant."
  type        = string
  default     = "assistant.example.toml"

  validation {
    condition     = var.assistant_config_file == null ? true : endswith(var.assistant_config_file, ".toml") && fileexists(var.assistant_config_file)
    error_message = "assistant_config_file must be null or the path (relative to infra/) of an existing .toml file."
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

variable "call_report_url" {
  description = "CALL_REPORT_URL: where each relay POSTs every call's record (transcript, outcome, timings) when it ends, signed with RELAY_SIGNING_SECRET. null sends none."
  type        = string
  default     = null

  validation {
    condition     = var.call_report_url == null ? true : can(regex("^https://[^\\s\"'`$\\\\]+$", var.call_report_url)) && length(var.call_report_url) <= 2048
    error_message = "call_report_url must be an https:// URL (at most 2048 characters) without spaces, quotes, backslashes or '$'."
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
  description = "AMI for relay instances, overriding relay_ami_release (null). Must be Amazon Linux 2023 (the cloud-init uses dnf and python3.11)."
  type        = string
  default     = null

  validation {
    condition     = var.relay_ami_id == null ? true : can(regex("^ami-[0-9a-f]{8,17}$", var.relay_ami_id))
    error_message = "relay_ami_id must be null or an AMI id (ami-...)."
  }
}

variable "relay_ami_release" {
  description = "Amazon Linux 2023 release the relays boot (AMI al2023-ami-<release>-kernel-6.1-<arch>, the same name in every region). Pinned, so a newly published AMI never rolls the fleet by itself; change it to move (the fleet then rolls, draining calls). Releases: docs.aws.amazon.com/linux/al2023/release-notes."
  type        = string
  default     = "2023.11.20260514.0"

  validation {
    condition     = can(regex("^2023\\.[0-9]+\\.[0-9]{8}\\.[0-9]+$", var.relay_ami_release))
    error_message = "relay_ami_release must be an Amazon Linux 2023 release such as 2023.11.20260514.0."
  }
}

variable "relay_boot_timeout_seconds" {
  description = "How long a new relay may take from launch to taking calls (packages, bundle, start, /healthz 200) before it is given up and replaced (the launch lifecycle hook's timeout). An instance enters service only once ready."
  type        = number
  default     = 600

  validation {
    condition     = var.relay_boot_timeout_seconds >= 180 && var.relay_boot_timeout_seconds <= 3600
    error_message = "relay_boot_timeout_seconds must be between 180 and 3600."
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

variable "relay_calls_target_percent" {
  description = "Live calls per relay that scaling aims for, as a percentage of relay_max_calls_per_instance (RELAY_MAX_CALLS): 60 keeps 40 % of every relay free for a surge while new relays boot (README: Surges)."
  type        = number
  default     = 60

  validation {
    condition     = var.relay_calls_target_percent >= 10 && var.relay_calls_target_percent <= 90
    error_message = "relay_calls_target_percent must be between 10 and 90."
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

variable "relay_diagnostic_allowed_cidrs" {
  description = "Source addresses (CIDR blocks, at most 15) the load balancer lets reach the relays' /diagnostic/* and /metrics, e.g. [\"203.0.113.7/32\"] for the machine that runs scripts/verify_deploy.py. Empty (the default): nobody from the internet."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.relay_diagnostic_allowed_cidrs) <= 15 && alltrue([for cidr in var.relay_diagnostic_allowed_cidrs : can(cidrhost(cidr, 0))])
    error_message = "relay_diagnostic_allowed_cidrs must list at most 15 CIDR blocks such as 203.0.113.7/32."
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

variable "relay_egress_extra_ports" {
  description = "TCP ports besides 443 the relays may connect out to: list the port of any tool URL or CALL_REPORT_URL served on another port (https://tools.example.com:8443/...)."
  type        = list(number)
  default     = []

  validation {
    condition     = alltrue([for port in var.relay_egress_extra_ports : port >= 1 && port <= 65535 && floor(port) == port])
    error_message = "relay_egress_extra_ports must hold TCP port numbers (1-65535)."
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
  description = "Seconds after a new relay enters service (it already takes calls: see relay_boot_timeout_seconds) before its metrics count for scaling and an instance refresh moves on to the next relay."
  type        = number
  default     = 60

  validation {
    condition     = var.relay_instance_warmup_seconds >= 30 && var.relay_instance_warmup_seconds <= 3600
    error_message = "relay_instance_warmup_seconds must be between 30 and 3600."
  }
}

variable "relay_launch_template_version" {
  description = "Roll back: pin the relays to this launch template version (each version boots the bundle and assistant file it was made with). null follows the newest. Unset it to deploy again (README: Roll back)."
  type        = number
  default     = null

  validation {
    condition     = var.relay_launch_template_version == null ? true : var.relay_launch_template_version >= 1 && floor(var.relay_launch_template_version) == var.relay_launch_template_version
    error_message = "relay_launch_template_version must be null or a launch template version number (1, 2, ...)."
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

variable "relay_log_retention_days" {
  description = "Days CloudWatch Logs keeps the relays' logs (/<name>/relay)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.relay_log_retention_days)
    error_message = "relay_log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
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
  description = "Concurrent calls one relay instance accepts (RELAY_MAX_CALLS); past it new calls get 503 and /healthz reports saturated, so the load balancer sends it none until calls end. Scaling aims at relay_calls_target_percent of it."
  type        = number
  default     = 300

  validation {
    condition     = var.relay_max_calls_per_instance >= 2 && var.relay_max_calls_per_instance <= 100000
    error_message = "relay_max_calls_per_instance must be between 2 and 100000 (scaling aims below it)."
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

variable "relay_releases_kept" {
  description = "Replaced versions of the relay bundle and of the assistant file kept in S3 however old (older ones go 30 days after being replaced): how many releases back a rollback can go."
  type        = number
  default     = 10

  validation {
    condition     = var.relay_releases_kept >= 1 && var.relay_releases_kept <= 100
    error_message = "relay_releases_kept must be between 1 and 100."
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
  description = "Write-only version of each SSM secret. Terraform writes a secret only when its version changes: bump one to rotate it (the relay fleet rolls and the webhook restarts cold). stream_token_secret, diagnostic_token and relay_signing_secret are generated by Terraform; twilio_api_key versions the optional API key's SID and secret together."
  type = object({
    diagnostic_token     = optional(number, 1)
    openai_api_key       = optional(number, 1)
    relay_signing_secret = optional(number, 1)
    stream_token_secret  = optional(number, 1)
    twilio_api_key       = optional(number, 1)
    twilio_auth_token    = optional(number, 1)
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

variable "twilio_api_key_secret" {
  description = "Secret of the Twilio API key named by twilio_api_key_sid. Ephemeral like twilio_auth_token (TF_VAR_twilio_api_key_secret): written to SSM only when secret_versions.twilio_api_key changes, never stored in the state."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = var.twilio_api_key_secret == null ? true : length(var.twilio_api_key_secret) >= 16 && can(regex("^[A-Za-z0-9_-]+$", var.twilio_api_key_secret))
    error_message = "twilio_api_key_secret must be at least 16 characters of letters, digits, '-' and '_'."
  }

  validation {
    condition     = (var.twilio_api_key_secret == null) == (var.twilio_api_key_sid == null)
    error_message = "Set twilio_api_key_sid and twilio_api_key_secret together (TF_VAR_twilio_api_key_secret), or neither."
  }
}

variable "twilio_api_key_sid" {
  description = "Optional Twilio API key (SK...) the relays use for hang-up and transfer (Twilio's REST API) instead of the account's auth token; give its secret in twilio_api_key_secret. null: the auth token."
  type        = string
  default     = null

  validation {
    condition     = var.twilio_api_key_sid == null ? true : can(regex("^SK[0-9a-fA-F]{32}$", var.twilio_api_key_sid))
    error_message = "twilio_api_key_sid must be null or a Twilio API key SID (SK followed by 32 hex digits)."
  }
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

variable "webhook_reserved_concurrency" {
  description = "Concurrent executions reserved for the webhook, which also caps it: a flood of requests cannot take the account's Lambda concurrency. 20 answers about 200 calls a second. null reserves none (needed on accounts whose concurrency quota would leave less than 100 unreserved, e.g. new accounts with a quota of 10)."
  type        = number
  default     = 20

  validation {
    condition     = var.webhook_reserved_concurrency == null ? true : var.webhook_reserved_concurrency >= 1 && var.webhook_reserved_concurrency <= 1000 && floor(var.webhook_reserved_concurrency) == var.webhook_reserved_concurrency
    error_message = "webhook_reserved_concurrency must be null or a whole number from 1 to 1000."
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
