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
  description       = "wss from Twilio, which connects from any public IP on TCP 443 (Twilio Media Streams firewall guide)"
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
# Egress, all HTTPS: OpenAI Realtime (wss), the Twilio REST API (api.twilio.com: hang-up and transfer),
# the assistant's tool URLs and CALL_REPORT_URL, SSM, S3, CloudWatch Logs and the Amazon Linux package
# repositories. DNS (VPC resolver), NTP (Amazon Time Sync) and instance metadata are link-local and not
# filtered by security groups.
resource "aws_vpc_security_group_egress_rule" "relay_https" {
  security_group_id = aws_security_group.relay.id
  description       = "HTTPS: OpenAI, Twilio REST API, tool and report URLs, AWS APIs, Amazon Linux repositories"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# Tool or report URLs served on a port other than 443 (https://tools.example.com:8443/...).
resource "aws_vpc_security_group_egress_rule" "relay_extra" {
  for_each = toset([for port in var.egress_extra_ports : tostring(port)])

  security_group_id = aws_security_group.relay.id
  description       = "HTTPS to tool or report URLs on port ${each.value}"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.value)
  to_port           = tonumber(each.value)
  cidr_ipv4         = "0.0.0.0/0"
}
