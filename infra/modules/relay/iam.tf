################################################################################
# Instance role: read the relay's artifacts and secrets, ship its logs, report its own health
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
  description        = "Liveline relay instances: read the relay's artifacts and SSM secrets, ship logs, report their health."
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

  # By version: each launch template version names the object versions it installs.
  statement {
    sid       = "ReadRelayArtifacts"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.artifacts.arn}/relay/*"]
  }

  # The two custom health signals (templates/relay-health.py), on this group only.
  statement {
    sid       = "ReportOwnHealth"
    actions   = ["autoscaling:CompleteLifecycleAction", "autoscaling:SetInstanceHealth"]
    resources = [local.autoscaling_group_arn]
  }

  # The CloudWatch agent: the relay's output and its scraped metrics, into the two log groups only
  # (they exist: Terraform creates them, so the agent needs no logs:CreateLogGroup).
  statement {
    sid     = "ShipRelayLogsAndMetrics"
    actions = ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    resources = [
      aws_cloudwatch_log_group.relay.arn,
      "${aws_cloudwatch_log_group.relay.arn}:*",
      aws_cloudwatch_log_group.metrics.arn,
      "${aws_cloudwatch_log_group.metrics.arn}:*",
    ]
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
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/*"]
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
