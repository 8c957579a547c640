"""Key-shaped text out of what peers say, before it reaches a log line or an answer.

OpenAI's refusals quote the key they were given ("Incorrect API key provided:
sk-proj-abc*****wxyz ..."), partly masked, and other errors may echo it too. The relay's
key must never appear in its logs or in ``/diagnostic/openai``, masked or not, so every
upstream error text passes through ``strip_keys`` where it enters the relay
(``UpstreamError`` and the ``error`` event's message).

Key-shaped means OpenAI's prefixes: ``sk-`` (secret and project keys, masked or not) and
``ek_`` (ephemeral client secrets), followed by at least four key characters.

Pure: the standard library only.
"""

from __future__ import annotations

import re

REDACTED = "[key redacted]"
_KEY = re.compile(r"(?<![A-Za-z0-9_])(?:sk-|ek_)[A-Za-z0-9_*\-]{4,}")


def strip_keys(text: str) -> str:
    """``text`` with every key-shaped word replaced by ``[key redacted]``."""
    return _KEY.sub(REDACTED, text)
