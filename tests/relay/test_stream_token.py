"""The per-call stream token, relay side (tests/test_stream_token_agreement.py checks that
the webhook's copy agrees)."""

from __future__ import annotations

import pytest

from relay.stream_token import StreamTokenError, mint, verify

SECRET = "k" * 40
CALL = "CA" + "a" * 32
NOW = 1_800_000_000.0


def test_round_trip_returns_expiry() -> None:
    assert verify(SECRET, mint(SECRET, CALL, NOW, 300), CALL, NOW + 10) == int(NOW) + 300


@pytest.mark.parametrize(
    ("token", "call_sid", "now", "reason"),
    [
        (None, CALL, NOW, "missing"),
        ("", CALL, NOW, "missing"),
        ("v2.1.abc", CALL, NOW, "malformed"),
        ("v1.soon.abc", CALL, NOW, "malformed"),
        ("v1." + "9" * 300, CALL, NOW, "malformed"),
        (mint(SECRET, CALL, NOW, 300), "CA" + "b" * 32, NOW, "mismatch"),
        (mint("other-secret" * 4, CALL, NOW, 300), CALL, NOW, "mismatch"),
        (mint(SECRET, CALL, NOW, 300), CALL, NOW + 300 + 31, "expired"),
    ],
)
def test_refusals(token: str | None, call_sid: str, now: float, reason: str) -> None:
    with pytest.raises(StreamTokenError) as info:
        verify(SECRET, token, call_sid, now)
    assert info.value.reason == reason


def test_tampered_expiry_is_a_mismatch() -> None:
    version, expires, mac = mint(SECRET, CALL, NOW, 300).split(".")
    with pytest.raises(StreamTokenError) as info:
        verify(SECRET, f"{version}.{int(expires) + 3600}.{mac}", CALL, NOW)
    assert info.value.reason == "mismatch"


def test_small_clock_skew_is_tolerated() -> None:
    token = mint(SECRET, CALL, NOW, 300)
    assert verify(SECRET, token, CALL, NOW + 300 + 29)


def test_mint_refuses_nonsense() -> None:
    for args in (("", CALL, NOW, 300), (SECRET, "", NOW, 300), (SECRET, CALL, NOW, 0)):
        with pytest.raises(ValueError):
            mint(*args)  # type: ignore[arg-type]
