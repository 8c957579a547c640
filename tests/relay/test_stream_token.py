"""The per-call stream token, relay side (tests/test_stream_token_agreement.py checks that
the webhook's copy agrees)."""

from __future__ import annotations

import pytest

from relay.stream_token import (
    CALLED_PARAMETER,
    CALLER_PARAMETER,
    CLOCK_SKEW_S,
    MAX_TTL_S,
    PARAMETER_NAME,
    StreamTokenError,
    VerifiedStream,
    is_call_sid,
    mint,
    mint_parameters,
    verify,
    verify_parameters,
)

SECRET = "k" * 40
CALL = "CA" + "a" * 32
NOW = 1_800_000_000.0
CALLER, CALLED = "+15550001111", "+15550002222"


def test_round_trip_returns_expiry() -> None:
    assert verify(SECRET, mint(SECRET, CALL, NOW, 300), CALL, NOW + 10) == int(NOW) + 300


@pytest.mark.parametrize(
    ("token", "call_sid", "now", "reason"),
    [
        (None, CALL, NOW, "missing"),
        ("", CALL, NOW, "missing"),
        ("v2.1.abc", "CA" + "b" * 32, NOW, "mismatch"),
        ("v1.1800000300.abc", CALL, NOW, "malformed"),  # the old version: refused, not misread
        ("v3.1.abc", CALL, NOW, "malformed"),
        ("v2.soon.abc", CALL, NOW, "malformed"),
        ("v2." + "9" * 300, CALL, NOW, "malformed"),
        (mint(SECRET, CALL, NOW, 300), "CA" + "b" * 32, NOW, "mismatch"),
        (mint(SECRET, CALL, NOW, 300), CALL + "\n", NOW, "mismatch"),
        (mint("other-secret" * 4, CALL, NOW, 300), CALL, NOW, "mismatch"),
        (mint(SECRET, CALL, NOW, 300), CALL, NOW + 300 + CLOCK_SKEW_S + 1, "expired"),
        (mint(SECRET, CALL, NOW + MAX_TTL_S, MAX_TTL_S), CALL, NOW + CLOCK_SKEW_S - 1, "future"),
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
    assert verify(SECRET, token, CALL, NOW + 300 + CLOCK_SKEW_S - 1)
    # A webhook clock running ahead by up to the allowance is fine too.
    assert verify(SECRET, mint(SECRET, CALL, NOW + CLOCK_SKEW_S, MAX_TTL_S), CALL, NOW)


def test_the_numbers_are_bound() -> None:
    token = mint(SECRET, CALL, NOW, 30, caller_number=CALLER, called_number=CALLED)
    assert verify(SECRET, token, CALL, NOW, caller_number=CALLER, called_number=CALLED) == int(NOW) + 30
    for caller, called in ((CALLER, "+15550003333"), ("+15550009999", CALLED), (CALLED, CALLER), ("", ""),
                           (CALLER + CALLED, ""), (CALLER, CALLED + " ")):
        with pytest.raises(StreamTokenError) as info:
            verify(SECRET, token, CALL, NOW, caller_number=caller, called_number=called)
        assert info.value.reason == "mismatch", (caller, called)


def test_numbers_holding_any_separator_cannot_be_re_cut() -> None:
    # A JSON array, not a joined string: moving characters between fields changes the MAC.
    token = mint(SECRET, CALL, NOW, 30, caller_number='sip:a|b","c', called_number="d")
    with pytest.raises(StreamTokenError):
        verify(SECRET, token, CALL, NOW, caller_number="sip:a|b", called_number='c","d')


def test_the_parameters_travel_together() -> None:
    params = mint_parameters(SECRET, CALL, NOW, 30, caller_number=CALLER, called_number=CALLED)
    assert set(params) == {PARAMETER_NAME, CALLER_PARAMETER, CALLED_PARAMETER}
    assert verify_parameters(SECRET, params, CALL, NOW) == VerifiedStream(int(NOW) + 30, CALLER, CALLED)
    # The TwiML leaves out empty values: an absent number is the empty string.
    params = mint_parameters(SECRET, CALL, NOW, 30, caller_number="", called_number=CALLED)
    del params[CALLER_PARAMETER]
    assert verify_parameters(SECRET, params, CALL, NOW) == VerifiedStream(int(NOW) + 30, "", CALLED)
    params[CALLED_PARAMETER] = "+15550003333"
    with pytest.raises(StreamTokenError) as info:
        verify_parameters(SECRET, params, CALL, NOW)
    assert info.value.reason == "mismatch"


@pytest.mark.parametrize("value", [CALL, "CA" + "0123456789ABCDEFabcdef0123456789"])
def test_call_sids_are_ca_and_32_hex_digits(value: str) -> None:
    assert is_call_sid(value)


@pytest.mark.parametrize("value", ["", "CA", "CA1", "CA" + "a" * 31, "CA" + "a" * 33, CALL + "\n", "\n" + CALL,
                                   "ca" + "a" * 32, "CA" + "g" * 32, CALL + "CallStatusringing",
                                   "CA" + "a" * 31 + "\u0661"])
def test_anything_else_is_not_a_call_sid(value: str) -> None:
    assert not is_call_sid(value)


def test_mint_refuses_nonsense() -> None:
    for args in (("", CALL, NOW, 300), (SECRET, "", NOW, 300), (SECRET, "CA1", NOW, 300),
                 (SECRET, CALL, NOW, 0), (SECRET, CALL, NOW, MAX_TTL_S + 1)):
        with pytest.raises(ValueError):
            mint(*args)  # type: ignore[arg-type]
