"""The softphone's pure parts: the playout tracker, the page's messages, reading TwiML."""

from __future__ import annotations

import pytest

from scripts.softphone import page_messages as pm
from scripts.softphone.incoming_call import CallFailed, read_twiml
from scripts.softphone.playout import Playout
from tests.conftest import STREAM_SECRET
from webhook_app import twiml

# -- Playout ---------------------------------------------------------------------------------------


def test_marks_come_back_in_order_as_the_audio_before_each_is_played() -> None:
    playout = Playout()
    playout.audio(800)
    assert playout.mark("a") == []
    playout.audio(800)
    assert playout.mark("b") == []
    assert playout.played_up_to(799) == []
    assert playout.played_up_to(800) == ["a"]
    assert playout.played_up_to(1600) == ["b"]
    assert playout.pending == 0


def test_a_mark_with_nothing_left_to_play_comes_back_at_once() -> None:
    playout = Playout()
    assert playout.mark("first") == ["first"]
    playout.audio(160)
    playout.played_up_to(160)
    assert playout.mark("after-all-played") == ["after-all-played"]


def test_clear_returns_every_pending_mark_and_counts_the_dropped_audio_as_played() -> None:
    playout = Playout()
    for name in "abc":
        playout.audio(100)
        playout.mark(name)
    assert playout.played_up_to(100) == ["a"]
    assert playout.clear() == ["b", "c"]
    assert playout.buffered == 0
    assert playout.played_up_to(250) == []  # a report that crossed the clear
    playout.audio(100)
    assert playout.mark("d") == []
    assert playout.played_up_to(400) == ["d"]


def test_reports_behind_or_beyond_what_was_sent_change_nothing_they_should_not() -> None:
    playout = Playout()
    playout.audio(100)
    playout.mark("a")
    assert playout.played_up_to(10**9) == ["a"]  # held to what was sent
    assert playout.played == 100
    playout.audio(100)
    playout.mark("b")
    assert playout.played_up_to(50) == []  # behind: ignored
    assert playout.played == 100 and playout.pending == 1


# -- the page's messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("message,parsed", [
    (b"\xff" * 160, pm.CallerAudio(b"\xff" * 160)),
    (bytearray(160), pm.CallerAudio(bytes(160))),
    ('{"type": "played", "samples": 0}', pm.Played(0)),
    ('{"type": "played", "samples": 123456789}', pm.Played(123456789)),
    ('{"type": "dtmf", "digit": "#"}', pm.Digit("#")),
    ('{"type": "dtmf", "digit": "0"}', pm.Digit("0")),
    ('{"type": "hangup"}', pm.HangUp()),
])
def test_what_a_page_sends_is_read(message: str | bytes, parsed: pm.PageMessage) -> None:
    assert pm.parse(message) == parsed


@pytest.mark.parametrize("message", [
    b"", b"\xff" * 159, b"\xff" * 161, "", "null", '"played"', "{}", '{"type": "played"}',
    '{"type": "played", "samples": 1.5}', '{"type": "played", "samples": "5"}', '{"type": "dtmf"}',
    '{"type": "dtmf", "digit": "12"}', '{"type": "dtmf", "digit": 1}', '{"type": "HANGUP"}',
    '{"type": "played", "samples": 1' + "0" * 300 + "}",
])
def test_anything_else_is_a_protocol_error(message: str | bytes) -> None:
    with pytest.raises(pm.PageProtocolError):
        pm.parse(message)


# -- TwiML -----------------------------------------------------------------------------------------


def test_the_webhooks_own_twiml_is_read_as_twilio_reads_it() -> None:
    document = twiml.connect_stream(
        stream_url="wss://relay.example.com/twilio/realtime",
        status_callback_url="https://hooks.example.com/twilio/status",
        parameters={"streamToken": "v1.1.abc", "callerNumber": "+15550123", "calledNumber": "+15550100"},
        fallback_message="Sorry & goodbye.")
    instructions = read_twiml(document)
    assert instructions.url == "wss://relay.example.com/twilio/realtime"
    assert instructions.parameters == {"streamToken": "v1.1.abc", "callerNumber": "+15550123",
                                       "calledNumber": "+15550100"}
    assert instructions.status_callback == "https://hooks.example.com/twilio/status"
    assert instructions.afterwards == ('say "Sorry & goodbye."', "hang up")
    assert STREAM_SECRET not in repr(instructions) and "v1.1.abc" not in repr(instructions)


@pytest.mark.parametrize("document,said", [
    ("not xml at all", "not XML"),
    ("<Html><body/></Html>", "<Html> at the top"),
    ("<Response><Say>We are closed.</Say><Hangup/></Response>",
     'streams nothing (no <Connect><Stream url>): Twilio would say "We are closed.", hang up'),
    ("<Response><Connect><Room>x</Room></Connect></Response>", "streams nothing"),
    ('<Response><Connect><Stream url=""/></Connect></Response>', "streams nothing"),
])
def test_twiml_that_streams_nothing_is_a_plain_failure(document: str, said: str) -> None:
    with pytest.raises(CallFailed, match=".*") as failed:
        read_twiml(document)
    assert said in str(failed.value)
