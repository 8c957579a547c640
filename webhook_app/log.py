"""Logging set-up for the webhook's entry points: one ``event key=value`` line per event.

``configure()`` is called once, by ``wsgi.py`` or ``lambda_handler.py``; library modules
only call ``logging.getLogger(__name__)`` and never add handlers.

- On Lambda the runtime has already put a handler on the root logger (it adds the
  request id and ships to CloudWatch): records just propagate to it.
- Under gunicorn nobody has: a stderr handler with a UTC timestamp is added.

Never log secrets, the stream token, or callers' numbers.
"""

from __future__ import annotations

import logging
import sys
import time

_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s"
_LOGGER = "webhook_app"


def configure(level: str = "INFO") -> None:
    """Send ``webhook_app`` logs at ``level`` to the host's root handler, or to stderr if it has none."""
    logger = logging.getLogger(_LOGGER)
    logger.setLevel(level)
    if logging.getLogger().handlers:
        return
    if any(getattr(h, "_webhook_handler", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler._webhook_handler = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
