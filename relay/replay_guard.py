"""The replay guard: one stream per CallSid, across all of an instance's gunicorn workers.

Twilio opens one bidirectional stream per call and our TwiML never asks for a second, so
a second ``start`` for a CallSid is a replay: of the same token (read from a log or a
proxy), or of a fresh one minted by replaying the call's signed webhook request (Twilio's
request signature has no timestamp). The bridge claims each CallSid once its token has
verified; a CallSid already claimed is refused.

Shared by the instance's workers. gunicorn runs one worker per core, all accepting from
one socket, so a guard per worker would let a replay through whenever it lands on a
worker that has not seen the call. ``ReplayGuard.shared()`` is created in gunicorn's
master (``relay/worker.py``, like the call table in ``relay/capacity.py``): a file-backed
shared memory table that every forked worker maps. A claim runs under an ``lockf``
record lock (per process, so it excludes sibling workers even through the inherited
descriptor); it reads one bucket of 16 entries and writes one, a few microseconds once
per call, never per frame. ``ReplayGuard()`` is the same table in one process's memory
(tests, a relay without gunicorn). Other instances have their own table: the README
("Stream tokens and replays") says what bounds a replay across instances.

Retention: a CallSid is kept at least until ``retention_end()``: past the last moment
any token for it can verify. That is its own token's expiry plus the clock-skew
allowance, and also any token minted later by a replayed webhook request while the call
can still be live: ``RELAY_MAX_CALL_SECONDS`` + the longest token lifetime
(``stream_token.MAX_TTL_S``) + the skew allowance for each clock (see ``retention_end``).
Beyond that, an entry stays until its room is needed, and a CallSid is refused for as
long as it is remembered.

Bounded: ``capacity`` entries of 24 bytes (the CallSid's 16 bytes and the time its
retention ends), 2**18 by default (6 MiB; the file is sparse), hashed with a random key
into buckets of 16. When a bucket is full, a new CallSid takes the entry whose retention
ends first: one already past it if there is one (nothing is lost), otherwise the oldest
claim in the bucket, with a warning (``replay_guard.evicted_early``). Dropping the oldest
rather than refusing the new call is deliberate: only verified tokens are claimed, so
filling a bucket within its retention takes thousands of genuine calls an hour on one
instance (far beyond ``RELAY_MAX_CALLS`` at any real call length); refusing would let
whoever places them turn every later caller away, while dropping the oldest reopens only
that old call's CallSid, whose replay still needs a signed webhook request and a signed
upgrade.

No clock of its own (callers pass ``now``, Unix seconds); no sockets.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import mmap
import secrets
import struct
import tempfile
from typing import IO

from relay.stream_token import CLOCK_SKEW_S, MAX_TTL_S, is_call_sid

log = logging.getLogger(__name__)

_ENTRY = struct.Struct("=16sd")  # the CallSid's 16 bytes, its retention end (0.0: empty)
BUCKET_ENTRIES = 16
DEFAULT_CAPACITY = 1 << 18
# At most one line per interval about entries evicted inside their retention.
_WARN_INTERVAL_S = 60.0


def retention_end(expires: float, now: float, max_call_s: float) -> float:
    """Until when a CallSid claimed at ``now`` with a token expiring at ``expires`` is kept.

    - its own token verifies until ``expires + CLOCK_SKEW_S``;
    - while the call can be live (``max_call_s``), a replayed webhook request can mint
      another token for the CallSid; that one expires at most ``MAX_TTL_S`` after
      minting, by the webhook's clock (up to ``CLOCK_SKEW_S`` ahead of ours), and
      verifies ``CLOCK_SKEW_S`` longer still.
    """
    return max(expires + CLOCK_SKEW_S, now + max_call_s + MAX_TTL_S + 2 * CLOCK_SKEW_S)


def _key(call_sid: str) -> bytes:
    if is_call_sid(call_sid):
        return bytes.fromhex(call_sid[2:])
    # Never reached from the bridge (the token only verifies for a valid CallSid).
    return hashlib.blake2b(call_sid.encode(), digest_size=16).digest()


class ReplayGuard:
    """Remembers claimed CallSids, in one process or (``shared()``) across gunicorn's workers."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, shared: bool = False) -> None:
        if capacity <= 0 or capacity % BUCKET_ENTRIES:
            raise ValueError(f"capacity must be a positive multiple of {BUCKET_ENTRIES}")
        self.capacity = capacity
        self._buckets = capacity // BUCKET_ENTRIES
        self._bucket_bytes = BUCKET_ENTRIES * _ENTRY.size
        # Drawn once, in the master for a shared guard: forked workers inherit it.
        self._hash_key = secrets.token_bytes(16)
        size = capacity * _ENTRY.size
        self._file: IO[bytes] | None = None
        if shared:
            self._file = tempfile.TemporaryFile(prefix="liveline-replay-")
            self._file.truncate(size)
            self._map = mmap.mmap(self._file.fileno(), size)
        else:
            self._map = mmap.mmap(-1, size)
        self._evicted_early = 0
        self._warned_at = -math.inf

    @classmethod
    def shared(cls, capacity: int = DEFAULT_CAPACITY) -> ReplayGuard:
        """A guard for every worker of one instance: create it in gunicorn's master, before fork."""
        return cls(capacity, shared=True)

    def close(self) -> None:
        """Release the memory (tests; the relay keeps its guard for life)."""
        self._map.close()
        if self._file is not None:
            self._file.close()

    def __len__(self) -> int:
        return sum(1 for _key_bytes, until in _ENTRY.iter_unpack(self._map) if until)

    def _bucket_offset(self, key: bytes) -> int:
        digest = hashlib.blake2b(key, digest_size=8, key=self._hash_key).digest()
        return (int.from_bytes(digest, "little") % self._buckets) * self._bucket_bytes

    def claim(self, call_sid: str, keep_until: float, now: float) -> bool:
        """Record ``call_sid`` until at least ``keep_until``; False if it is already remembered."""
        key = _key(call_sid)
        offset = self._bucket_offset(key)
        if self._file is not None:
            fcntl.lockf(self._file.fileno(), fcntl.LOCK_EX)
        try:
            bucket = self._map[offset:offset + self._bucket_bytes]
            victim, victim_until = 0, math.inf
            for index, (entry_key, until) in enumerate(_ENTRY.iter_unpack(bucket)):
                if until and entry_key == key:
                    return False
                if until < victim_until:  # an empty entry (0.0) comes first
                    victim, victim_until = index, until
            _ENTRY.pack_into(self._map, offset + victim * _ENTRY.size, key, max(keep_until, now, 1.0))
        finally:
            if self._file is not None:
                fcntl.lockf(self._file.fileno(), fcntl.LOCK_UN)
        if victim_until >= now:
            self._note_early_eviction(now)
        return True

    def _note_early_eviction(self, now: float) -> None:
        self._evicted_early += 1
        if now - self._warned_at >= _WARN_INTERVAL_S:
            self._warned_at = now
            # A CallSid was dropped inside its retention: the table is too small for this call rate.
            log.warning("replay_guard.evicted_early count=%d capacity=%d", self._evicted_early, self.capacity)
