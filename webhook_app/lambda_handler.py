"""Entry point for AWS Lambda behind a Function URL: ``webhook_app.lambda_handler.handler``.

apig-wsgi turns each Function URL event (payload format 2.0; base64 bodies included) into a
WSGI request for the Flask app, and the app's response back into the Lambda result.

Secrets from SSM: infra/ keeps TWILIO_AUTH_TOKEN and STREAM_TOKEN_SECRET in SSM
SecureString parameters, never in Lambda environment variables. When
``SSM_PARAMETER_PREFIX`` is set (like ``/liveline/prod``), the cold start reads
``<prefix>/TWILIO_AUTH_TOKEN`` and ``<prefix>/STREAM_TOKEN_SECRET`` with one
``ssm:GetParameters`` call (WithDecryption) and lays them over the environment before
``WebhookConfig.from_env`` validates it. The same call also reads
``<prefix>/WEBHOOK_PUBLIC_URL`` when the environment does not set it: the function cannot
carry its own Function URL in its environment (function -> URL -> function is a cycle),
so infra/ writes the URL to SSM once it exists. Values are read once per execution
environment: after a rotation, publish a new version (or wait for environments to recycle).
boto3 is provided by the Lambda runtime and imported only when the prefix is set, so the
zip does not carry it and gunicorn never needs it.

Everything happens at import (the cold start): a bad configuration fails the init, the
message listing every fix, before any caller is answered.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from apig_wsgi import make_lambda_handler

from webhook_app import create_app, log
from webhook_app.config import ConfigError, WebhookConfig

__all__ = [
    "SSM_PREFIX_VARIABLE",
    "SSM_SECRET_NAMES",
    "SSM_URL_NAME",
    "build_handler",
    "ssm_names",
    "environ_with_ssm_parameters",
    "handler",
]

logger = logging.getLogger(__name__)

SSM_PREFIX_VARIABLE = "SSM_PARAMETER_PREFIX"
SSM_SECRET_NAMES = ("TWILIO_AUTH_TOKEN", "STREAM_TOKEN_SECRET")
# Read from SSM only when the environment lacks it (infra/ writes the Function URL there).
SSM_URL_NAME = "WEBHOOK_PUBLIC_URL"
# The init phase is short and Twilio waits 15 s for the first answer: fail fast, retry once.
_SSM_CONNECT_TIMEOUT_S = 2.0
_SSM_READ_TIMEOUT_S = 3.0
_SSM_MAX_ATTEMPTS = 2

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


class SSMClient(Protocol):
    """The one boto3 SSM client method used here (a test passes a small fake)."""

    def get_parameters(self, *, Names: list[str], WithDecryption: bool) -> Mapping[str, Any]:
        """boto3 ``SSM.Client.get_parameters``."""
        ...


def _ssm_prefix(value: str) -> str:
    prefix = value.rstrip("/")
    if not prefix.startswith("/") or prefix != prefix.strip() or not prefix.strip("/"):
        raise ConfigError([
            f"{SSM_PREFIX_VARIABLE} must be an SSM path like /liveline/prod (got {value!r}): "
            f"the webhook reads <prefix>/{SSM_SECRET_NAMES[0]} and <prefix>/{SSM_SECRET_NAMES[1]}"
        ])
    return prefix


def ssm_names(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Return the names read from SSM: the two secrets, and WEBHOOK_PUBLIC_URL unless ``environ`` sets it."""
    return SSM_SECRET_NAMES if environ.get(SSM_URL_NAME) else (*SSM_SECRET_NAMES, SSM_URL_NAME)


def environ_with_ssm_parameters(environ: Mapping[str, str], client: SSMClient, prefix: str) -> dict[str, str]:
    """Return ``environ`` with the parameters under ``prefix`` laid over it, in one GetParameters call.

    The two secrets always come from SSM (SSM wins over the environment);
    WEBHOOK_PUBLIC_URL only when the environment does not set it. Raises ConfigError
    naming every parameter that does not exist.
    """
    prefix = _ssm_prefix(prefix)
    wanted = {f"{prefix}/{name}": name for name in ssm_names(environ)}
    answer = client.get_parameters(Names=list(wanted), WithDecryption=True)
    found = {p["Name"]: p["Value"] for p in answer.get("Parameters", []) if p.get("Name") in wanted}
    problems = []
    for path, name in wanted.items():
        if path in found:
            continue
        if name == SSM_URL_NAME:
            problems.append(
                f"SSM parameter {path} not found and {SSM_URL_NAME} is not set: infra/ writes the "
                f"Function URL there (terraform apply), or set {SSM_URL_NAME} in the environment"
            )
        else:
            problems.append(
                f"SSM parameter {path} not found: create it as a SecureString "
                f"(aws ssm put-parameter --type SecureString --name {path} --value ...) "
                f"or fix {SSM_PREFIX_VARIABLE}"
            )
    if problems:
        raise ConfigError(problems)
    merged = dict(environ)
    for path, name in wanted.items():
        merged[name] = found[path]
    return merged


def _boto3_ssm_client() -> SSMClient:
    # Lazy, and through importlib: boto3 is the Lambda runtime's, not a dependency of ours.
    boto3 = importlib.import_module("boto3")
    botocore_config = importlib.import_module("botocore.config")
    client: SSMClient = boto3.client("ssm", config=botocore_config.Config(
        connect_timeout=_SSM_CONNECT_TIMEOUT_S,
        read_timeout=_SSM_READ_TIMEOUT_S,
        retries={"max_attempts": _SSM_MAX_ATTEMPTS, "mode": "standard"},
    ))
    return client


def build_handler(
    environ: Mapping[str, str],
    ssm_client: Callable[[], SSMClient] = _boto3_ssm_client,
) -> LambdaHandler:
    """Validate ``environ`` (+ SSM secrets if SSM_PARAMETER_PREFIX is set) and wrap the app for Lambda."""
    prefix = environ.get(SSM_PREFIX_VARIABLE, "")
    if prefix:
        logger.info("webhook.ssm prefix=%s names=%s", prefix, ",".join(ssm_names(environ)))
        environ = environ_with_ssm_parameters(environ, ssm_client(), prefix)
    app = create_app(WebhookConfig.from_env(environ))
    # Function URL events are payload 2.0, where apig-wsgi always supports base64 bodies;
    # binary_support=True makes 1.0 (API Gateway REST) events decode them too.
    return make_lambda_handler(app, binary_support=True)


log.configure()
handler = build_handler(os.environ)
