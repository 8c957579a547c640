"""The signature on tool requests and call reports, checked against a vector made with openssl:

    printf '%s' '1800000000.{"call_sid":"CA1","tool":"lookup_order"}' \
        | openssl dgst -sha256 -hmac 'whsec-test-0123456789abcdef0123456789'
"""

from __future__ import annotations

from relay.signing import SIGNATURE_HEADER, signature_header

SECRET = "whsec-test-0123456789abcdef0123456789"
BODY = b'{"call_sid":"CA1","tool":"lookup_order"}'
EXPECTED_V1 = "7dcf4dcd9be626b50951217929ad95c71b8b666f30337e9884517570a1ed414c"


def test_the_header_matches_an_independent_hmac() -> None:
    assert SIGNATURE_HEADER == "X-Liveline-Signature"
    assert signature_header(SECRET, BODY, 1_800_000_000) == f"t=1800000000,v1={EXPECTED_V1}"


def test_the_timestamp_is_signed_with_the_body() -> None:
    later = signature_header(SECRET, BODY, 1_800_000_001)
    assert later.startswith("t=1800000001,v1=")
    assert later.split("v1=")[1] != EXPECTED_V1
    assert signature_header(SECRET, BODY + b" ", 1_800_000_000).split("v1=")[1] != EXPECTED_V1
    assert signature_header(SECRET + "x", BODY, 1_800_000_000).split("v1=")[1] != EXPECTED_V1


def test_fractional_seconds_are_cut_to_whole_ones() -> None:
    assert signature_header(SECRET, BODY, 1_800_000_000.9) == f"t=1800000000,v1={EXPECTED_V1}"  # type: ignore[arg-type]
