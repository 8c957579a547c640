"""Structured logging: one ``event key=value ...`` line per lifecycle event.

``configure()`` is called once, by ``relay/wsgi.py``; library modules only ever call
``logging.getLogger(__name__)``. Per-call lines go through a CallLog adapter that
prefixes ``call_sid=... stream_sid=...`` once the stream's ``start`` has named them
(contextvars do not follow gevent's spawned greenlets, so the adapter is passed along).

Never log audio payloads or secrets: log counts, sizes and ids.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s"


def configure(level: str = "INFO") -> None:
    """Send relay logs to stderr (gunicorn/systemd/journald collect it) at ``level``."""
    root = logging.getLogger("relay")
    root.setLevel(level)
    if not any(getattr(h, "_relay_handler", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        formatter = logging.Formatter(_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        handler._relay_handler = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False


class CallLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with the call's ids; ``bind`` adds them once known."""

    def __init__(self, logger: logging.Logger, conn_id: str) -> None:
        super().__init__(logger, {})
        self._prefix = f"conn={conn_id}"

    def bind(self, call_sid: str, stream_sid: str) -> None:
        """Name the call: every later line carries these ids."""
        self._prefix = f"{self._prefix} call_sid={call_sid} stream_sid={stream_sid}"

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        """Put the call's ids after the event name."""
        text = str(msg)
        event, _, rest = text.partition(" ")
        return (f"{event} {self._prefix} {rest}" if rest else f"{event} {self._prefix}"), kwargs
