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
# Load balancer: HTTPS:443 only (Twilio streams over wss on 443 only; no :80 listener at all)
#
# The listener forwards only the relay's public paths; /diagnostic/* and /metrics only from
# diagnostic_allowed_cidrs (none by default); anything else gets a 404 from the load balancer itself.
# An allow list rather than a deny rule: a path the rules did not foresee (an encoded slash, a new
# route) is refused, never forwarded.
################################################################################

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_28:A call is one upgrade request from Twilio that the relay authenticates (X-Twilio-Signature and a per-call token) before answering 101, and only three paths are forwarded; README (Edge) shows how to associate a regional WAF web ACL when one is wanted.
  name                       = "${var.name}-relay"
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.subnet_ids
  ip_address_type            = var.enable_ipv6 ? "dualstack" : "ipv4"
  idle_timeout               = var.idle_timeout_seconds
  drop_invalid_header_fields = true
  # Only requests that comply with RFC 7230 reach a relay (request smuggling defence).
  desync_mitigation_mode     = "strictest"
  enable_deletion_protection = var.deletion_protection

  access_logs {
    bucket  = aws_s3_bucket.access_logs.id
    prefix  = "alb"
    enabled = true
  }

  # The load balancer checks that it may write to the bucket when access logs are turned on.
  depends_on = [aws_s3_bucket_policy.access_logs]
}

# name_prefix and create_before_destroy: a change that replaces the target group (port, protocol,
# VPC) creates the new one, moves the listener and the group to it, then deletes the old one. A fixed
# name would collide with itself and fail the apply. (AWS caps the prefix at 6 characters.)
resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer with the ACM certificate; the relay serves plain HTTP on port 80 inside the VPC, reachable only from the load balancer's security group.
  name_prefix          = "relay-"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  protocol             = "HTTP"
  port                 = 80
  deregistration_delay = var.deregistration_delay_seconds

  # "Send it calls?" (main.tf): /healthz answers 503 while the relay is full or draining. Checked every
  # 5 s, two misses stop the routing (about 10 s), two answers restore it. The group does not act on
  # this check (health_check_type EC2): a full relay is left alone, never replaced.
  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = "/healthz"
    matcher             = "200"
    interval            = 5
    timeout             = 3
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = {
    Name = "${var.name}-relay"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = aws_acm_certificate_validation.this.certificate_arn

  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = "text/plain"
      message_body = "Not found: this load balancer serves /twilio/realtime (WebSocket), /healthz and /livez.\n"
      status_code  = "404"
    }
  }
}

# /diagnostic/* and /metrics from the operators' addresses. A rule takes at most five condition values,
# so the addresses come three to a rule (plus the two paths).
resource "aws_lb_listener_rule" "operator" {
  for_each = { for index, chunk in chunklist(var.diagnostic_allowed_cidrs, local.operator_cidr_rule_size) : tostring(index) => chunk }

  listener_arn = aws_lb_listener.https.arn
  priority     = 10 + tonumber(each.key)

  condition {
    path_pattern {
      values = local.operator_paths
    }
  }

  condition {
    source_ip {
      values = each.value
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}

# The same paths from anywhere else: refused by the load balancer, with the way in named.
resource "aws_lb_listener_rule" "operator_refused" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 50

  condition {
    path_pattern {
      values = local.operator_paths
    }
  }

  action {
    type = "fixed-response"

    fixed_response {
      content_type = "text/plain"
      message_body = "Forbidden: /diagnostic/* and /metrics are served only to the addresses in relay_diagnostic_allowed_cidrs (infra/).\n"
      status_code  = "403"
    }
  }
}

resource "aws_lb_listener_rule" "relay" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 100

  condition {
    path_pattern {
      values = local.public_paths
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}

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
