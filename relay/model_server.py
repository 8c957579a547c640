"""Who the relay's Realtime URL reaches: OpenAI, a model server on this machine, or another host.

``make run`` without OPENAI_API_KEY points the relay at the local stand-in model, which
answers exactly as OpenAI would ("session accepted by gpt-realtime"): someone who thinks
they exported a key could believe they are talking to the real model. So the relay says
which it is, at start-up (``relay.openai_upstream``), and in ``/diagnostic/openai``
(``upstream`` and ``upstream_note``), which ``scripts/verify_relay.py`` reads.

It knows by the URL alone, ``OPENAI_REALTIME_URL``:

- it is known at start-up, before any socket is opened, so the first line can say it;
- a loopback host is never OpenAI, whatever answers there, and ``api.openai.com`` is the only
  host that is (anything else is named as it is);
- the stand-in stays a faithful imitation of OpenAI: it sends nothing OpenAI does not, and the
  relay has no code path keyed on something only a test double sends.

Pure: the standard library only.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

OPENAI_HOST = "api.openai.com"
OPENAI = "openai"  # OpenAI's Realtime API
LOCAL = "local"  # a server on the relay's own machine: make run's stand-in model, typically
OTHER = "other"  # any other host (a proxy, another provider, a stand-in elsewhere)


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def kind(url: str) -> str:
    """``OPENAI``, ``LOCAL`` or ``OTHER`` for a Realtime URL."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host == OPENAI_HOST:
        return OPENAI
    return LOCAL if _loopback(host) else OTHER


def describe(url: str, model: str) -> str:
    """One plain sentence: who the relay's calls talk to."""
    parts = urlsplit(url)
    where = parts.netloc or url
    found = kind(url)
    if found == OPENAI:
        return f"OpenAI's Realtime API ({where}), model {model}"
    if found == LOCAL:
        return (f"NOT OpenAI: a model server on this machine ({where}), such as make run's stand-in model "
                f"(used when OPENAI_API_KEY is unset); calls hear it, not {model}")
    return f"not OpenAI's API: {where} (OPENAI_REALTIME_URL); calls hear whatever model it serves"
