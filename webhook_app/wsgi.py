"""Entry point for gunicorn: ``gunicorn webhook_app.wsgi:app`` (``make run`` starts it on :5050).

Importing this module validates the environment, so a bad value stops gunicorn at boot
with a ConfigError that lists every fix.
"""

from __future__ import annotations

from webhook_app import create_app, log

log.configure()
app = create_app()
