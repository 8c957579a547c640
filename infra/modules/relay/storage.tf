################################################################################
# Artifacts: the relay bundle (`make relay-bundle`) and the assistant file (ASSISTANT_CONFIG)
#
# Each lives under one fixed key in a versioned bucket; every upload is a new object version, and
# each launch template version names the exact version id and SHA-256 it installs. So a launch
# template version stays bootable after newer bundles replace the object (README: Roll back), and
# the lifecycle rule below keeps the last releases_kept versions of each key, however old.
################################################################################

locals {
  bundle_sha256   = filesha256(var.bundle_path)
  bundle_manifest = jsondecode(file("${trimsuffix(var.bundle_path, ".zip")}.json"))
  bundle_key      = "relay/bundle.zip"
  # EC2's name for the bundle's CPU architecture (x86_64 or arm64).
  architecture = local.bundle_manifest.ec2_architecture

  assistant_key    = var.assistant_config_path == null ? "" : "relay/assistant.toml"
  assistant_sha256 = var.assistant_config_path == null ? "" : filesha256(var.assistant_config_path)
}

moved {
  from = aws_s3_bucket.bundle
  to   = aws_s3_bucket.artifacts
}

moved {
  from = aws_s3_bucket_public_access_block.bundle
  to   = aws_s3_bucket_public_access_block.artifacts
}

moved {
  from = aws_s3_bucket_ownership_controls.bundle
  to   = aws_s3_bucket_ownership_controls.artifacts
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.bundle
  to   = aws_s3_bucket_server_side_encryption_configuration.artifacts
}

moved {
  from = aws_s3_bucket_versioning.bundle
  to   = aws_s3_bucket_versioning.artifacts
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.bundle
  to   = aws_s3_bucket_lifecycle_configuration.artifacts
}

moved {
  from = aws_s3_bucket_policy.bundle
  to   = aws_s3_bucket_policy.artifacts
}

resource "aws_s3_bucket" "artifacts" {
  #checkov:skip=CKV_AWS_18:Holds only build artifacts and the assistant file, both reproducible from git; CloudTrail covers access.
  #checkov:skip=CKV_AWS_144:Artifacts are rebuilt from git with make relay-bundle; cross-region replication adds nothing.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events from the artifact bucket; instances fetch their objects at boot.
  bucket_prefix = "${var.name}-relay-artifacts-"
  # Artifacts only: terraform destroy may empty the bucket.
  force_destroy = true
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  # Current versions are never expired: a later launch (scale-out, replacement) needs them. Replaced
  # versions go after 30 days, except the newest releases_kept of each key, which stay as long as they
  # are among the newest: the launch template versions a rollback can return to.
  rule {
    id     = "keep-recent-releases"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days           = 30
      newer_noncurrent_versions = var.releases_kept
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}

data "aws_iam_policy_document" "artifacts_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]

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

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  policy = data.aws_iam_policy_document.artifacts_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}

# A new bundle is a new version of this object (an in-place update), never a new key: the versions
# the older launch template versions name stay retrievable.
resource "aws_s3_object" "bundle" {
  bucket      = aws_s3_bucket.artifacts.id
  key         = local.bundle_key
  source      = var.bundle_path
  source_hash = local.bundle_sha256

  # version_id exists only once the bucket is versioned and encrypted as above.
  depends_on = [aws_s3_bucket_server_side_encryption_configuration.artifacts, aws_s3_bucket_versioning.artifacts]
}

resource "aws_s3_object" "assistant" {
  count = var.assistant_config_path == null ? 0 : 1

  bucket      = aws_s3_bucket.artifacts.id
  key         = local.assistant_key
  source      = var.assistant_config_path
  source_hash = local.assistant_sha256

  depends_on = [aws_s3_bucket_server_side_encryption_configuration.artifacts, aws_s3_bucket_versioning.artifacts]
}

################################################################################
# Load balancer access logs: their own bucket, kept access_log_retention_days
#
# The load balancer writes them with SSE-S3 only (AWS does not support a KMS key for ALB access
# logs). Each line holds a request's time, client address and path (a call's upgrade), no audio.
################################################################################

data "aws_elb_service_account" "this" {}

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_18:This bucket is itself the load balancer's access log; logging it again would log the log writes.
  #checkov:skip=CKV_AWS_144:Access logs are kept access_log_retention_days in the stack's region; a replica doubles the data to delete.
  #checkov:skip=CKV_AWS_145:Application Load Balancer access logs support SSE-S3 only; a KMS default key makes the load balancer's writes fail.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events from the access log bucket; operators query it when investigating.
  bucket_prefix = "${var.name}-relay-access-logs-"
  # The stack's own logs: terraform destroy deletes them with the load balancer.
  force_destroy = true
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "retention"
    status = "Enabled"

    filter {}

    expiration {
      days = var.access_log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.access_logs]
}

data "aws_iam_policy_document" "access_logs_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]

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

  # Regions that existed before August 2022 deliver as the region's Elastic Load Balancing account;
  # newer regions as the log delivery service. Both may write only under this account's prefix.
  statement {
    sid       = "LoadBalancerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/alb/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.this.arn]
    }
  }

  statement {
    sid       = "LoadBalancerLogDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/alb/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  policy = data.aws_iam_policy_document.access_logs_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}
