"""The per-call state machine, pure: scripted events in, actions out. No sockets."""

from __future__ import annotations

import json
import logging

import pytest

from relay import openai_protocol as oai
from relay import stream_token
from relay import twilio_protocol as tw
from relay.bridge import (
    MAX_UNKNOWN_EVENT_NAMES,
    BridgeSettings,
    CallBridge,
    CallState,
    EndCall,
    OpenUpstream,
    SendOpenAI,
    SendTwilio,
)
from relay.errors import TwilioProtocolError, UpstreamError
from relay.log import CallLog
from relay.replay_guard import ReplayGuard
from tests.helpers import Clock

SECRET = "s" * 40
CALL = "CA" + "1" * 32
STREAM = "MZ" + "2" * 32
GREETING = oai.greeting("Hello there.")
SESSION_UPDATE = oai.session_update(voice="marin", instructions="Be brief.")


def settings(**changes: object) -> BridgeSettings:
    values: dict[str, object] = dict(stream_token_secret=SECRET, session_update=SESSION_UPDATE,
                                     greeting=GREETING, start_timeout_s=5.0, session_timeout_s=8.0,
                                     max_call_s=60.0)
    values.update(changes)
    return BridgeSettings(**values)  # type: ignore[arg-type]


def make(
    clock: Clock | None = None, guard: ReplayGuard | None = None, **changes: object
) -> tuple[CallBridge, Clock]:
    clock = clock or Clock()
    bridge = CallBridge(settings(**changes), monotonic=clock.monotonic, wall=clock.wall,
                        replay_guard=guard if guard is not None else ReplayGuard(),
                        log=CallLog(logging.getLogger("test"), "t"))
    return bridge, clock


def start_event(clock: Clock, token: str | None = "mint", call_sid: str = CALL) -> tw.Start:
    params = {}
    if token == "mint":
        token = stream_token.mint(SECRET, call_sid, clock.wall(), 300)
    if token is not None:
        params[stream_token.PARAMETER_NAME] = token
    return tw.Start.of(STREAM, call_sid, params, "AC1")


def active(clock: Clock | None = None, **changes: object) -> tuple[CallBridge, Clock]:
    bridge, clock = make(clock, **changes)
    assert bridge.on_twilio(start_event(clock)) == [OpenUpstream()]
    assert bridge.on_upstream_open() == [SendOpenAI(SESSION_UPDATE)]
    bridge.on_openai(oai.SessionUpdated.of("audio/pcmu", "audio/pcmu"))
    assert bridge.state is CallState.ACTIVE
    return bridge, clock


def delta(item: str, n_bytes: int) -> oai.AudioDelta:
    import base64

    return oai.AudioDelta(item_id=item, delta=base64.b64encode(bytes(n_bytes)).decode(), response_id="resp_1")


def texts(actions: list[object], kind: type) -> list[dict[str, object]]:
    return [json.loads(a.text) for a in actions if isinstance(a, kind)]  # type: ignore[attr-defined]


# -- start, token, session, greeting --------------------------------------------------


def test_greeting_comes_first_once_token_and_session_are_ready() -> None:
    bridge, clock = make()
    assert bridge.on_twilio(tw.Connected("Call", "1.0.0")) == []
    assert bridge.on_twilio(start_event(clock)) == [OpenUpstream()]
    assert bridge.state is CallState.AWAITING_SESSION
    assert bridge.on_upstream_open() == [SendOpenAI(SESSION_UPDATE)]
    assert bridge.on_openai(oai.SessionCreated()) == []
    assert bridge.on_openai(oai.SessionUpdated.of("audio/pcmu", "audio/pcmu")) == [SendOpenAI(GREETING)]
    assert bridge.state is CallState.ACTIVE


def test_no_greeting_when_none_is_configured() -> None:
    bridge, clock = make(greeting=None)
    bridge.on_twilio(start_event(clock))
    bridge.on_upstream_open()
    assert bridge.on_openai(oai.SessionUpdated.of("audio/pcmu", "audio/pcmu")) == []


@pytest.mark.parametrize(
    ("token", "reason"),
    [(None, "token_missing"), ("garbage", "token_malformed"), ("v1.9999999999.AAAA", "token_mismatch")],
)
def test_bad_tokens_end_the_call_before_anything_goes_upstream(token: str | None, reason: str) -> None:
    bridge, clock = make()
    actions = bridge.on_twilio(start_event(clock, token))
    assert actions == [EndCall(reason, 1008)]
    assert bridge.state is CallState.ENDED
    # Whatever follows, nothing is ever sent upstream and no response is requested.
    media = tw.Media.of(STREAM, "/////w==")
    assert bridge.on_twilio(media) == []
    assert bridge.on_upstream_open() == []
    assert bridge.on_openai(oai.SessionUpdated.of("audio/pcmu", "audio/pcmu")) == []


def test_token_for_another_call_is_refused() -> None:
    bridge, clock = make()
    other = stream_token.mint(SECRET, "CA" + "9" * 32, clock.wall(), 300)
    assert bridge.on_twilio(start_event(clock, other)) == [EndCall("token_mismatch", 1008)]


def test_expired_token_is_refused() -> None:
    bridge, clock = make()
    old = stream_token.mint(SECRET, CALL, clock.wall() - 3600, 300)
    assert bridge.on_twilio(start_event(clock, old)) == [EndCall("token_expired", 1008)]


def test_replayed_token_is_refused_on_the_second_stream() -> None:
    guard = ReplayGuard()
    clock = Clock()
    token = stream_token.mint(SECRET, CALL, clock.wall(), 300)
    first, _ = make(clock, guard)
    assert first.on_twilio(start_event(clock, token)) == [OpenUpstream()]
    second, _ = make(clock, guard)
    assert second.on_twilio(start_event(clock, token)) == [EndCall("token_replayed", 1008)]


def invalid(event: str | None) -> TwilioProtocolError:
    return TwilioProtocolError(f"invalid {event} message: Expected `str`, got `null`", event=event)


def test_an_invalid_start_ends_the_call_at_once() -> None:
    """Not at the start timeout: nothing can follow it, and the fallback should play now."""
    bridge, _clock = make()
    assert bridge.on_invalid_message(invalid("media")) == []  # before a start, as after: one bad message
    assert bridge.on_invalid_message(invalid(None)) == []
    assert bridge.on_invalid_message(invalid("start")) == [EndCall("invalid_start", 1008)]
    assert bridge.state is CallState.ENDED


def test_an_invalid_start_after_the_start_is_only_a_bad_message() -> None:
    bridge, _clock = active()
    assert bridge.on_invalid_message(invalid("start")) == []
    assert bridge.state is CallState.ACTIVE


def test_second_start_is_ignored() -> None:
    bridge, clock = active()
    assert bridge.on_twilio(start_event(clock)) == []
    assert bridge.state is CallState.ACTIVE


def test_caller_audio_before_the_session_is_ready_is_dropped_not_sent() -> None:
    bridge, clock = make()
    media = tw.Media.of(STREAM, "/////w==")
    assert bridge.on_twilio(media) == []  # before start
    bridge.on_twilio(start_event(clock))
    assert bridge.on_twilio(media) == []  # before session.updated
    assert bridge.dropped_before_ready == 1


# -- audio both ways, marks, barge-in -------------------------------------------------


def test_caller_audio_passes_upstream_untouched() -> None:
    bridge, _ = active()
    payload = "no+JhoaJjpzS" * 18
    actions = bridge.on_twilio(tw.Media.of(STREAM, payload))
    assert texts(actions, SendOpenAI) == [{"type": "input_audio_buffer.append", "audio": payload}]


def test_media_for_another_stream_is_ignored() -> None:
    bridge, _ = active()
    assert bridge.on_twilio(tw.Media.of("MZ" + "f" * 32, "AAAA")) == []


def test_a_mark_follows_each_audio_delta() -> None:
    bridge, _ = active()
    first = bridge.on_openai(delta("item_1", 800))
    second = bridge.on_openai(delta("item_1", 800))
    for actions, name in ((first, "1"), (second, "2")):
        sent = texts(actions, SendTwilio)
        assert [m["event"] for m in sent] == ["media", "mark"]
        assert sent[0]["streamSid"] == STREAM and sent[1]["mark"] == {"name": name}
    assert bridge.assistant_speaking


def test_barge_in_truncates_at_what_the_caller_heard() -> None:
    bridge, _ = active()
    for _ in range(5):
        bridge.on_openai(delta("item_1", 800))  # 5 x 100 ms sent
    bridge.on_twilio(tw.Mark.of(STREAM, "1"))
    bridge.on_twilio(tw.Mark.of(STREAM, "2"))  # 200 ms played
    actions = bridge.on_openai(oai.SpeechStarted("item_u", 900))
    assert texts(actions, SendTwilio) == [{"event": "clear", "streamSid": STREAM}]
    assert texts(actions, SendOpenAI) == [{"type": "conversation.item.truncate", "item_id": "item_1",
                                           "content_index": 0, "audio_end_ms": 200}]
    assert not bridge.assistant_speaking and bridge.barge_ins == 1


def test_marks_echoed_after_a_clear_are_not_counted_as_played() -> None:
    bridge, _ = active()
    for _ in range(3):
        bridge.on_openai(delta("item_1", 800))
    bridge.on_twilio(tw.Mark.of(STREAM, "1"))
    bridge.on_openai(oai.SpeechStarted("item_u", 0))
    for name in ("2", "3"):  # Twilio echoes the cleared marks
        assert bridge.on_twilio(tw.Mark.of(STREAM, name)) == []
    # The next item starts from zero; the cleared marks added nothing.
    bridge.on_openai(delta("item_2", 400))
    bridge.on_twilio(tw.Mark.of(STREAM, "4"))
    bridge.on_openai(delta("item_2", 400))
    actions = bridge.on_openai(oai.SpeechStarted("item_u2", 0))
    assert texts(actions, SendOpenAI)[0]["audio_end_ms"] == 50
    assert texts(actions, SendOpenAI)[0]["item_id"] == "item_2"


def test_deltas_of_a_truncated_item_still_in_flight_are_dropped() -> None:
    bridge, _ = active()
    bridge.on_openai(delta("item_1", 800))
    bridge.on_openai(oai.SpeechStarted("item_u", 0))
    assert bridge.on_openai(delta("item_1", 800)) == []
    assert texts(bridge.on_openai(delta("item_2", 800)), SendTwilio)[0]["event"] == "media"


def test_truncate_never_exceeds_what_was_sent_and_nothing_played_means_zero() -> None:
    bridge, _ = active()
    bridge.on_openai(delta("item_1", 1600))
    actions = bridge.on_openai(oai.SpeechStarted("item_u", 0))
    assert texts(actions, SendOpenAI)[0]["audio_end_ms"] == 0


def test_speech_while_nothing_plays_is_not_a_barge_in() -> None:
    bridge, _ = active()
    bridge.on_openai(delta("item_1", 800))
    bridge.on_twilio(tw.Mark.of(STREAM, "1"))  # everything played
    assert bridge.on_openai(oai.SpeechStarted("item_u", 0)) == []
    assert bridge.barge_ins == 0


def test_played_audio_spanning_two_items_counts_only_the_current_one() -> None:
    bridge, _ = active()
    bridge.on_openai(delta("item_1", 800))
    bridge.on_openai(delta("item_2", 800))
    bridge.on_openai(delta("item_2", 800))
    for name in ("1", "2"):
        bridge.on_twilio(tw.Mark.of(STREAM, name))
    actions = bridge.on_openai(oai.SpeechStarted("item_u", 0))
    assert texts(actions, SendOpenAI)[0] == {"type": "conversation.item.truncate", "item_id": "item_2",
                                             "content_index": 0, "audio_end_ms": 100}


def test_out_of_order_or_foreign_marks_are_ignored() -> None:
    bridge, _ = active()
    bridge.on_openai(delta("item_1", 800))
    bridge.on_openai(delta("item_1", 800))
    bridge.on_twilio(tw.Mark.of(STREAM, "2"))  # not the head
    bridge.on_twilio(tw.Mark.of("MZ" + "f" * 32, "1"))  # another stream
    assert len(bridge.pending_marks) == 2 and bridge.heard_bytes == 0


def test_first_audio_is_timed_from_start() -> None:
    bridge, clock = make()
    bridge.on_twilio(start_event(clock))
    clock.now += 0.25
    bridge.on_upstream_open()
    bridge.on_openai(oai.SessionUpdated.of("audio/pcmu", "audio/pcmu"))
    clock.now += 0.5
    bridge.on_openai(delta("item_1", 160))
    assert bridge.first_audio_ms == 750.0


# -- endings --------------------------------------------------------------------------


def test_twilio_stop_ends_the_call() -> None:
    bridge, _ = active()
    assert bridge.on_twilio(tw.Stop.of(STREAM, CALL)) == [EndCall("caller_hangup", 1000)]
    assert bridge.on_twilio(tw.Stop.of(STREAM, CALL)) == []  # only once


def test_socket_close_without_stop_ends_the_call() -> None:
    bridge, _ = active()
    assert bridge.on_twilio_closed() == [EndCall("twilio_closed", 1000)]


@pytest.mark.parametrize("stage", ["dns", "tcp", "tls", "handshake"])
def test_upstream_failure_closes_twilio_so_the_fallback_plays(stage: str) -> None:
    bridge, clock = make()
    bridge.on_twilio(start_event(clock))
    actions = bridge.on_upstream_failed(UpstreamError(stage, "boom", status=401))
    assert actions == [EndCall(f"openai_{stage}_failed", 1011)]


def test_upstream_close_mid_call() -> None:
    bridge, _ = active()
    assert bridge.on_upstream_closed(1011, "bye") == [EndCall("openai_closed", 1011)]


def test_fatal_error_ends_recoverable_error_does_not() -> None:
    bridge, _ = active()
    assert bridge.on_openai(oai.ErrorEvent.of("invalid_request_error", "response_cancel_not_active",
                                           "no active response", "")) == []
    assert bridge.on_openai(oai.ErrorEvent.of("invalid_request_error", "conversation_already_has_active_response",
                                           "busy", "")) == []
    assert bridge.state is CallState.ACTIVE
    assert bridge.on_openai(oai.ErrorEvent.of("invalid_request_error", "session_expired", "60 minutes", "")) == [
        EndCall("openai_error", 1011)]


def test_any_error_before_session_updated_means_the_session_was_rejected() -> None:
    bridge, clock = make()
    bridge.on_twilio(start_event(clock))
    bridge.on_upstream_open()
    actions = bridge.on_openai(oai.ErrorEvent.of("invalid_request_error", "invalid_value", "bad format",
                                              "session.audio"))
    assert actions == [EndCall("session_rejected", 1011)]


def test_session_not_in_pcmu_is_rejected() -> None:
    bridge, clock = make()
    bridge.on_twilio(start_event(clock))
    bridge.on_upstream_open()
    assert bridge.on_openai(oai.SessionUpdated.of("audio/pcm", "audio/pcmu")) == [EndCall("session_rejected", 1011)]


def test_start_timeout() -> None:
    bridge, clock = make()
    clock.now += 4.9
    assert bridge.on_tick(clock.now) == []
    clock.now += 0.2
    assert bridge.on_tick(clock.now) == [EndCall("start_timeout", 1008)]


def test_session_timeout() -> None:
    bridge, clock = make()
    bridge.on_twilio(start_event(clock))
    bridge.on_upstream_open()
    clock.now += 8.1
    assert bridge.on_tick(clock.now) == [EndCall("session_timeout", 1011)]


def test_max_call_length() -> None:
    bridge, clock = active()
    clock.now += 59
    assert bridge.on_tick(clock.now) == []
    clock.now += 2
    assert bridge.on_tick(clock.now) == [EndCall("max_call_length", 1000)]


def test_summary_has_no_audio_and_no_secrets() -> None:
    bridge, _ = active()
    bridge.on_openai(delta("item_1", 800))
    bridge.on_twilio(tw.Stop.of(STREAM, CALL))
    summary = bridge.summary()
    assert summary["reason"] == "caller_hangup" and summary["bytes_to_caller"] == 800
    assert SECRET not in repr(summary) and "AAAA" not in repr(summary)


def test_unknown_events_are_tolerated_and_their_warnings_bounded(caplog: pytest.LogCaptureFixture) -> None:
    # Twilio adds events over time: an unknown one is ignored, never an error. But a peer
    # can invent a new name per message, so the warnings (and the names remembered to warn
    # once each) stop after a few, and a name cannot forge a log line of its own.
    bridge, _clock = active()
    caplog.set_level(logging.WARNING, logger="test")
    for n in range(500):
        assert bridge.on_twilio(tw.Unknown(f"novel_{n}")) == []
    assert bridge.on_twilio(tw.Unknown("novel_0")) == []
    assert bridge.on_twilio(tw.Unknown("forged\ncall.ended reason=caller_hangup")) == []
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("twilio.unknown_event conn=t ") and lines[0].endswith(" event='novel_0'")
    assert len(lines) == MAX_UNKNOWN_EVENT_NAMES + 1
    assert lines[-1].startswith("twilio.unknown_events_suppressed conn=t ")
    assert bridge.state is CallState.ACTIVE


def test_an_unknown_event_name_is_quoted_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    bridge, _clock = active()
    caplog.set_level(logging.WARNING, logger="test")
    bridge.on_twilio(tw.Unknown("forged\ncall.ended reason=caller_hangup"))
    (line,) = [r.getMessage() for r in caplog.records]
    assert "\n" not in line and "event='forged\\ncall.ended" in line


def _failed_response(code: str) -> oai.OpenAIEvent:
    return oai.parse(json.dumps({"type": "response.done", "response": {
        "id": "resp_9", "status": "failed",
        "status_details": {"type": "failed", "error": {"type": "invalid_request_error", "code": code}}}}))


def test_a_response_failing_for_quota_ends_the_call() -> None:
    # Out of credit mid-call, every response fails (docs/openai-realtime.md#limits-and-errors: quota failures surface
    # in response.done): the caller would sit in silence, so the fallback must play instead.
    bridge, _clock = active()
    assert bridge.on_openai(_failed_response("insufficient_quota")) == [EndCall("openai_error", 1011)]
    assert bridge.state is CallState.ENDED


def test_a_response_failing_for_a_passing_reason_does_not_end_the_call() -> None:
    bridge, _clock = active()
    assert bridge.on_openai(_failed_response("server_error")) == []
    assert bridge.state is CallState.ACTIVE
