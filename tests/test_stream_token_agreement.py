"""The webhook mints, the relay verifies: the two copies of stream_token.py must agree.

``webhook_app`` and ``relay`` are separate deployables that never import each other, so
each carries ``stream_token.py``; this test is what keeps the copies one format.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from types import ModuleType

import pytest

from relay import stream_token as relay_token
from webhook_app import stream_token as webhook_token

ROOT = Path(__file__).resolve().parent.parent
SECRET = "agreement-test-stream-secret-0123456789"
NOW = 1_800_000_000.0
SKEW_S = 30  # the clock skew the verifier allows past expiry
CALLER, CALLED = "+15550001111", "+15550002222"

DIRECTIONS = [
    pytest.param(webhook_token, relay_token, id="webhook-mints-relay-verifies"),
    pytest.param(relay_token, webhook_token, id="relay-mints-webhook-verifies"),
]


def call_sid() -> str:
    return "CA" + secrets.token_hex(16)


def test_the_two_files_are_byte_identical() -> None:
    webhook_copy = (ROOT / "webhook_app" / "stream_token.py").read_bytes()
    relay_copy = (ROOT / "relay" / "stream_token.py").read_bytes()

    assert webhook_copy == relay_copy, (
        "webhook_app/stream_token.py and relay/stream_token.py differ: change both, byte for byte")


def test_both_name_the_same_parameters_as_the_twiml() -> None:
    from webhook_app import twiml

    assert webhook_token.PARAMETER_NAME == relay_token.PARAMETER_NAME == "streamToken"
    assert webhook_token.CALLER_PARAMETER == relay_token.CALLER_PARAMETER == twiml.CALLER_NUMBER == "callerNumber"
    assert webhook_token.CALLED_PARAMETER == relay_token.CALLED_PARAMETER == twiml.CALLED_NUMBER == "calledNumber"


@pytest.mark.parametrize(("minter", "verifier"), DIRECTIONS)
def test_the_numbers_minted_by_one_are_bound_in_the_other(minter: ModuleType, verifier: ModuleType) -> None:
    sid = call_sid()
    params = minter.mint_parameters(SECRET, sid, NOW, 30, caller_number=CALLER, called_number=CALLED)

    assert verifier.verify_parameters(SECRET, params, sid, NOW) == (int(NOW) + 30, CALLER, CALLED)
    with pytest.raises(verifier.StreamTokenError) as caught:
        verifier.verify_parameters(SECRET, {**params, "calledNumber": "+15550003333"}, sid, NOW)
    assert caught.value.reason == "mismatch"


@pytest.mark.parametrize(("minter", "verifier"), DIRECTIONS)
def test_a_token_minted_by_one_verifies_in_the_other(minter: ModuleType, verifier: ModuleType) -> None:
    sid = call_sid()
    token = minter.mint(SECRET, sid, now=NOW, ttl_s=300)

    assert verifier.verify(SECRET, token, sid, now=NOW) == int(NOW) + 300
    assert verifier.verify(SECRET, token, sid, now=NOW + 300 + SKEW_S) == int(NOW) + 300


@pytest.mark.parametrize(("minter", "verifier"), DIRECTIONS)
def test_an_expired_token_is_refused(minter: ModuleType, verifier: ModuleType) -> None:
    sid = call_sid()
    token = minter.mint(SECRET, sid, now=NOW, ttl_s=300)

    with pytest.raises(verifier.StreamTokenError) as caught:
        verifier.verify(SECRET, token, sid, now=NOW + 300 + SKEW_S + 1)
    assert caught.value.reason == "expired"


@pytest.mark.parametrize(("minter", "verifier"), DIRECTIONS)
def test_a_token_for_another_call_is_refused(minter: ModuleType, verifier: ModuleType) -> None:
    token = minter.mint(SECRET, call_sid(), now=NOW, ttl_s=300)

    with pytest.raises(verifier.StreamTokenError) as caught:
        verifier.verify(SECRET, token, call_sid(), now=NOW)
    assert caught.value.reason == "mismatch"


@pytest.mark.parametrize(("minter", "verifier"), DIRECTIONS)
def test_a_token_under_another_secret_is_refused(minter: ModuleType, verifier: ModuleType) -> None:
    sid = call_sid()
    token = minter.mint("a-different-stream-secret-0123456789ab", sid, now=NOW, ttl_s=300)

    with pytest.raises(verifier.StreamTokenError) as caught:
        verifier.verify(SECRET, token, sid, now=NOW)
    assert caught.value.reason == "mismatch"


@pytest.mark.parametrize(("minter", "verifier"), DIRECTIONS)
def test_a_token_with_a_stretched_expiry_is_refused(minter: ModuleType, verifier: ModuleType) -> None:
    sid = call_sid()
    version, expires, mac = minter.mint(SECRET, sid, now=NOW, ttl_s=300).split(".")

    with pytest.raises(verifier.StreamTokenError) as caught:
        verifier.verify(SECRET, f"{version}.{int(expires) + 3600}.{mac}", sid, now=NOW)
    assert caught.value.reason == "mismatch"


@pytest.mark.parametrize("token", [None, "", "v1.1800000300.abc", "v2.soon.abc", "v2.1800000300", "x" * 500])
def test_missing_and_malformed_tokens_are_refused_alike(token: str | None) -> None:
    reasons = set()
    for module in (relay_token, webhook_token):
        with pytest.raises(module.StreamTokenError) as caught:
            module.verify(SECRET, token, call_sid(), now=NOW)
        reasons.add(caught.value.reason)
    assert reasons in ({"missing"}, {"malformed"})


def test_a_non_ascii_digit_expiry_is_refused_as_malformed() -> None:
    # str.isdigit() accepts superscripts that int() rejects: both copies must say
    # "malformed", never let a bare ValueError escape.
    for module in (relay_token, webhook_token):
        with pytest.raises(module.StreamTokenError) as caught:
            module.verify(SECRET, "v2.\u00b2.abc", call_sid(), now=NOW)
        assert caught.value.reason == "malformed"
