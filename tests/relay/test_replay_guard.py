"""The replay guard: one stream per CallSid, shared by gunicorn's workers, bounded.

Driven with explicit times (no clock of its own) and across a real fork(), as gunicorn's
master and workers use it.
"""

from __future__ import annotations

import logging
import os

import pytest

from relay.replay_guard import BUCKET_ENTRIES, ReplayGuard, retention_end
from relay.stream_token import CLOCK_SKEW_S, MAX_TTL_S

NOW = 1_800_000_000.0


def sid(n: int) -> str:
    return f"CA{n:032x}"


def test_a_claimed_call_sid_is_refused_whatever_the_case_of_its_hex_digits() -> None:
    guard = ReplayGuard()
    assert guard.claim(sid(0xABC), NOW + 100, NOW)
    assert not guard.claim(sid(0xABC), NOW + 100, NOW + 1)
    assert not guard.claim("CA" + sid(0xABC)[2:].upper(), NOW + 100, NOW + 1)
    assert guard.claim(sid(0xABD), NOW + 100, NOW + 1)
    assert len(guard) == 2


def test_retention_outlasts_every_token_for_the_call_sid() -> None:
    expires, max_call_s = NOW + 30, 3300.0
    end = retention_end(expires, NOW, max_call_s)
    assert end >= expires + CLOCK_SKEW_S  # this token verifies until then
    # A token minted (by a webhook whose clock runs CLOCK_SKEW_S ahead) at the call's last
    # second lives MAX_TTL_S and verifies CLOCK_SKEW_S past that.
    assert end >= NOW + max_call_s + CLOCK_SKEW_S + MAX_TTL_S + CLOCK_SKEW_S
    assert retention_end(NOW + 10**6, NOW, max_call_s) == NOW + 10**6 + CLOCK_SKEW_S


def test_entries_outlive_their_retention_until_their_room_is_needed() -> None:
    guard = ReplayGuard(capacity=BUCKET_ENTRIES)  # one bucket: every CallSid lands in it
    assert guard.claim(sid(1), NOW + 10, NOW)
    assert not guard.claim(sid(1), NOW + 10, NOW + 10_000)  # long past its retention, still refused


def test_when_full_the_new_call_sid_takes_an_expired_entry_first(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="relay.replay_guard")
    guard = ReplayGuard(capacity=BUCKET_ENTRIES)
    for n in range(BUCKET_ENTRIES):
        until = NOW + 5 if n == 7 else NOW + 1000 + n  # only sid(7)'s retention ends before NOW + 10
        assert guard.claim(sid(n), until, NOW)
    assert guard.claim(sid(100), NOW + 1000, NOW + 10)
    assert len(guard) == BUCKET_ENTRIES
    assert not caplog.records  # nothing inside its retention was dropped
    assert not any(guard.claim(sid(n), NOW + 1000, NOW + 11) for n in range(BUCKET_ENTRIES) if n != 7)
    assert guard.claim(sid(7), NOW + 1000, NOW + 11)  # the one forgotten: it was past its retention


def test_when_full_inside_retention_the_oldest_claim_goes_and_it_is_said(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="relay.replay_guard")
    guard = ReplayGuard(capacity=BUCKET_ENTRIES)
    for n in range(BUCKET_ENTRIES):
        assert guard.claim(sid(n), NOW + 1000 + n, NOW + n)
    assert guard.claim(sid(100), NOW + 2000, NOW + 20)  # the new call is let in...
    assert guard.claim(sid(101), NOW + 2001, NOW + 21)
    assert len(guard) == BUCKET_ENTRIES  # ...bounded...
    assert guard.claim(sid(0), NOW + 2002, NOW + 22)  # ...by dropping the oldest claims
    for n in range(3, BUCKET_ENTRIES):
        assert not guard.claim(sid(n), NOW + 2003, NOW + 23)
    # One line per minute at most, counting every early eviction.
    assert [r.getMessage() for r in caplog.records] == [
        f"replay_guard.evicted_early count=1 capacity={BUCKET_ENTRIES}"]


def test_a_claim_in_one_worker_is_refused_in_every_other() -> None:
    guard = ReplayGuard.shared(capacity=1024)  # made in gunicorn's master, before fork
    verdicts = []
    for n in range(2):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # a worker: claims its own CallSid, then tries the other one's
            first = guard.claim(sid(n), NOW + 100, NOW)
            second = guard.claim(sid(1 - n), NOW + 100, NOW)
            os.write(write_fd, bytes([first, second]))
            os._exit(0)
        os.waitpid(pid, 0)
        verdicts.append(tuple(os.read(read_fd, 2)))
        os.close(read_fd)
        os.close(write_fd)
    # The first worker claims sid(0) and, unseen so far, sid(1); the second finds both taken.
    assert verdicts == [(1, 1), (0, 0)]
    assert not guard.claim(sid(0), NOW + 100, NOW) and not guard.claim(sid(1), NOW + 100, NOW)
    guard.close()


def test_workers_racing_for_one_call_sid_admit_exactly_one() -> None:
    guard = ReplayGuard.shared(capacity=1024)
    children = []
    for _ in range(4):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            admitted = sum(guard.claim(sid(0xF00 + n), NOW + 100, NOW) for n in range(200))
            os.write(write_fd, admitted.to_bytes(2, "little"))
            os._exit(0)
        children.append((pid, read_fd, write_fd))
    total = 0
    for pid, read_fd, write_fd in children:
        os.waitpid(pid, 0)
        total += int.from_bytes(os.read(read_fd, 2), "little")
        os.close(read_fd)
        os.close(write_fd)
    assert total == 200  # each of the 200 CallSids let in once, whichever worker asked
    guard.close()


def test_capacity_must_fill_whole_buckets() -> None:
    with pytest.raises(ValueError):
        ReplayGuard(capacity=BUCKET_ENTRIES + 1)
