"""Call counting: a single process, and gunicorn workers sharing one table across fork()."""

from __future__ import annotations

import os
import signal

from relay.capacity import CallTable, LocalCallCounter


def test_local_counter_respects_the_limit() -> None:
    counter = LocalCallCounter()
    assert counter.try_acquire(2) and counter.try_acquire(2)
    assert not counter.try_acquire(2)
    counter.release()
    assert counter.total() == 1 and counter.try_acquire(2)


def _in_child(table: CallTable, slot: int, acquire: int, limit: int, read_fd: int, write_fd: int) -> None:
    counter = table.counter(slot)
    admitted = sum(counter.try_acquire(limit) for _ in range(acquire))
    os.write(write_fd, bytes([admitted]))
    os.read(read_fd, 1)  # hold the calls until the parent has looked
    os._exit(0)


def test_workers_share_one_limit_across_fork() -> None:
    table = CallTable(slots=8)
    children = []
    results = []
    for age in (1, 2):
        slot = table.claim_slot(age)  # the master, before fork
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            _in_child(table, slot, acquire=5, limit=7, read_fd=down_r, write_fd=up_w)
        results.append(os.read(up_r, 1)[0])
        children.append((pid, down_w))
    assert results == [5, 2]  # the second worker is capped by the first one's calls
    assert table.total() == 7
    for pid, down_w in children:
        os.write(down_w, b"x")
        os.waitpid(pid, 0)
    table.close()


def test_a_killed_workers_slot_is_reclaimed() -> None:
    table = CallTable(slots=2)
    slot = table.claim_slot(1)
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _in_child(table, slot, acquire=3, limit=10, read_fd=down_r, write_fd=up_w)
    assert os.read(up_r, 1)[0] == 3
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert table.total() == 3  # until the master notices
    # The master claims a slot for the replacement worker: the dead one's is reused and
    # its calls stop counting against the limit.
    assert table.claim_slot(2) == slot
    assert table.total() == 0
    table.close()


def test_one_diagnostic_at_a_time_and_an_interval_between_two() -> None:
    counter = LocalCallCounter()
    assert counter.try_begin_diagnostic(now=100.0, interval_s=10.0) is None
    assert counter.try_begin_diagnostic(now=101.0, interval_s=10.0) == 10.0  # one is running
    counter.end_diagnostic()
    assert counter.try_begin_diagnostic(now=104.0, interval_s=10.0) == 6.0
    assert counter.try_begin_diagnostic(now=110.0, interval_s=10.0) is None
    assert counter.total() == 0  # the gate is not a call; the caller takes a call slot itself


def _hold_diagnostic(table: CallTable, slot: int, read_fd: int, write_fd: int) -> None:
    counter = table.counter(slot)
    began = counter.try_begin_diagnostic(now=1000.0, interval_s=0.0) is None
    os.write(write_fd, bytes([began]))
    os.read(read_fd, 1)  # hold it until the parent has looked (or kills us)
    os._exit(0)


def test_the_diagnostic_gate_spans_workers_and_a_dead_holder_frees_it() -> None:
    table = CallTable(slots=4)
    mine = table.counter(table.claim_slot(1))
    child_slot = table.claim_slot(2)
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _hold_diagnostic(table, child_slot, down_r, up_w)
    assert os.read(up_r, 1)[0] == 1
    assert table.total() == 0  # the gate's record is not read as calls
    assert mine.try_begin_diagnostic(now=1001.0, interval_s=0.0) is not None  # another worker runs one
    assert mine.try_begin_diagnostic(now=1001.0, interval_s=30.0) == 30.0
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert mine.try_begin_diagnostic(now=1001.0, interval_s=30.0) == 29.0  # free, but the interval holds
    assert mine.try_begin_diagnostic(now=1031.0, interval_s=30.0) is None
    mine.end_diagnostic()
    assert mine.try_begin_diagnostic(now=1032.0, interval_s=0.0) is None
    mine.end_diagnostic()
    table.close()
