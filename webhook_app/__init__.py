"""Liveline webhook: answers Twilio's incoming-call webhook with TwiML that streams the call to the relay.

A minimal, stateless Flask app; it makes no network calls while answering. Entry points:
``gunicorn webhook_app.wsgi:app`` and, on AWS Lambda behind a Function URL,
``webhook_app.lambda_handler.handler``. Module map (each docstring says what it owns):

- ``config``        WebhookConfig, ConfigError; the only reader of the environment (pure)
- ``stream_token``  per-call token format; a byte-for-byte copy of ``relay/stream_token.py`` (pure)
- ``twiml``         the ``<Connect><Stream>`` TwiML, built with twilio's VoiceResponse (pure)
- ``routes``        ``/twilio/voice``, ``/twilio/status``, ``/healthz``; signature checks
- ``log``           handler set-up for the entry points
- ``wsgi``, ``lambda_handler``  entry points (``lambda_handler`` also reads secrets from SSM)

It never imports ``relay`` (a separate deployable): shared facts are duplicated on purpose.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from flask import Flask

from webhook_app.config import WebhookConfig
from webhook_app.routes import Webhook

__all__ = ["__version__", "create_app"]

__version__ = "0.1.0"

# Twilio's incoming-call form is 1-2 KB; anything near this is not Twilio (answered 413).
MAX_CONTENT_LENGTH = 64 * 1024

_log = logging.getLogger(__name__)


def create_app(config: WebhookConfig | None = None, *, clock: Callable[[], float] = time.time) -> Flask:
    """Build the webhook app for ``config`` (None: read and validate the environment).

    ``clock`` (Unix time) stamps stream-token expiry; tests inject their own.
    """
    if config is None:
        config = WebhookConfig.from_env(os.environ)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    Webhook(config, clock, __version__).register(app)
    _log.info("webhook.configured version=%s %s", __version__,
             " ".join(f"{k}={v!r}" for k, v in config.redacted().items() if k != "fallback_message"))
    return app
