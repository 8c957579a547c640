################################################################################
# The relay: gunicorn + gevent-websocket on port 80 of Amazon Linux 2023 instances in an Auto Scaling
# group, behind an HTTPS-only Application Load Balancer with an ACM certificate (infra.md 2a, 4).
#
# Shutdown chain on a deploy or scale-in, and the values that keep it draining instead of cutting:
#   ALB stops sending new calls to the target and drains it for deregistration_delay_seconds
#   -> the ASG terminates the instance -> systemd sends SIGTERM, gunicorn (relay/worker.py) lets live
#   calls finish for graceful_timeout_seconds -> systemd SIGKILLs after stop_timeout_seconds.
#   max_call_seconds < deregistration_delay_seconds <= graceful_timeout_seconds < stop_timeout_seconds
################################################################################

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  region = data.aws_region.current.region

  # Paths on the instance. The unit, the install script and cloud-init all take them from here.
  service_name   = "liveline-relay"
  service_user   = "liveline-relay"
  install_dir    = "/opt/liveline-relay"
  unit_path      = "/etc/systemd/system/liveline-relay.service"
  env_file       = "/etc/liveline/relay.env"
  secrets_file   = "/run/liveline-relay/secrets.env"
  fetch_secrets  = "/usr/local/libexec/liveline-relay-fetch-secrets"
  install_script = "/usr/local/libexec/liveline-relay-install"

  relay_public_url = "wss://${var.domain_name}"
}

################################################################################
# Bundle: relay/ + requirements/relay.txt + a wheelhouse, built by `make relay-bundle`
################################################################################

locals {
  bundle_sha256   = filesha256(var.bundle_path)
  bundle_manifest = jsondecode(file("${trimsuffix(var.bundle_path, ".zip")}.json"))
  # Keyed by content: a code change is a new key, hence new user data, a new launch template version and
  # an instance refresh (infra.md 4).
  bundle_key = "relay/${local.bundle_sha256}.zip"
  # EC2's name for the bundle's CPU architecture (x86_64 or arm64).
  architecture = local.bundle_manifest.ec2_architecture
}

resource "aws_s3_bucket" "bundle" {
  #checkov:skip=CKV_AWS_18:Holds only build artifacts keyed by their hash, reproducible from git; CloudTrail covers access.
  #checkov:skip=CKV_AWS_144:Build artifacts are rebuilt from git with make relay-bundle; cross-region replication adds nothing.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events from the artifact bucket; instances fetch their bundle at boot.
  bucket_prefix = "${var.name}-relay-artifacts-"
  # Artifacts only: terraform destroy may empty the bucket.
  force_destroy = true
}

resource "aws_s3_bucket_public_access_block" "bundle" {
  bucket                  = aws_s3_bucket.bundle.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "bundle" {
  bucket = aws_s3_bucket.bundle.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "bundle" {
  bucket = aws_s3_bucket.bundle.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "bundle" {
  bucket = aws_s3_bucket.bundle.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "bundle" {
  bucket = aws_s3_bucket.bundle.id

  # Current bundles are never expired: an instance launched later (scale-out, replacement) still needs
  # the one its launch template names. Old keys go when Terraform replaces the object.
  rule {
    id     = "tidy"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.bundle]
}

data "aws_iam_policy_document" "bundle_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.bundle.arn, "${aws_s3_bucket.bundle.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "bundle" {
  bucket = aws_s3_bucket.bundle.id
  policy = data.aws_iam_policy_document.bundle_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.bundle]
}

resource "aws_s3_object" "bundle" {
  bucket      = aws_s3_bucket.bundle.id
  key         = local.bundle_key
  source      = var.bundle_path
  source_hash = local.bundle_sha256

  depends_on = [aws_s3_bucket_server_side_encryption_configuration.bundle]
}

################################################################################
# Instance role: read the bundle, read the relay's four secrets, nothing else
################################################################################

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name_prefix        = "${var.name}-relay-"
  description        = "Liveline relay instances: read the relay bundle and the relay's SSM secrets."
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "ReadRelaySecrets"
    actions   = ["ssm:GetParameters"]
    resources = sort([for p in values(var.secret_parameters) : p.arn])
  }

  statement {
    sid       = "DecryptViaSsmAndS3"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ssm.${local.region}.amazonaws.com", "s3.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "ReadRelayBundles"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.bundle.arn}/relay/*"]
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "relay"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}

# Session Manager's channel only. AmazonSSMManagedInstanceCore would also grant ssm:GetParameter(s) on
# every parameter in the account.
data "aws_iam_policy_document" "session_manager" {
  statement {
    sid       = "RegisterWithSessionManager"
    actions   = ["ssm:UpdateInstanceInformation"]
    resources = ["arn:${data.aws_partition.current.partition}:ec2:${local.region}:${data.aws_caller_identity.current.account_id}:instance/*"]
  }

  statement {
    sid = "SessionManagerChannel"
    actions = [
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
    ]
    # ssmmessages has no resource-level permissions: "*" is the only valid resource.
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "session_manager" {
  count = var.enable_session_manager ? 1 : 0

  name   = "session-manager"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.session_manager.json
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${var.name}-relay-"
  role        = aws_iam_role.this.name
}

################################################################################
# Security groups: the world reaches the ALB on 443 only; only the ALB reaches the relays, on 80 only
################################################################################

resource "aws_security_group" "alb" {
  name_prefix = "${var.name}-relay-alb-"
  description = "Liveline relay load balancer: HTTPS from Twilio in, HTTP to the relays out"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb_https_ipv4" {
  security_group_id = aws_security_group.alb.id
  description       = "wss from Twilio, which connects from any public IP on TCP 443 (infra.md 1)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "alb_https_ipv6" {
  count = var.enable_ipv6 ? 1 : 0

  security_group_id = aws_security_group.alb.id
  description       = "wss over IPv6"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv6         = "::/0"
}

resource "aws_vpc_security_group_egress_rule" "alb_to_relay" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Calls and health checks to the relays on port 80"
  ip_protocol                  = "tcp"
  from_port                    = 80
  to_port                      = 80
  referenced_security_group_id = aws_security_group.relay.id
}

resource "aws_security_group" "relay" {
  name_prefix = "${var.name}-relay-"
  description = "Liveline relay instances: port 80 from the load balancer only"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

# The only ingress rule of the relays: no SSH (use Session Manager), nothing from the internet.
resource "aws_vpc_security_group_ingress_rule" "relay_from_alb" {
  #checkov:skip=CKV_AWS_260:False positive: the source is the load balancer's security group (referenced_security_group_id), not 0.0.0.0/0; checkov 3.3.30 only recognises security_groups/source_security_group_id as a source.
  security_group_id            = aws_security_group.relay.id
  description                  = "Calls and health checks from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = 80
  to_port                      = 80
  referenced_security_group_id = aws_security_group.alb.id
}

# Egress: OpenAI Realtime (wss), SSM, S3 and the Amazon Linux package repositories are all HTTPS. DNS
# (VPC resolver), NTP (Amazon Time Sync) and instance metadata are link-local and not filtered by
# security groups.
resource "aws_vpc_security_group_egress_rule" "relay_https" {
  security_group_id = aws_security_group.relay.id
  description       = "HTTPS to OpenAI Realtime, SSM, S3 and the Amazon Linux repositories"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

################################################################################
# TLS: an ACM certificate for the relay's name, validated by DNS in the Route 53 zone
################################################################################

data "aws_route53_zone" "this" {
  zone_id = var.zone_id
}

resource "aws_acm_certificate" "this" {
  domain_name       = var.domain_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true

    precondition {
      condition     = !data.aws_route53_zone.this.private_zone && endswith(".${var.domain_name}", ".${trimsuffix(data.aws_route53_zone.this.name, ".")}")
      error_message = "domain_name must be inside the public hosted zone zone_id (${data.aws_route53_zone.this.name}): the certificate is validated and the alias created there."
    }
  }
}

resource "aws_route53_record" "validation" {
  for_each = {
    for option in aws_acm_certificate.this.domain_validation_options : option.domain_name => option
  }

  zone_id         = var.zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "this" {
  certificate_arn         = aws_acm_certificate.this.arn
  validation_record_fqdns = [for record in aws_route53_record.validation : record.fqdn]
}

################################################################################
# Load balancer: HTTPS:443 only (Twilio streams over wss on 443 only; no :80 listener at all)
################################################################################

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:Access logs would record only each call's upgrade request; the relay logs every call (start, end, close code) and the ALB's CloudWatch metrics cover the rest.
  #checkov:skip=CKV2_AWS_28:WAF inspects HTTP requests; a call is one upgrade from Twilio that the relay authenticates (X-Twilio-Signature and a per-call token) before answering 101.
  name                       = "${var.name}-relay"
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.subnet_ids
  ip_address_type            = var.enable_ipv6 ? "dualstack" : "ipv4"
  idle_timeout               = var.idle_timeout_seconds
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
}

resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer with the ACM certificate; the relay serves plain HTTP on port 80 inside the VPC, reachable only from the load balancer's security group.
  name                 = "${var.name}-relay"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  protocol             = "HTTP"
  port                 = 80
  deregistration_delay = var.deregistration_delay_seconds

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = "/healthz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = aws_acm_certificate_validation.this.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}

################################################################################
# Instances: launch template (cloud-init, IMDSv2) and Auto Scaling group with rolling refresh
################################################################################

data "aws_ec2_instance_type" "this" {
  instance_type = var.instance_type
}

data "aws_ssm_parameter" "al2023" {
  count = var.image_id == null ? 1 : 0

  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${local.architecture}"
}

locals {
  image_id = coalesce(var.image_id, one(data.aws_ssm_parameter.al2023[*].insecure_value))

  # Non-secret settings, written to local.env_file and read by systemd (EnvironmentFile=). A null
  # setting is left out so the relay uses its own default (relay/config.py).
  relay_env = {
    RELAY_BIND                     = "0.0.0.0:80"
    RELAY_PUBLIC_URL               = local.relay_public_url
    RELAY_MAX_CALL_SECONDS         = var.max_call_seconds
    RELAY_GRACEFUL_TIMEOUT_SECONDS = var.graceful_timeout_seconds
    RELAY_MAX_CALLS                = var.settings.max_calls
    RELAY_WORKERS                  = var.settings.workers
    RELAY_LOG_LEVEL                = var.settings.log_level
    OPENAI_REALTIME_MODEL          = var.settings.openai_realtime_model
    OPENAI_VOICE                   = var.settings.openai_voice
    ASSISTANT_INSTRUCTIONS         = var.settings.assistant_instructions
    ASSISTANT_GREETING             = var.settings.assistant_greeting
  }
  # The root module forbids double quotes, backslashes and newlines in the free-text settings, so a
  # double-quoted value is taken literally by systemd. The secrets' versions are in the header: rotating
  # a secret changes the user data, which rolls the fleet so every relay fetches the new value.
  relay_env_file = join("", concat(
    ["# Liveline relay settings (non-secret), written by Terraform. Secrets version: ${var.secrets_version}\n"],
    [for key in sort(keys(local.relay_env)) : "${key}=\"${local.relay_env[key]}\"\n" if local.relay_env[key] != null],
  ))

  unit_vars = {
    service_user      = local.service_user
    install_dir       = local.install_dir
    env_file          = local.env_file
    secrets_file      = local.secrets_file
    fetch_secrets     = local.fetch_secrets
    aws_region        = local.region
    secret_parameters = join(" ", [for key in sort(keys(var.secret_parameters)) : var.secret_parameters[key].name])
    timeout_stop_sec  = var.stop_timeout_seconds
  }

  install_vars = {
    service_name  = local.service_name
    service_user  = local.service_user
    install_dir   = local.install_dir
    aws_region    = local.region
    bundle_bucket = aws_s3_bucket.bundle.id
    bundle_key    = aws_s3_object.bundle.key
    bundle_sha256 = local.bundle_sha256
  }

  cloud_init_vars = {
    unit_path         = local.unit_path
    unit_b64          = base64encode(templatefile("${path.module}/templates/relay.service.tftpl", local.unit_vars))
    env_file          = local.env_file
    env_b64           = base64encode(local.relay_env_file)
    fetch_secrets     = local.fetch_secrets
    fetch_secrets_b64 = filebase64("${path.module}/templates/fetch-secrets.py")
    install_script    = local.install_script
    install_b64       = base64encode(templatefile("${path.module}/templates/install-relay.sh.tftpl", local.install_vars))
  }
}

resource "aws_launch_template" "this" {
  #checkov:skip=CKV_AWS_88:Relays sit in public subnets with public IPs for egress to OpenAI instead of a NAT gateway per AZ; their security group admits only port 80 from the load balancer.
  name_prefix            = "${var.name}-relay-"
  description            = "Liveline relay (bundle ${local.bundle_sha256})"
  image_id               = local.image_id
  instance_type          = var.instance_type
  update_default_version = true
  # No secrets here (checkov CKV_AWS_46): the service fetches them from SSM at start.
  user_data = base64encode(templatefile("${path.module}/templates/cloud-init.yaml.tftpl", local.cloud_init_vars))

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
    tags = {
      Name = "${var.name}-relay"
    }
  }

  tag_specifications {
    resource_type = "volume"
    tags = {
      Name = "${var.name}-relay"
    }
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
  }
}

resource "aws_autoscaling_group" "this" {
  name                      = "${var.name}-relay"
  vpc_zone_identifier       = var.subnet_ids
  min_size                  = var.min_size
  max_size                  = var.max_size
  health_check_type         = "ELB"
  health_check_grace_period = var.instance_warmup_seconds
  default_instance_warmup   = var.instance_warmup_seconds
  target_group_arns         = [aws_lb_target_group.this.arn]
  wait_for_capacity_timeout = "20m"
  enabled_metrics = [
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
  ]

  # latest_version, never "$Latest": a refresh does not start for "$Latest" (provider docs, infra.md 2a).
  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  # Launch before terminate: a new relay is healthy before an old one starts draining.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = 100
      max_healthy_percentage = 200
      instance_warmup        = var.instance_warmup_seconds
      skip_matching          = true
      auto_rollback          = true
    }
  }

  tag {
    key                 = "Name"
    value               = "${var.name}-relay"
    propagate_at_launch = true
  }

  tag {
    key                 = "Component"
    value               = "relay"
    propagate_at_launch = true
  }

  timeouts {
    delete = "90m"
  }
}

# Scale on CPU. ALBRequestCountPerTarget would count handshakes, not concurrent calls (infra.md 2a).
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

################################################################################
# DNS: the relay's name points at the load balancer
################################################################################

resource "aws_route53_record" "ipv4" {
  zone_id = var.zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "ipv6" {
  count = var.enable_ipv6 ? 1 : 0

  zone_id = var.zone_id
  name    = var.domain_name
  type    = "AAAA"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}
