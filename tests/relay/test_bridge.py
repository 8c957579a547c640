"""The per-call state machine, pure: scripted events in, actions out. No sockets."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from relay import comfort_tone, stream_token
from relay import openai_protocol as oai
from relay import twilio_protocol as tw
from relay.actions import Actions, EndCall, OpenUpstream
from relay.assistant import Assistant
from relay.bridge import CallBridge, CallState
from relay.call_settings import BridgeSettings, persona
from relay.errors import FrameError, UpstreamError
from relay.limits import Limits
from relay.log import CallLog
from relay.peer_guard import MAX_UNKNOWN_EVENT_NAMES
from relay.replay_guard import ReplayGuard
from tests.helpers import Clock

SECRET = "s" * 40
CALL = "CA" + "1" * 32
STREAM = "MZ" + "2" * 32
ASSISTANT = Assistant(instructions="Be brief.", greeting="Hello there.", voice="marin")
GREETING = oai.greeting("Hello there.")
SESSION_UPDATE = persona(ASSISTANT).session_update
PCMU = oai.SessionUpdated.of("audio/pcmu", "audio/pcmu")


def settings(greeting: str | None = "Hello there.", **changes: object) -> BridgeSettings:
    assistant = Assistant(instructions="Be brief.", greeting=greeting or "", voice="marin")
    values: dict[str, object] = dict(stream_token_secret=SECRET, personas={"": persona(assistant)},
                                     start_timeout_s=5.0, session_timeout_s=8.0, max_call_s=60.0)
    values.update(changes)
    return BridgeSettings(**values)  # type: ignore[arg-type]


def make(clock: Clock | None = None, guard: ReplayGuard | None = None, limits: Limits | None = None,
         **changes: object) -> tuple[CallBridge, Clock]:
    clock = clock or Clock()
    bridge = CallBridge(settings(**changes), limits or Limits(), monotonic=clock.monotonic, wall=clock.wall,  # type: ignore[arg-type]
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


def started(clock: Clock | None = None, **changes: object) -> tuple[CallBridge, Clock]:
    bridge, clock = make(clock, **changes)
    assert bridge.on_twilio(start_event(clock)).effects == [OpenUpstream()]
    assert bridge.upstream_open().to_openai == [SESSION_UPDATE]
    return bridge, clock


def active(clock: Clock | None = None, **changes: object) -> tuple[CallBridge, Clock]:
    bridge, clock = started(clock, **changes)
    bridge.on_openai(PCMU)
    assert bridge.state is CallState.ACTIVE
    return bridge, clock


def b64(n_bytes: int, fill: int = 0) -> str:
    return base64.b64encode(bytes([fill]) * n_bytes).decode()


def delta(item: str, n_bytes: int) -> oai.AudioDelta:
    return oai.AudioDelta(item_id=item, delta=b64(n_bytes), response_id="resp_1")


def media(payload: str = "/////w==", stream: str = STREAM) -> tw.Media:
    return tw.Media.of(stream, payload)


def wire_media(payload: str, stream: str = STREAM) -> str:
    return json.dumps({"event": "media", "streamSid": stream, "media": {"payload": payload}})


def twilio_json(actions: Actions) -> list[dict[str, object]]:
    return [json.loads(text) for text in actions.to_twilio]


def openai_json(actions: Actions) -> list[dict[str, object]]:
    return [json.loads(text) for text in actions.to_openai]


def nothing(actions: Actions) -> bool:
    return not actions


# -- start, token, session, greeting --------------------------------------------------


def test_greeting_comes_first_once_token_and_session_are_ready() -> None:
    bridge, clock = make()
    assert nothing(bridge.on_twilio(tw.Connected("Call", "1.0.0")))
    assert bridge.on_twilio(start_event(clock)).effects == [OpenUpstream()]
    assert bridge.state is CallState.AWAITING_SESSION
    assert bridge.upstream_open().to_openai == [SESSION_UPDATE]
    assert nothing(bridge.on_openai(oai.SessionCreated()))
    assert bridge.on_openai(PCMU).to_openai == [GREETING]
    assert bridge.state is CallState.ACTIVE


def test_no_greeting_when_none_is_configured() -> None:
    bridge, _clock = started(greeting=None)
    assert nothing(bridge.on_openai(PCMU))


@pytest.mark.parametrize(
    ("token", "reason"),
    [(None, "token_missing"), ("garbage", "token_malformed"), ("v1.9999999999.AAAA", "token_malformed"),
     ("v2.9999999999.AAAA", "token_mismatch")],
)
def test_bad_tokens_end_the_call_before_anything_goes_upstream(token: str | None, reason: str) -> None:
    bridge, clock = make()
    actions = bridge.on_twilio(start_event(clock, token))
    assert actions.end == EndCall(reason, 1008) and not actions.effects
    assert bridge.state is CallState.ENDED
    # Whatever follows, nothing is ever sent upstream and no response is requested.
    assert nothing(bridge.on_twilio(media()))
    assert nothing(bridge.upstream_open())
    assert nothing(bridge.on_openai(PCMU))


def test_token_for_another_call_is_refused() -> None:
    bridge, clock = make()
    other = stream_token.mint(SECRET, "CA" + "9" * 32, clock.wall(), 300)
    assert bridge.on_twilio(start_event(clock, other)).end == EndCall("token_mismatch", 1008)


def test_expired_token_is_refused() -> None:
    bridge, clock = make()
    old = stream_token.mint(SECRET, CALL, clock.wall() - 3600, 300)
    assert bridge.on_twilio(start_event(clock, old)).end == EndCall("token_expired", 1008)


def test_replayed_token_is_refused_on_the_second_stream() -> None:
    guard = ReplayGuard()
    clock = Clock()
    token = stream_token.mint(SECRET, CALL, clock.wall(), 300)
    first, _ = make(clock, guard)
    assert first.on_twilio(start_event(clock, token)).effects == [OpenUpstream()]
    second, _ = make(clock, guard)
    assert second.on_twilio(start_event(clock, token)).end == EndCall("token_replayed", 1008)


CALLER, CALLED = "+15550001111", "+15550002222"


def numbered_start(clock: Clock, *, caller: str = CALLER, called: str = CALLED, minted_at: float | None = None,
                   ttl_s: int = 30, call_sid: str = CALL) -> tw.Start:
    """A start as the webhook's TwiML produces it: the token and the two numbers it binds."""
    params = stream_token.mint_parameters(SECRET, call_sid, clock.wall() if minted_at is None else minted_at,
                                          ttl_s, caller_number=CALLER, called_number=CALLED)
    params.update({stream_token.CALLER_PARAMETER: caller, stream_token.CALLED_PARAMETER: called})
    return tw.Start.of(STREAM, call_sid, params)


def test_the_verified_numbers_are_the_bridges_after_start() -> None:
    bridge, clock = make()
    assert (bridge.caller_number, bridge.called_number) == ("", "")
    assert bridge.on_twilio(numbered_start(clock)).effects == [OpenUpstream()]
    assert (bridge.caller_number, bridge.called_number) == (CALLER, CALLED)


@pytest.mark.parametrize("altered", [{"called": "+15550003333"}, {"caller": "+15550009999"}, {"called": ""},
                                     {"caller": CALLED, "called": CALLER}])
def test_a_start_whose_numbers_were_altered_is_refused(altered: dict[str, str]) -> None:
    bridge, clock = make()
    assert bridge.on_twilio(numbered_start(clock, **altered)).end == EndCall("token_mismatch", 1008)
    assert (bridge.caller_number, bridge.called_number) == ("", "")


def test_one_token_never_opens_two_sessions_even_in_the_skew_allowance() -> None:
    """The token still verifies for CLOCK_SKEW_S after its expiry: so must the guard remember it."""
    guard, clock = ReplayGuard(), Clock()
    minted_at = clock.wall()
    first, _ = make(clock, guard)
    assert first.on_twilio(numbered_start(clock, minted_at=minted_at, ttl_s=30)).effects == [OpenUpstream()]
    clock.now += 30 + stream_token.CLOCK_SKEW_S - 1  # past expiry, inside the allowance: it verifies
    second, _ = make(clock, guard)
    assert second.on_twilio(numbered_start(clock, minted_at=minted_at, ttl_s=30)).end == EndCall("token_replayed", 1008)


def test_a_fresh_token_for_a_used_call_sid_is_refused_as_long_as_the_call_can_last() -> None:
    """A replayed webhook request mints a new token for the same CallSid, any time in the call."""
    guard, clock = ReplayGuard(), Clock()
    first, _ = make(clock, guard, max_call_s=3300.0)
    assert first.on_twilio(numbered_start(clock)).effects == [OpenUpstream()]
    for later_s in (60, 3299, 3300 + stream_token.MAX_TTL_S):  # each minted just now, still valid
        clock.now += later_s
        again, _ = make(clock, guard, max_call_s=3300.0)
        assert again.on_twilio(numbered_start(clock)).end == EndCall("token_replayed", 1008), later_s


def test_the_call_sid_is_bound_to_the_log_only_once_the_token_verified(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test")
    refused, clock = make()
    refused.on_twilio(start_event(clock, stream_token.mint("f" * 40, CALL, clock.wall(), 30)))
    (rejected,) = [r.getMessage() for r in caplog.records]
    assert rejected.startswith("call.rejected conn=t reason=token_mismatch unverified_call_sid=" + CALL)
    assert " call_sid=" not in rejected and "stream_sid=" not in rejected
    refused.on_twilio(tw.Stop.of(STREAM, CALL))
    assert " call_sid=" not in caplog.records[-1].getMessage()

    caplog.clear()
    accepted, clock = make()
    accepted.on_twilio(start_event(clock))
    assert caplog.records[-1].getMessage().startswith(f"twilio.start conn=t call_sid={CALL} stream_sid={STREAM} ")


def test_an_invalid_start_ends_the_call_at_once() -> None:
    """Not at the start timeout: nothing can follow it, and the fallback should play now."""
    bridge, _clock = make()
    bad_media = '{"event": "media", "media": {"payload": null}}'
    assert nothing(bridge.twilio_messages([bad_media, "not json"]))  # before a start, as after: bad messages
    actions = bridge.twilio_messages(['{"event": "start", "start": {"streamSid": null}}'])
    assert actions.end == EndCall("invalid_start", 1008)
    assert bridge.state is CallState.ENDED


def test_an_invalid_start_after_the_start_is_only_a_bad_message() -> None:
    bridge, _clock = active()
    assert nothing(bridge.twilio_messages(['{"event": "start", "start": {"streamSid": null}}']))
    assert bridge.state is CallState.ACTIVE


def test_second_start_is_ignored() -> None:
    bridge, clock = active()
    assert nothing(bridge.on_twilio(start_event(clock)))
    assert bridge.state is CallState.ACTIVE


# -- the caller's first words ----------------------------------------------------------


def test_caller_audio_before_the_session_is_ready_is_held_then_sent_in_order_before_the_greeting() -> None:
    bridge, clock = make()
    assert nothing(bridge.on_twilio(media()))  # before start: no stream to speak of
    bridge.on_twilio(start_event(clock))
    early = [b64(160, n) for n in range(5)]
    for payload in early[:2]:
        assert nothing(bridge.on_twilio(media(payload)))  # the socket is not even open yet
    assert bridge.upstream_open().to_openai == [SESSION_UPDATE]
    for payload in early[2:]:
        assert nothing(bridge.on_twilio(media(payload)))  # open, but the format is not confirmed
    actions = bridge.on_openai(PCMU)
    sent = openai_json(actions)
    assert [event["audio"] for event in sent[:-1]] == early
    assert actions.to_openai[-1] == GREETING
    assert bridge.frames_from_caller == 5 and bridge.early_frames == 5 and bridge.dropped_before_ready == 0
    # and from now on each frame goes straight up
    assert openai_json(bridge.on_twilio(media(b64(160, 9)))) == [
        {"type": "input_audio_buffer.append", "audio": b64(160, 9)}]


def test_held_audio_is_bounded_and_keeps_the_latest() -> None:
    limits = Limits(early_audio_s=0.1)  # 5 frames
    bridge, clock = make(limits=limits)
    bridge.on_twilio(start_event(clock))
    bridge.upstream_open()
    payloads = [b64(160, n) for n in range(8)]
    for payload in payloads:
        bridge.on_twilio(media(payload))
    sent = openai_json(bridge.on_openai(PCMU))
    assert [event["audio"] for event in sent[:-1]] == payloads[3:]
    assert bridge.dropped_before_ready == 3


def test_held_audio_is_never_sent_if_the_session_fails() -> None:
    bridge, clock = started()
    bridge.on_twilio(media())
    actions = bridge.on_openai(oai.ErrorEvent.of("invalid_request_error", "invalid_value", "no", "session"))
    assert actions.end == EndCall("session_rejected", 1011) and not actions.to_openai


# -- audio both ways, marks, barge-in -------------------------------------------------


def test_caller_audio_passes_upstream_untouched() -> None:
    bridge, _ = active()
    payload = "no+JhoaJjpzS" * 18
    actions = bridge.twilio_messages([wire_media(payload)])
    assert openai_json(actions) == [{"type": "input_audio_buffer.append", "audio": payload}]


@pytest.mark.parametrize("payload", ["", "abc", "ab=c", "a b c d", "====", "YQ==YQ==", "Y\\nQ==", "éééé"])
def test_audio_that_is_not_base64_never_goes_upstream(payload: str) -> None:
    bridge, _ = active()
    good = b64(160)
    actions = bridge.twilio_messages([wire_media(payload), wire_media(good)])
    assert openai_json(actions) == [{"type": "input_audio_buffer.append", "audio": good}]
    assert bridge.invalid_audio == 1 and bridge.frames_from_caller == 1


def test_media_for_another_stream_is_ignored() -> None:
    bridge, _ = active()
    assert nothing(bridge.on_twilio(media("AAAA", "MZ" + "f" * 32)))


def test_a_mark_follows_each_audio_delta() -> None:
    bridge, _ = active()
    first = bridge.on_openai(delta("item_1", 800))
    second = bridge.on_openai(delta("item_1", 800))
    for actions, name in ((first, "1"), (second, "2")):
        sent = twilio_json(actions)
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
    assert twilio_json(actions) == [{"event": "clear", "streamSid": STREAM}]
    assert openai_json(actions) == [{"type": "conversation.item.truncate", "item_id": "item_1",
                                     "content_index": 0, "audio_end_ms": 200}]
    assert not bridge.assistant_speaking and bridge.barge_ins == 1


def test_marks_echoed_after_a_clear_are_not_counted_as_played() -> None:
    bridge, _ = active()
    for _ in range(3):
        bridge.on_openai(delta("item_1", 800))
    bridge.on_twilio(tw.Mark.of(STREAM, "1"))
    bridge.on_openai(oai.SpeechStarted("item_u", 0))
    for name in ("2", "3"):  # Twilio echoes the cleared marks
        assert nothing(bridge.on_twilio(tw.Mark.of(STREAM, name)))
    # The next item starts from zero; the cleared marks added nothing.
    bridge.on_openai(delta("item_2", 400))
    bridge.on_twilio(tw.Mark.of(STREAM, "4"))
    bridge.on_openai(delta("item_2", 400))
    actions = bridge.on_openai(oai.SpeechStarted("item_u2", 0))
    assert openai_json(actions)[0]["audio_end_ms"] == 50
    assert openai_json(actions)[0]["item_id"] == "item_2"


def test_deltas_of_a_truncated_item_still_in_flight_are_dropped() -> None:
    bridge, _ = active()
    bridge.on_openai(delta("item_1", 800))
    bridge.on_openai(oai.SpeechStarted("item_u", 0))
    assert nothing(bridge.on_openai(delta("item_1", 800)))
    assert twilio_json(bridge.on_openai(delta("item_2", 800)))[0]["event"] == "media"


def test_truncate_never_exceeds_what_was_sent_and_nothing_played_means_zero() -> None:
    bridge, _ = active()
    bridge.on_openai(delta("item_1", 1600))
    actions = bridge.on_openai(oai.SpeechStarted("item_u", 0))
    assert openai_json(actions)[0]["audio_end_ms"] == 0


def test_speech_while_nothing_plays_is_not_a_barge_in() -> None:
    bridge, _ = active()
    bridge.on_openai(delta("item_1", 800))
    bridge.on_twilio(tw.Mark.of(STREAM, "1"))  # everything played
    assert nothing(bridge.on_openai(oai.SpeechStarted("item_u", 0)))
    assert bridge.barge_ins == 0


def test_played_audio_spanning_two_items_counts_only_the_current_one() -> None:
    bridge, _ = active()
    bridge.on_openai(delta("item_1", 800))
    bridge.on_openai(delta("item_2", 800))
    bridge.on_openai(delta("item_2", 800))
    for name in ("1", "2"):
        bridge.on_twilio(tw.Mark.of(STREAM, name))
    actions = bridge.on_openai(oai.SpeechStarted("item_u", 0))
    assert openai_json(actions)[0] == {"type": "conversation.item.truncate", "item_id": "item_2",
                                       "content_index": 0, "audio_end_ms": 100}


def test_out_of_order_or_foreign_marks_are_ignored() -> None:
    bridge, _ = active()
    bridge.on_openai(delta("item_1", 800))
    bridge.on_openai(delta("item_1", 800))
    bridge.on_twilio(tw.Mark.of(STREAM, "2"))  # not the head
    bridge.on_twilio(tw.Mark.of("MZ" + "f" * 32, "1"))  # another stream
    assert len(bridge.playout.pending) == 2 and bridge.playout.heard_bytes == 0


def test_first_audio_is_timed_from_start() -> None:
    bridge, clock = make()
    bridge.on_twilio(start_event(clock))
    clock.now += 0.25
    bridge.upstream_open()
    bridge.on_openai(PCMU)
    clock.now += 0.5
    bridge.on_openai(delta("item_1", 160))
    assert bridge.first_audio_ms == 750.0


# -- while the session opens: the comfort tone ---------------------------------------------


def tone_payloads(actions: Actions) -> list[str]:
    return [m["media"]["payload"] for m in twilio_json(actions) if m["event"] == "media"]  # type: ignore[index]


def test_a_slow_session_plays_a_comfort_tone_until_the_greeting_clears_it() -> None:
    bridge, clock = started()
    clock.now += 1.4
    assert nothing(bridge.tick(clock.now))  # a normal handshake: no tone
    clock.now += 0.2
    first = tone_payloads(bridge.tick(clock.now))
    assert first == list(comfort_tone.CHUNKS[:5])  # 500 ms queued ahead, no mark: not assistant audio
    clock.now += 0.25
    assert tone_payloads(bridge.tick(clock.now)) == list(comfort_tone.CHUNKS[5:8])  # kept 500 ms ahead
    bridge.on_openai(PCMU)  # ready: the greeting is requested, the tone goes on until it speaks
    clock.now += 0.25
    assert tone_payloads(bridge.tick(clock.now)) == list(comfort_tone.CHUNKS[8:10])
    sent = twilio_json(bridge.on_openai(delta("item_1", 800)))
    assert [m["event"] for m in sent] == ["clear", "media", "mark"]
    assert sent[1]["media"]["payload"] == b64(800)  # type: ignore[index]
    clock.now += 0.25
    assert nothing(bridge.tick(clock.now))
    assert bridge.first_audio_ms == 2100.0


def test_the_tone_stops_when_the_session_is_ready_and_nobody_greets() -> None:
    bridge, clock = started(greeting=None)
    clock.now += 2
    assert tone_payloads(bridge.tick(clock.now))
    assert twilio_json(bridge.on_openai(PCMU)) == [{"event": "clear", "streamSid": STREAM}]
    clock.now += 0.25
    assert nothing(bridge.tick(clock.now))


def test_the_tone_stops_if_the_greeting_ends_without_a_sound() -> None:
    bridge, clock = active()
    clock.now += 2
    assert tone_payloads(bridge.tick(clock.now))
    done = oai.parse(json.dumps({"type": "response.done", "response": {"id": "r", "status": "failed"}}))
    assert twilio_json(bridge.on_openai(done)) == [{"event": "clear", "streamSid": STREAM}]
    clock.now += 0.25
    assert nothing(bridge.tick(clock.now))


def test_the_tone_plays_until_the_fallback() -> None:
    bridge, clock = started()
    clock.now += 2
    assert tone_payloads(bridge.tick(clock.now))
    clock.now += 6.1  # past the session timeout (8 s from accept)
    actions = bridge.tick(clock.now)
    assert actions.end == EndCall("session_timeout", 1011) and not actions.to_twilio


def test_no_tone_before_a_verified_start() -> None:
    bridge, clock = make()
    clock.now += 3
    assert nothing(bridge.tick(clock.now))


def test_the_comfort_tone_is_quiet_mu_law_with_silence_between_chimes() -> None:
    cycle = comfort_tone.CYCLE
    assert len(cycle) == 8000 and len(comfort_tone.CHUNKS) == 10
    assert cycle[-4000:] == b"\xff" * 4000  # mu-law silence after the chime
    assert comfort_tone.ulaw(0) == 0xFF and comfort_tone.ulaw(32767) == 0x80 and comfort_tone.ulaw(-32768) == 0x00
    loudest = max(abs(_ulaw_to_linear(b)) for b in cycle)
    assert 1000 < loudest < 2600  # about -24 dBFS: audible, soft


def _ulaw_to_linear(byte: int) -> int:
    byte = ~byte & 0xFF
    magnitude = (((byte & 0x0F) << 3) + 0x84) << ((byte & 0x70) >> 4)
    return (0x84 - magnitude) if byte & 0x80 else (magnitude - 0x84)


# -- endings --------------------------------------------------------------------------


def test_twilio_stop_ends_the_call() -> None:
    bridge, _ = active()
    assert bridge.on_twilio(tw.Stop.of(STREAM, CALL)).end == EndCall("caller_hangup", 1000)
    assert nothing(bridge.on_twilio(tw.Stop.of(STREAM, CALL)))  # only once


def test_socket_close_without_stop_ends_the_call() -> None:
    bridge, _ = active()
    assert bridge.twilio_closed().end == EndCall("twilio_closed", 1000)


def test_broken_twilio_framing_ends_the_call_and_cuts_that_socket() -> None:
    bridge, _ = active()
    actions = bridge.twilio_closed(FrameError("client frame not masked", 1002))
    assert actions.end == EndCall("twilio_protocol_error", 1002, ("twilio",))


@pytest.mark.parametrize("stage", ["dns", "tcp", "tls", "handshake"])
def test_upstream_failure_closes_twilio_so_the_fallback_plays(stage: str) -> None:
    bridge, clock = make()
    bridge.on_twilio(start_event(clock))
    actions = bridge.upstream_failed(UpstreamError(stage, "boom", status=401))
    assert actions.end == EndCall(f"openai_{stage}_failed", 1011)


def test_upstream_close_mid_call() -> None:
    bridge, _ = active()
    assert bridge.upstream_closed(1011, "bye").end == EndCall("openai_closed", 1011)


@pytest.mark.parametrize(("side", "overflow", "end"), [
    ("twilio", False, EndCall("twilio_closed", 1000)),
    ("openai", False, EndCall("openai_closed", 1011)),
    ("twilio", True, EndCall("twilio_stalled", 1011, ("twilio",))),
    ("openai", True, EndCall("openai_stalled", 1011, ("openai",))),
])
def test_a_failed_send_ends_the_call(side: str, overflow: bool, end: EndCall) -> None:
    bridge, _ = active()
    assert bridge.send_failed(side, overflow=overflow).end == end
    assert nothing(bridge.send_failed(side, overflow=overflow))


def test_our_own_failure_ends_the_call_so_the_fallback_plays() -> None:
    bridge, _ = active()
    assert bridge.internal_error().end == EndCall("internal_error", 1011)


def test_fatal_error_ends_recoverable_error_does_not() -> None:
    bridge, _ = active()
    assert nothing(bridge.on_openai(oai.ErrorEvent.of("invalid_request_error", "response_cancel_not_active",
                                                      "no active response", "")))
    assert nothing(bridge.on_openai(oai.ErrorEvent.of("invalid_request_error",
                                                      "conversation_already_has_active_response", "busy", "")))
    assert bridge.state is CallState.ACTIVE
    actions = bridge.on_openai(oai.ErrorEvent.of("invalid_request_error", "session_expired", "60 minutes", ""))
    assert actions.end == EndCall("openai_error", 1011)


def test_any_error_before_session_updated_means_the_session_was_rejected() -> None:
    bridge, _clock = started()
    actions = bridge.on_openai(oai.ErrorEvent.of("invalid_request_error", "invalid_value", "bad format",
                                                 "session.audio"))
    assert actions.end == EndCall("session_rejected", 1011)


def test_session_not_in_pcmu_is_rejected() -> None:
    bridge, _clock = started()
    assert bridge.on_openai(oai.SessionUpdated.of("audio/pcm", "audio/pcmu")).end == EndCall("session_rejected", 1011)


def test_start_timeout() -> None:
    bridge, clock = make()
    clock.now += 4.9
    assert nothing(bridge.tick(clock.now))
    clock.now += 0.2
    assert bridge.tick(clock.now).end == EndCall("start_timeout", 1008)


def test_session_timeout() -> None:
    bridge, clock = started()
    clock.now += 8.1
    assert bridge.tick(clock.now).end == EndCall("session_timeout", 1011)


def test_max_call_length_starts_the_goodbye() -> None:
    """The ending itself is relay/conversation.py's (tests/relay/test_conversation.py)."""
    bridge, clock = active()
    clock.now += 59
    assert nothing(bridge.tick(clock.now))
    clock.now += 2
    actions = bridge.tick(clock.now)
    assert openai_json(actions) == [{"type": "response.cancel"}] and actions.end is None  # the greeting is cut


def test_max_call_length_before_the_session_was_ready_just_ends() -> None:
    bridge, clock = started(session_timeout_s=120.0)
    clock.now += 61
    assert bridge.tick(clock.now).end == EndCall("max_call_length", 1000)


# -- peers that misbehave: the bridge's policies, with small injected limits -----------------


def test_a_peer_that_stops_reading_is_cut_after_the_stall_limit() -> None:
    bridge, clock = active(limits=Limits(send_stall_s=0.5))
    blocked = clock.now
    clock.now += 0.4
    assert nothing(bridge.tick(clock.now, twilio_blocked_since=blocked))
    clock.now += 0.2
    assert bridge.tick(clock.now, twilio_blocked_since=blocked).end == EndCall("twilio_stalled", 1011, ("twilio",))


def test_openai_stalling_is_judged_the_same_way() -> None:
    bridge, clock = active(limits=Limits(send_stall_s=0.5))
    blocked = clock.now
    clock.now += 0.6
    assert bridge.tick(clock.now, openai_blocked_since=blocked).end == EndCall("openai_stalled", 1011, ("openai",))


def test_a_flood_of_messages_ends_the_call() -> None:
    bridge, clock = active(limits=Limits(flood_window_s=1.0, flood_messages_per_s=100), greeting=None)
    clock.now += 1.0
    assert nothing(bridge.tick(clock.now))  # the window's baseline
    bridge.twilio_messages([wire_media(b64(160))] * 90)  # 90 a second: within the limit
    clock.now += 1.0
    assert nothing(bridge.tick(clock.now))
    bridge.twilio_messages([wire_media(b64(160))] * 150)
    clock.now += 1.0
    assert bridge.tick(clock.now).end == EndCall("twilio_flood", 1008)


def test_caller_audio_far_faster_than_real_time_is_a_flood() -> None:
    bridge, clock = active(limits=Limits(flood_window_s=1.0, flood_audio_ratio=4.0), greeting=None)
    clock.now += 1.0
    bridge.tick(clock.now)
    bridge.twilio_messages([wire_media(b64(160))] * 150)  # 3 s of audio in 1 s: within 4x
    clock.now += 1.0
    assert nothing(bridge.tick(clock.now))
    bridge.twilio_messages([wire_media(b64(8000))] * 5)  # 5 s of audio in 5 messages
    clock.now += 1.0
    assert bridge.tick(clock.now).end == EndCall("twilio_flood", 1008)


def test_too_many_bad_messages_end_the_call() -> None:
    bridge, _ = active(limits=Limits(max_bad_messages=3))
    assert nothing(bridge.twilio_messages(["nope", b"\x00binary"]))
    assert bridge.twilio_messages(["[1]"]).end == EndCall("twilio_protocol_error", 1008)


# -- logs -------------------------------------------------------------------------------


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
        assert nothing(bridge.on_twilio(tw.Unknown(f"novel_{n}")))
    assert nothing(bridge.on_twilio(tw.Unknown("novel_0")))
    assert nothing(bridge.on_twilio(tw.Unknown("forged\ncall.ended reason=caller_hangup")))
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
    # Out of credit mid-call, every response fails (quota failures surface in
    # response.done): the caller would sit in silence, so the fallback must play instead.
    bridge, _clock = active()
    assert bridge.on_openai(_failed_response("insufficient_quota")).end == EndCall("openai_error", 1011)
    assert bridge.state is CallState.ENDED


def test_a_response_failing_for_a_passing_reason_does_not_end_the_call() -> None:
    bridge, _clock = active()
    assert nothing(bridge.on_openai(_failed_response("server_error")))
    assert bridge.state is CallState.ACTIVE
