################################################################################
# Instances: launch template (cloud-init, IMDSv2) and Auto Scaling group
#
# What makes the group roll (an instance refresh): a new launch template version, i.e. a change of
# the bundle, the assistant file, a relay setting, a secret's version, the AMI or the tags. Nothing
# else: the AMI is pinned by release (image_release) and each artifact by its S3 version, so an apply
# that changes nothing about the relay leaves the group alone (README: Deploy).
################################################################################

data "aws_ec2_instance_type" "this" {
  instance_type = var.instance_type
}

# The Amazon Linux 2023 release image_release, by name (the same in every region). Deprecated images
# are included: a pinned release keeps resolving until the operator moves it.
data "aws_ami" "al2023" {
  count = var.image_id == null ? 1 : 0

  owners             = ["amazon"]
  most_recent        = true
  include_deprecated = true

  filter {
    name   = "name"
    values = ["al2023-ami-${var.image_release}-kernel-6.1-${local.architecture}"]
  }
}

locals {
  image_id = coalesce(var.image_id, one(data.aws_ami.al2023[*].id))

  # Non-secret settings, written to local.env_file and read by systemd (EnvironmentFile=). A null
  # setting is left out so the relay uses its own default (relay/config.py). The assistant's words
  # are not here but in the assistant file (ASSISTANT_CONFIG), fetched from S3, so the user data does
  # not grow with a prompt.
  relay_env = {
    RELAY_BIND                     = "0.0.0.0:80"
    RELAY_PUBLIC_URL               = local.relay_public_url
    RELAY_MAX_CALL_SECONDS         = var.max_call_seconds
    RELAY_GRACEFUL_TIMEOUT_SECONDS = var.graceful_timeout_seconds
    RELAY_MAX_CALLS                = var.settings.max_calls
    RELAY_WORKERS                  = var.settings.workers
    RELAY_LOG_LEVEL                = var.settings.log_level
    RELAY_LOG_FORMAT               = "json"
    OPENAI_REALTIME_MODEL          = var.settings.openai_realtime_model
    OPENAI_VOICE                   = var.settings.openai_voice
    ASSISTANT_CONFIG               = var.assistant_config_path == null ? null : local.assistant_path
    CALL_REPORT_URL                = var.call_report_url
  }
  # Every value is a name, a number, a path or a URL validated without quotes, backslashes or spaces,
  # so a double-quoted value is taken literally by systemd. The secrets' versions are in the header:
  # rotating a secret changes the user data, which rolls the fleet so every relay fetches the new value.
  relay_env_file = join("", concat(
    ["# Liveline relay settings (non-secret), written by Terraform. Secrets version: ${var.secrets_version}\n"],
    [for key in sort(keys(local.relay_env)) : "${key}=\"${local.relay_env[key]}\"\n" if local.relay_env[key] != null],
  ))

  unit_vars = {
    service_user       = local.service_user
    install_dir        = local.install_dir
    env_file           = local.env_file
    secrets_file       = local.secrets_file
    metrics_token_file = local.metrics_token_file
    fetch_secrets      = local.fetch_secrets
    aws_region         = local.region
    secret_parameters  = join(" ", [for key in sort(keys(var.secret_parameters)) : var.secret_parameters[key].name])
    timeout_stop_sec   = var.stop_timeout_seconds
    log_directory_name = local.log_directory_name
    log_file           = local.log_file
  }

  watchdog_vars = {
    service_name     = local.service_name
    relay_health     = local.relay_health
    aws_region       = local.region
    instance_id_file = local.instance_id_file
    livez_url        = local.livez_url
    interval_s       = local.watchdog_interval_s
    timeout_s        = local.watchdog_timeout_s
    failures         = local.watchdog_failures
  }

  logrotate_vars = {
    log_file = local.log_file
  }

  install_vars = {
    service_name      = local.service_name
    service_user      = local.service_user
    watchdog_name     = local.watchdog_name
    install_dir       = local.install_dir
    aws_region        = local.region
    artifacts_bucket  = aws_s3_bucket.artifacts.id
    bundle_key        = aws_s3_object.bundle.key
    bundle_version    = aws_s3_object.bundle.version_id
    bundle_sha256     = local.bundle_sha256
    assistant_key     = local.assistant_key
    assistant_version = var.assistant_config_path == null ? "" : aws_s3_object.assistant[0].version_id
    assistant_sha256  = local.assistant_sha256
    assistant_path    = local.assistant_path
    instance_id_file  = local.instance_id_file
    autoscaling_group = local.autoscaling_group_name
    lifecycle_hook    = local.lifecycle_hook_name
    relay_health      = local.relay_health
    log_directory     = local.log_directory
    agent_config      = local.agent_config
    healthz_url       = local.healthz_url
    ready_deadline_s  = local.ready_deadline_s
  }

  # Each file as a YAML literal block (indented under content:); the whole user data is gzipped, which
  # keeps it far below EC2's 16 KB (the launch template's precondition checks it).
  cloud_init_vars = {
    unit_path              = local.unit_path
    unit                   = indent(6, templatefile("${path.module}/templates/relay.service.tftpl", local.unit_vars))
    watchdog_unit_path     = local.watchdog_unit_path
    watchdog_unit          = indent(6, templatefile("${path.module}/templates/relay-watchdog.service.tftpl", local.watchdog_vars))
    env_file               = local.env_file
    env                    = indent(6, local.relay_env_file)
    fetch_secrets          = local.fetch_secrets
    fetch_secrets_py       = indent(6, file("${path.module}/templates/fetch-secrets.py"))
    relay_health           = local.relay_health
    relay_health_py        = indent(6, file("${path.module}/templates/relay-health.py"))
    agent_config           = local.agent_config
    agent_config_json      = indent(6, templatefile("${path.module}/templates/cloudwatch-agent.json.tftpl", local.agent_config_vars))
    prometheus_config      = local.prometheus_config
    prometheus_config_json = indent(6, templatefile("${path.module}/templates/prometheus.yaml.tftpl", local.prometheus_config_vars))
    logrotate_config       = local.logrotate_config
    logrotate              = indent(6, templatefile("${path.module}/templates/logrotate.conf.tftpl", local.logrotate_vars))
    install_script         = local.install_script
    install_sh             = indent(6, templatefile("${path.module}/templates/install-relay.sh.tftpl", local.install_vars))
  }

  cloud_init = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", local.cloud_init_vars)
  user_data  = base64gzip(local.cloud_init)

  # Launched instances and their volumes carry the stack's tags: the provider's default_tags stop at the
  # launch template and the group.
  instance_tags = merge(var.tags, { Name = "${var.name}-relay", Component = "relay" })
}

resource "aws_launch_template" "this" {
  #checkov:skip=CKV_AWS_88:Relays sit in public subnets with public IPs for egress to OpenAI instead of a NAT gateway per AZ; their security group admits only port 80 from the load balancer.
  name_prefix            = "${var.name}-relay-"
  description            = "Liveline relay: bundle ${local.bundle_sha256}, assistant ${local.assistant_sha256 == "" ? "none" : local.assistant_sha256}"
  image_id               = local.image_id
  instance_type          = var.instance_type
  update_default_version = true
  # No secrets here (checkov CKV_AWS_46): the service fetches them from SSM at start.
  user_data = local.user_data

  iam_instance_profile {
    arn = aws_iam_instance_profile.this.arn
  }

  # IMDSv2 only, and a hop limit of 1 so nothing but the host itself reaches the role's credentials.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  network_interfaces {
    associate_public_ip_address = true
    delete_on_termination       = true
    security_groups             = [aws_security_group.relay.id]
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_size           = 16
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = local.instance_tags
  }

  tag_specifications {
    resource_type = "volume"
    tags          = local.instance_tags
  }

  tag_specifications {
    resource_type = "network-interface"
    tags          = local.instance_tags
  }

  lifecycle {
    precondition {
      condition     = local.bundle_manifest.wheelhouse
      error_message = "The relay bundle has no wheelhouse (built with --no-wheelhouse?): run make relay-bundle."
    }

    precondition {
      condition     = local.bundle_manifest.sha256 == local.bundle_sha256
      error_message = "The relay bundle's manifest does not match the zip: rebuild both with make relay-bundle."
    }

    precondition {
      condition     = contains(data.aws_ec2_instance_type.this.supported_architectures, local.architecture)
      error_message = "instance_type ${var.instance_type} cannot run the bundle's ${local.architecture} wheels: pick a matching instance type or rebuild with make relay-bundle RELAY_ARCH=..."
    }

    # EC2 caps user data at 16 KB before base64 (21848 base64 characters). Nothing an operator writes
    # goes in it, so only a change to these templates could reach the cap: fail the plan, not the launch.
    precondition {
      condition     = length(local.user_data) <= 21848
      error_message = "The relay's gzipped user data is ${length(local.user_data)} base64 characters, over EC2's 16 KB (21848): move content out of modules/relay/templates into S3."
    }
  }
}

resource "aws_autoscaling_group" "this" {
  name                = local.autoscaling_group_name
  vpc_zone_identifier = var.subnet_ids
  min_size            = var.min_size
  max_size            = var.max_size
  # EC2 status checks plus the instance's own watchdog (set-instance-health), never the load balancer's
  # /healthz: that one says "full", which is not "broken" (main.tf).
  health_check_type = "EC2"
  # An instance enters service only once its relay takes calls (the launch lifecycle hook), so there is
  # nothing left to wait for (EC2 Auto Scaling user guide: health check grace period).
  health_check_grace_period = 0
  default_instance_warmup   = var.instance_warmup_seconds
  target_group_arns         = [aws_lb_target_group.this.arn]
  wait_for_capacity_timeout = "${ceil(var.boot_timeout_seconds / 60) + 10}m"
  enabled_metrics = [
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
  ]

  # latest_version, never "$Latest": a refresh does not start for "$Latest" (provider docs,
  # aws_autoscaling_group instance_refresh). A rollback
  # pins an older version (launch_template_version, README: Roll back); every version still boots
  # what it booted when it was made (storage.tf).
  launch_template {
    id      = aws_launch_template.this.id
    version = coalesce(var.launch_template_version, aws_launch_template.this.latest_version)
  }

  # Every replacement launches first: a relay replaced for failing its watchdog, and each step of a
  # refresh, is in service before its predecessor stops taking calls.
  instance_maintenance_policy {
    min_healthy_percentage = 100
    max_healthy_percentage = 200
  }

  # No auto_rollback: Terraform points the group at the new version before the refresh starts, so
  # AWS's rollback "returns" to that same version (hashicorp/terraform-provider-aws#34189). A failing
  # release never enters service anyway (the launch hook abandons it) and the refresh fails after an
  # hour; README: Roll back says what to do.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = 100
      max_healthy_percentage = 200
      instance_warmup        = var.instance_warmup_seconds
      skip_matching          = true
      auto_rollback          = false
    }
  }

  # In service only when ready: templates/install-relay.sh.tftpl completes this action once /healthz
  # answers 200 on the instance, or abandons it (the instance is then terminated). initial_ covers the
  # group's very first instances; aws_autoscaling_lifecycle_hook.ready keeps it on a group created
  # before the hook existed.
  initial_lifecycle_hook {
    name                 = local.lifecycle_hook_name
    lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"
    default_result       = "ABANDON"
    heartbeat_timeout    = var.boot_timeout_seconds
  }

  dynamic "tag" {
    for_each = local.instance_tags

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  timeouts {
    delete = "90m"
  }

  # Destroyed before the listener and its rules, hence before the load balancer: relays drain their
  # calls (up to the deregistration delay) while the load balancer still carries them.
  depends_on = [
    aws_lb_listener.https,
    aws_lb_listener_rule.relay,
    aws_lb_listener_rule.operator,
    aws_lb_listener_rule.operator_refused,
  ]

  lifecycle {
    precondition {
      condition     = var.launch_template_version == null ? true : var.launch_template_version <= aws_launch_template.this.latest_version
      error_message = "launch_template_version must be an existing version of the relay's launch template (1 to its latest)."
    }
  }
}

resource "aws_autoscaling_lifecycle_hook" "ready" {
  name                   = local.lifecycle_hook_name
  autoscaling_group_name = aws_autoscaling_group.this.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_LAUNCHING"
  default_result         = "ABANDON"
  heartbeat_timeout      = var.boot_timeout_seconds
}

################################################################################
# Scaling: on live calls per relay, with CPU as a guard (README: Surges)
################################################################################

# Target tracking on the relays' own count of live calls (liveline_calls_active, published per
# instance by the CloudWatch agent, observability.tf), averaged over the group. The target sits below
# RELAY_MAX_CALLS so new relays boot while the running ones still have room.
resource "aws_autoscaling_policy" "calls" {
  name                   = "${var.name}-relay-calls"
  autoscaling_group_name = aws_autoscaling_group.this.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    customized_metric_specification {
      metric_name = local.active_calls_metric
      namespace   = local.metric_namespace
      statistic   = "Average"

      metric_dimension {
        name  = "AutoScalingGroupName"
        value = local.autoscaling_group_name
      }
    }
    target_value = local.calls_target
  }

  lifecycle {
    precondition {
      condition     = local.calls_target < var.settings.max_calls
      error_message = "The calls-per-relay target (${local.calls_target}) must stay below RELAY_MAX_CALLS (${var.settings.max_calls})."
    }
  }
}

# A guard: relays also scale out if CPU runs hot before the call count says so (with several
# target tracking policies the group scales out on any of them, in only when all agree).
resource "aws_autoscaling_policy" "cpu" {
  name                   = "${var.name}-relay-cpu"
  autoscaling_group_name = aws_autoscaling_group.this.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
    target_value = var.cpu_target_percent
  }
}
