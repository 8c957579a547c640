################################################################################
# The webhook: webhook_app (Flask via apig-wsgi) on Lambda behind a Function URL.
# Twilio POSTs "A call comes in" to <Function URL>/twilio/voice; the answer is TwiML that connects the
# call to the relay's wss:// stream.
#
# WEBHOOK_PUBLIC_URL and the dependency cycle. The app must check X-Twilio-Signature against the URL
# Twilio signed, i.e. the Function URL, never the request's own URL. But the Function URL exists only
# once the function does, and the function's environment cannot name its own URL
# (function -> url -> function is a cycle; the URL id is random, so it cannot be predicted either).
# So Terraform writes the URL, once it exists, to the SSM parameter <prefix>/WEBHOOK_PUBLIC_URL, and the
# handler reads it at cold start together with the secrets under the same SSM_PARAMETER_PREFIX. No
# second apply, no custom domain, no CloudFront in front of the function.
################################################################################

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  function_name = "${var.name}-webhook"
  public_url    = trimsuffix(aws_lambda_function_url.this.function_url, "/")
  region        = data.aws_region.current.region
  log_group_arn = "arn:${data.aws_partition.current.partition}:logs:${local.region}:${data.aws_caller_identity.current.account_id}:log-group:/aws/lambda/${local.function_name}"
  # The handler fetches <SSM_PARAMETER_PREFIX>/<NAME> for these, by exact name. The URL parameter's ARN
  # is spelled out rather than taken from the resource: the role must exist before the function, the
  # parameter only after its URL.
  public_url_parameter     = "${var.ssm_parameter_prefix}/WEBHOOK_PUBLIC_URL"
  public_url_parameter_arn = "arn:${data.aws_partition.current.partition}:ssm:${local.region}:${data.aws_caller_identity.current.account_id}:parameter${local.public_url_parameter}"
  read_parameter_arns = sort(concat(
    [for p in values(var.secret_parameters) : p.arn],
    [local.public_url_parameter_arn],
  ))
}

################################################################################
# Role: write its own logs, read its two secrets and its public URL from SSM, nothing else
################################################################################

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name_prefix        = "${var.name}-webhook-"
  description        = "Liveline webhook Lambda: its logs, its two SSM secrets and WEBHOOK_PUBLIC_URL."
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn}:*"]
  }

  # By exact name: the relay's OPENAI_API_KEY and DIAGNOSTIC_TOKEN live under the same prefix and are
  # out of the webhook's reach.
  statement {
    sid       = "ReadWebhookParameters"
    actions   = ["ssm:GetParameter", "ssm:GetParameters"]
    resources = local.read_parameter_arns
  }

  statement {
    sid       = "DecryptViaSsm"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ssm.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "webhook"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}

################################################################################
# Function and its log group
################################################################################

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_338:Webhook logs name callers' phone numbers; they are kept only var.log_retention_days (30 by default), not a year.
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_50:X-Ray adds nothing to a single synchronous function that makes no network calls while answering.
  #checkov:skip=CKV_AWS_116:Only invoked synchronously through its Function URL (Twilio retries); a dead-letter queue applies to asynchronous invocations only.
  #checkov:skip=CKV_AWS_117:Needs no VPC resources; inside a VPC it would need a NAT gateway or endpoints just to reach SSM.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (a wss:// URL and an SSM path); secrets come from SSM SecureString at cold start.
  #checkov:skip=CKV_AWS_272:Code signing would need an AWS Signer profile in the build; the zip is built from the pinned repository by make webhook-zip.
  function_name    = local.function_name
  description      = "Liveline webhook: answers Twilio's voice webhook with TwiML that streams the call to the relay."
  role             = aws_iam_role.this.arn
  runtime          = "python3.12"
  handler          = "webhook_app.lambda_handler.handler"
  architectures    = [var.architecture]
  filename         = var.zip_path
  source_code_hash = filebase64sha256(var.zip_path)
  memory_size      = var.memory_mb
  timeout          = var.timeout_seconds
  # A flood of requests (Twilio's or anyone's: the URL is public) can use this many concurrent
  # executions and no more, so it cannot take the account's Lambda concurrency from other functions;
  # the same number stays reserved for Twilio's calls. null: no reservation (README: Edge).
  reserved_concurrent_executions = var.reserved_concurrency

  environment {
    variables = {
      for key, value in {
        RELAY_PUBLIC_URL     = var.relay_public_url
        SSM_PARAMETER_PREFIX = var.ssm_parameter_prefix
        FALLBACK_MESSAGE     = var.fallback_message
        # Not read by the app: a change (secret rotation) makes Lambda start fresh environments, which
        # read the new values at cold start.
        LIVELINE_SECRETS_VERSION = var.secrets_version
      } : key => value if value != null
    }
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.this.name
  }

  depends_on = [aws_iam_role_policy.this]
}

################################################################################
# Function URL: public, because Twilio cannot sign requests with AWS IAM
################################################################################

resource "aws_lambda_function_url" "this" {
  #checkov:skip=CKV_AWS_258:Twilio cannot sign with IAM; the app validates X-Twilio-Signature on every request against WEBHOOK_PUBLIC_URL and answers 403 otherwise.
  function_name      = aws_lambda_function.this.function_name
  authorization_type = "NONE"
  invoke_mode        = "BUFFERED"
}

# A public Function URL needs both statements since October 2025: lambda:InvokeFunctionUrl for auth type
# NONE, and lambda:InvokeFunction restricted to invocations through the Function URL.
resource "aws_lambda_permission" "url" {
  #checkov:skip=CKV_AWS_301:Public on purpose: Twilio calls from the internet without AWS credentials; the app rejects any request without a valid X-Twilio-Signature.
  statement_id           = "TwilioInvokeFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.this.function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_permission" "invoke_via_url" {
  #checkov:skip=CKV_AWS_301:Public only through the Function URL (invoked_via_function_url); the app rejects any request without a valid X-Twilio-Signature.
  statement_id             = "TwilioInvokeViaFunctionUrl"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.this.function_name
  principal                = "*"
  invoked_via_function_url = true
}

# WEBHOOK_PUBLIC_URL for the handler (see the cycle note at the top). Not a secret: Twilio's console shows
# it and anyone may call it.
resource "aws_ssm_parameter" "public_url" {
  #checkov:skip=CKV2_AWS_34:A public URL, not a secret; a plain String parameter.
  name        = local.public_url_parameter
  description = "WEBHOOK_PUBLIC_URL of the Liveline webhook: the Function URL origin that Twilio signs."
  type        = "String"
  value       = local.public_url
}
