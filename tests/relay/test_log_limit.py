"""The log rate limiter: pure, on a hand-driven clock."""

from __future__ import annotations

import pytest

from relay.log_limit import MAX_KEYS, OTHER, LogLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_a_steady_trickle_and_the_dropped_count_said_once() -> None:
    clock = Clock()
    limiter = LogLimiter(burst=3, per_s=0.5, clock=clock)
    assert [limiter.admit("a") for _ in range(5)] == [0, 0, 0, None, None]
    clock.now += 1.0  # half a token: still closed
    assert limiter.admit("a") is None
    assert limiter.suppressed() == {"a": 3}
    clock.now += 1.0  # a whole token: the next line passes and says how many were dropped
    assert limiter.admit("a") == 3
    assert limiter.suppressed() == {}
    assert limiter.admit("a") is None
    clock.now += 2.0
    assert limiter.admit("a") == 1


def test_a_quiet_spell_refills_no_more_than_the_burst() -> None:
    clock = Clock()
    limiter = LogLimiter(burst=2, per_s=1.0, clock=clock)
    clock.now += 3600
    assert [limiter.admit("a") for _ in range(3)] == [0, 0, None]


def test_one_kind_flooding_never_silences_another() -> None:
    limiter = LogLimiter(burst=2, per_s=0.1, clock=Clock())
    for _ in range(1000):
        limiter.admit("http.request.unknown_path")
    assert limiter.admit("call.refused.bad_signature") == 0
    assert limiter.suppressed() == {"http.request.unknown_path": 998}


def test_keys_past_the_cap_share_one_bucket() -> None:
    limiter = LogLimiter(burst=1, per_s=0.1, clock=Clock())
    for number in range(MAX_KEYS):
        assert limiter.admit(f"kind{number}") == 0
    assert limiter.admit("one-more") == 0  # the shared bucket's first line
    assert limiter.admit("and-another") is None
    assert limiter.suppressed() == {OTHER: 1}


@pytest.mark.parametrize("burst,per_s", [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_a_limit_that_could_never_pass_a_line_is_refused(burst: int, per_s: float) -> None:
    with pytest.raises(ValueError):
        LogLimiter(burst=burst, per_s=per_s)
