"""Twilio Media Streams parsing and building: wire vectors from tests/fixtures/twilio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relay import twilio_protocol as tw
from relay.errors import TwilioProtocolError

VECTORS = sorted((Path(__file__).parent.parent / "fixtures" / "twilio").glob("*.json"))


def _raw(vector: dict[str, Any]) -> str:
    return vector["raw"] if "raw" in vector else json.dumps(vector["message"])


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_wire_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    if "error" in vector:
        with pytest.raises(TwilioProtocolError, match=vector["error"]) as raised:
            tw.parse(_raw(vector))
        # The event a message claimed to be, when only its body was wrong: an invalid start ends the call.
        assert raised.value.event == vector.get("error_event")
        return
    event = tw.parse(_raw(vector))
    expect = dict(vector["expect"])
    assert type(event).__name__ == expect.pop("kind")
    fields = {name: getattr(event, name) for name in expect}
    if "tracks" in fields:
        fields["tracks"] = list(fields["tracks"])
    assert fields == expect


def test_vectors_cover_every_event_and_some_invalid_input() -> None:
    kinds = {json.loads(p.read_text()).get("expect", {}).get("kind") for p in VECTORS}
    assert {"Connected", "Start", "Media", "Mark", "Dtmf", "Stop", "Unknown"} <= kinds
    assert sum("error" in json.loads(p.read_text()) for p in VECTORS) >= 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (tw.media("MZabc", "AAEC/w=="), {"event": "media", "streamSid": "MZabc", "media": {"payload": "AAEC/w=="}}),
        (tw.mark("MZabc", "17"), {"event": "mark", "streamSid": "MZabc", "mark": {"name": "17"}}),
        (tw.clear("MZabc"), {"event": "clear", "streamSid": "MZabc"}),
    ],
)
def test_builders_produce_exactly_the_documented_messages(text: str, expected: dict[str, Any]) -> None:
    assert json.loads(text) == expected


def test_builders_escape_whatever_they_are_given() -> None:
    # The payload comes from OpenAI: even a hostile one must not break out of its string.
    nasty = 'x","event":"clear\\\n\u2028'
    assert json.loads(tw.media("MZ1", nasty))["media"]["payload"] == nasty
    assert json.loads(tw.mark("MZ1", nasty))["mark"]["name"] == nasty


@pytest.mark.parametrize(
    ("b64", "size"), [("", 0), ("AA==", 1), ("AAA=", 2), ("AAAA", 3), ("/" * 216, 162), ("A" * 213 + "==", 159)]
)
def test_payload_bytes_counts_without_decoding(b64: str, size: int) -> None:
    assert tw.payload_bytes(b64) == size


def test_media_parse_keeps_payload_untouched() -> None:
    payload = "no+JhoaJjpzS" * 18
    event = tw.parse(json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": payload}}))
    assert isinstance(event, tw.Media) and event.payload == payload


def test_a_start_with_null_parameters_or_tracks_still_parses() -> None:
    # Refused as invalid, it would leave the call waiting for the start timeout.
    text = json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "MZ" + "a" * 32,
                       "start": {"streamSid": "MZ" + "a" * 32, "callSid": "CA" + "b" * 32,
                                 "tracks": None, "customParameters": None}})
    start = tw.parse(text)
    assert isinstance(start, tw.Start)
    assert start.custom_parameters == {} and start.tracks == ("inbound",)
