"""How many calls are live, across every gunicorn worker of one relay instance.

``RELAY_MAX_CALLS`` caps the instance, not each worker: gunicorn's workers accept from
one shared socket and the kernel does not spread calls evenly, so per-worker quotas
would refuse calls while other workers sit idle. Instead:

- ``CallTable`` is a small file-backed shared memory table created in gunicorn's master
  (when ``relay.worker`` is imported) and inherited by every forked worker. Each worker
  owns one slot ``(pid, live calls)`` and is the only writer of its count.
- Admission reads the sum of all slots and increments its own under an ``lockf``
  record lock (a POSIX lock is per process, so it excludes sibling workers even
  through inherited descriptors). The critical section is a few microseconds; it runs
  once per call, never per frame.
- A worker that dies without cleaning up (SIGKILL) is found by the master when it
  forks the replacement (``claim_slot`` reclaims slots whose pid is gone), so its calls
  stop counting against the cap.

``LocalCallCounter`` is the same contract for a single process (tests, ``make run``
without gunicorn). ``/healthz`` reports ``total()``.

The same table says whether a ``/diagnostic/openai`` check is running and when the last one
started (``try_begin_diagnostic``): it opens a Realtime session, so the instance runs one at a
time, at a minimum interval, whichever worker is asked. A worker that dies mid-check does not
block the next one (its pid is gone). The times are ``time.monotonic()`` readings, which on
Linux are one clock for every process of the machine.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import tempfile
from typing import Protocol

from relay.config import MAX_WORKERS

_SLOT = struct.Struct("=qq")  # owner pid (0 free, <0 reserved by the master), live calls
_GATE = struct.Struct("=qd")  # pid running a diagnostic (0: none), monotonic time the last one started


class CallCounter(Protocol):
    """Counts live calls against a limit."""

    def try_acquire(self, limit: int) -> bool:
        """Count one more call unless ``limit`` calls are already live."""
        ...

    def release(self) -> None:
        """One call ended."""
        ...

    def total(self) -> int:
        """Live calls now."""
        ...

    def try_begin_diagnostic(self, now: float, interval_s: float) -> float | None:
        """None: start a diagnostic now (then ``end_diagnostic``); else seconds to wait first."""
        ...

    def end_diagnostic(self) -> None:
        """The diagnostic started by ``try_begin_diagnostic`` is over."""
        ...


def _diagnostic_wait(running: bool, last: float | None, now: float, interval_s: float) -> float | None:
    """The gate's rule: one at a time, and ``interval_s`` from one start to the next."""
    if running:
        return interval_s
    if last is not None and now - last < interval_s:
        return interval_s - (now - last)
    return None


class LocalCallCounter:
    """A CallCounter for one process."""

    def __init__(self) -> None:
        self._live = 0
        self._diagnostic_running = False
        self._diagnostic_last: float | None = None

    def try_acquire(self, limit: int) -> bool:
        """Count one more call unless ``limit`` are live."""
        if self._live >= limit:
            return False
        self._live += 1
        return True

    def release(self) -> None:
        """One call ended."""
        self._live -= 1

    def total(self) -> int:
        """Live calls in this process."""
        return self._live

    def try_begin_diagnostic(self, now: float, interval_s: float) -> float | None:
        """None: start a diagnostic now; else seconds to wait first."""
        wait = _diagnostic_wait(self._diagnostic_running, self._diagnostic_last, now, interval_s)
        if wait is None:
            self._diagnostic_running, self._diagnostic_last = True, now
        return wait

    def end_diagnostic(self) -> None:
        """The diagnostic is over."""
        self._diagnostic_running = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CallTable:
    """Shared per-worker call counts; create it before the workers fork."""

    # Twice RELAY_WORKERS's maximum: a replacement worker claims its slot before the slot
    # of the worker it replaces is reclaimed.
    def __init__(self, slots: int = 2 * MAX_WORKERS) -> None:
        self.slots = slots
        size = _SLOT.size * slots + _GATE.size  # the diagnostic gate follows the slots
        self._file = tempfile.TemporaryFile(prefix="liveline-calls-")
        self._file.truncate(size)
        self._map = mmap.mmap(self._file.fileno(), size)

    def close(self) -> None:
        """Release the shared memory (tests; the relay keeps its table for life)."""
        self._map.close()
        self._file.close()

    def _read(self, index: int) -> tuple[int, int]:
        owner, calls = _SLOT.unpack_from(self._map, index * _SLOT.size)
        return owner, calls

    def _write(self, index: int, owner: int, calls: int) -> None:
        _SLOT.pack_into(self._map, index * _SLOT.size, owner, calls)

    def _lock(self) -> None:
        fcntl.lockf(self._file.fileno(), fcntl.LOCK_EX)

    def _unlock(self) -> None:
        fcntl.lockf(self._file.fileno(), fcntl.LOCK_UN)

    def claim_slot(self, reservation: int) -> int:
        """In the master, before fork: reserve a free slot (reclaiming dead workers')."""
        self._lock()
        try:
            for index in range(self.slots):
                owner, _calls = self._read(index)
                if owner == 0 or (owner > 0 and not _alive(owner)):
                    self._write(index, -reservation, 0)
                    return index
        finally:
            self._unlock()
        raise RuntimeError(f"no free call-table slot among {self.slots}")

    def counter(self, index: int) -> SharedCallCounter:
        """In the worker, after fork: take ownership of ``index``."""
        self._write(index, os.getpid(), 0)
        return SharedCallCounter(self, index)

    def free_slot(self, index: int) -> None:
        """A worker leaving cleanly gives its slot back."""
        self._write(index, 0, 0)

    def total(self) -> int:
        """Live calls across all live workers (one pass over the table, in C)."""
        slots = memoryview(self._map)[: _SLOT.size * self.slots]
        try:
            return sum(calls for owner, calls in _SLOT.iter_unpack(slots) if owner != 0)
        finally:
            slots.release()

    def try_begin_diagnostic(self, now: float, interval_s: float) -> float | None:
        """None: this process may start a diagnostic now; else seconds to wait first."""
        self._lock()
        try:
            pid, last = _GATE.unpack_from(self._map, _SLOT.size * self.slots)
            running = pid != 0 and _alive(pid)
            wait = _diagnostic_wait(running, last if last > 0 else None, now, interval_s)
            if wait is None:
                _GATE.pack_into(self._map, _SLOT.size * self.slots, os.getpid(), now)
            return wait
        finally:
            self._unlock()

    def end_diagnostic(self) -> None:
        """The diagnostic this process started is over."""
        self._lock()
        try:
            _pid, last = _GATE.unpack_from(self._map, _SLOT.size * self.slots)
            _GATE.pack_into(self._map, _SLOT.size * self.slots, 0, last)
        finally:
            self._unlock()


class SharedCallCounter:
    """One worker's view of a CallTable: counts its own calls, admits against the sum."""

    def __init__(self, table: CallTable, index: int) -> None:
        self._table = table
        self._index = index
        self._pid = os.getpid()
        self._live = 0

    def try_acquire(self, limit: int) -> bool:
        """Admit one more call unless the instance already has ``limit`` live."""
        table = self._table
        table._lock()
        try:
            if table.total() >= limit:
                return False
            self._live += 1
            table._write(self._index, self._pid, self._live)
            return True
        finally:
            table._unlock()

    def release(self) -> None:
        """One of this worker's calls ended."""
        self._live -= 1
        self._table._write(self._index, self._pid, self._live)

    def total(self) -> int:
        """Live calls across the instance."""
        return self._table.total()

    def try_begin_diagnostic(self, now: float, interval_s: float) -> float | None:
        """None: start a diagnostic now (no other worker runs one); else seconds to wait first."""
        return self._table.try_begin_diagnostic(now, interval_s)

    def end_diagnostic(self) -> None:
        """The diagnostic is over."""
        self._table.end_diagnostic()

    def close(self) -> None:
        """Give the slot back (worker exiting)."""
        self._table.free_slot(self._index)
