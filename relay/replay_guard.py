"""Refuses a second stream for a CallSid whose token is still valid (replay protection).

Twilio opens exactly one bidirectional stream per call, so a second ``start`` carrying a
token for the same CallSid is a replay. Entries are kept until the token expires; the
guard is per worker process (a replay that lands on another worker or VM within the
token's few minutes is still stopped by the upgrade signature check in most cases, and
is documented as the limit of this guard).

Pure: no clock of its own, no I/O.
"""

from __future__ import annotations


class ReplayGuard:
    """Remembers claimed CallSids until their token expiry."""

    __slots__ = ("_expiry_by_sid", "_max_entries")

    def __init__(self, max_entries: int = 100_000) -> None:
        # Insertion-ordered: tokens are minted with one TTL, so the oldest entry is
        # (nearly always) the first to expire and pruning pops from the front.
        self._expiry_by_sid: dict[str, float] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._expiry_by_sid)

    def claim(self, call_sid: str, expires: float, now: float) -> bool:
        """Record ``call_sid``; False if it was already claimed and has not expired."""
        entries = self._expiry_by_sid
        while entries:
            oldest = next(iter(entries))
            if entries[oldest] >= now and len(entries) < self._max_entries:
                break
            del entries[oldest]
        previous = entries.get(call_sid)
        if previous is not None and previous >= now:
            return False
        entries[call_sid] = expires
        return True
