"""Rate limits for log lines a stranger can cause: a flood of requests cannot fill a disk.

Every request the relay answers without starting a call leaves one line (``relay.server``),
and so does every refused ``/diagnostic/openai``. Anyone who can reach the port can cause
those, so they pass through a LogLimiter: one token bucket per kind of line (the event and
its status, a small fixed set), ``burst`` lines at once, then ``per_s`` a second. One kind
flooding never hides another: a scanner's 404s do not silence the 403s that say Twilio's
signature stopped matching. When a kind's bucket lets a line through again, that line says
how many were dropped before it (``suppressed=N``), so the log still shows the flood's size.

Why 20 lines, then one every 5 seconds (per kind, per worker): 20 is more than an operator
reads of one kind in one go, and enough for a real burst (a retrying client, a verify run);
a sustained flood of one kind then writes about 17,000 lines (3.5 MB) a day instead of
86 GB at 5,000 requests a second, and all twenty-odd kinds at once about 70 MB a day.
It also keeps the relay below journald's own rate limit (10,000 lines per 30 s per service
by default), which would drop lines blindly, calls' lines included.

Pure: the standard library only; the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_BURST = 20
DEFAULT_PER_S = 0.2
# Keys come from a fixed set (event and status); past this many, new ones share one bucket,
# so even a mistake that made keys from peer input could not grow memory without bound.
MAX_KEYS = 64
OTHER = "other"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    suppressed: int = 0


class LogLimiter:
    """Token buckets by key; ``admit(key)`` says whether a line may be written now."""

    def __init__(self, burst: int = DEFAULT_BURST, per_s: float = DEFAULT_PER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or per_s <= 0:
            raise ValueError("a log limit needs burst >= 1 and per_s > 0")
        self.burst = burst
        self.per_s = per_s
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, key: str) -> int | None:
        """None: drop this line. Otherwise write it; the int is how many were dropped before it."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_KEYS and key != OTHER:
                return self.admit(OTHER)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.per_s)
        bucket.updated = now
        if bucket.tokens < 1.0:
            bucket.suppressed += 1
            return None
        bucket.tokens -= 1.0
        dropped, bucket.suppressed = bucket.suppressed, 0
        return dropped

    def suppressed(self) -> dict[str, int]:
        """Lines dropped since each key's last written line (those not yet reported)."""
        return {key: bucket.suppressed for key, bucket in self._buckets.items() if bucket.suppressed}
