"""Tools, hang-up, transfer, the time limit's goodbye and keypad digits, through the bridge. Pure."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass

import pytest

from relay import openai_protocol as oai
from relay import stream_token
from relay import twilio_protocol as tw
from relay.actions import Actions, EndCall, RunTool, ToolRefused, UpdateCall
from relay.assistant import Assistant, Tool
from relay.bridge import CallBridge, CallState
from relay.call_settings import BridgeSettings, persona
from relay.conversation import GOODBYE_INSTRUCTIONS
from relay.limits import Limits
from relay.log import CallLog
from relay.replay_guard import ReplayGuard
from tests.helpers import Clock

SECRET = "s" * 40
CALL = "CA" + "1" * 32
STREAM = "MZ" + "2" * 32
ACCOUNT = "AC" + "3" * 32
ORDER_SCHEMA = json.dumps({"type": "object", "required": ["order_id"], "additionalProperties": False,
                           "properties": {"order_id": {"type": "string", "pattern": "^[0-9]+$"}}})
LOOKUP = Tool("lookup_order", "Look up an order.", "https://tools.example.com/orders", ORDER_SCHEMA)
DESTINATIONS = (("sales", "+15550100001"), ("desk", "sip:desk@pbx.example.com"))
LIMITS = Limits(dtmf_pause_s=1.5, goodbye_s=10.0, rest_timeout_s=15.0, hangup_confirm_s=5.0)


@dataclass
class Result:
    """What relay/tools.py returns for one tool call."""

    ok: bool
    output: str
    outcome: str = "ok"
    duration_ms: float = 12.0


def make(**assistant: object) -> tuple[CallBridge, Clock]:
    values: dict[str, object] = dict(instructions="Help.", greeting="", voice="marin", tools=(LOOKUP,),
                                     transfer_destinations=DESTINATIONS)
    values.update(assistant)
    settings = BridgeSettings(stream_token_secret=SECRET, personas={"": persona(Assistant(**values))},  # type: ignore[arg-type]
                              start_timeout_s=5, session_timeout_s=8, max_call_s=600)
    clock = Clock()
    bridge = CallBridge(settings, LIMITS, monotonic=clock.monotonic, wall=clock.wall, replay_guard=ReplayGuard(),
                        log=CallLog(logging.getLogger("test"), "t"))
    token = stream_token.mint(SECRET, CALL, clock.wall(), 300)
    bridge.on_twilio(tw.Start.of(STREAM, CALL, {stream_token.PARAMETER_NAME: token}, ACCOUNT))
    bridge.upstream_open()
    bridge.on_openai(oai.SessionUpdated.of("audio/pcmu", "audio/pcmu"))
    assert bridge.state is CallState.ACTIVE
    return bridge, clock


def created(bridge: CallBridge, rid: str = "resp_1") -> Actions:
    return bridge.on_openai(oai.parse(json.dumps({"type": "response.created", "response": {"id": rid}})))


def done(bridge: CallBridge, rid: str = "resp_1", status: str = "completed") -> Actions:
    return bridge.on_openai(oai.parse(json.dumps({"type": "response.done", "response": {"id": rid, "status": status}})))


def call(bridge: CallBridge, name: str, arguments: str, call_id: str = "call_1") -> Actions:
    return bridge.on_openai(oai.FunctionCallDone(call_id=call_id, name=name, arguments=arguments,
                                                 response_id="resp_1", item_id="item_f"))


def speak(bridge: CallBridge, item: str = "item_a", n_bytes: int = 800) -> list[str]:
    """The assistant says ``n_bytes`` of audio; the names of the marks sent after it."""
    delta = oai.AudioDelta(item_id=item, delta=base64.b64encode(bytes(n_bytes)).decode(), response_id="r")
    return [json.loads(t)["mark"]["name"] for t in bridge.on_openai(delta).to_twilio if '"mark"' in t]


def played(bridge: CallBridge, *names: str) -> None:
    for name in names:
        bridge.on_twilio(tw.Mark.of(STREAM, name))


def events(actions: Actions) -> list[dict[str, object]]:
    return [json.loads(text) for text in actions.to_openai]


def media(bridge: CallBridge) -> Actions:
    return bridge.on_twilio(tw.Media.of(STREAM, "/////w=="))


def stop(bridge: CallBridge) -> Actions:
    return bridge.on_twilio(tw.Stop.of(STREAM, CALL))


# -- tools ---------------------------------------------------------------------------------


def test_a_tool_call_runs_and_its_output_is_spoken_once_the_response_is_done() -> None:
    bridge, _ = make()
    created(bridge)
    actions = call(bridge, "lookup_order", '{"order_id": "42"}')
    assert actions.effects == [RunTool("call_1", "lookup_order", '{"order_id": "42"}')] and not actions.to_openai
    assert not done(bridge)  # the tool is still running: nothing to say yet
    answered = bridge.tool_done("call_1", Result(True, '{"status": "shipped"}'))
    assert events(answered) == [
        {"type": "conversation.item.create",
         "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"status": "shipped"}'}},
        {"type": "response.create"}]


def test_a_tool_that_answers_before_the_response_ends_waits_for_it() -> None:
    bridge, _ = make()
    created(bridge)
    call(bridge, "lookup_order", '{"order_id": "42"}')
    assert not bridge.tool_done("call_1", Result(True, "{}"))  # a response.create now would be refused
    assert [e["type"] for e in events(done(bridge))] == ["conversation.item.create", "response.create"]


def test_two_calls_in_one_response_get_one_response_create() -> None:
    bridge, _ = make()
    created(bridge)
    call(bridge, "lookup_order", '{"order_id": "1"}', "call_1")
    call(bridge, "lookup_order", '{"order_id": "2"}', "call_2")
    done(bridge)
    assert not bridge.tool_done("call_2", Result(True, '"two"'))
    sent = events(bridge.tool_done("call_1", Result(True, '"one"')))
    assert [e["type"] for e in sent] == ["conversation.item.create"] * 2 + ["response.create"]


@pytest.mark.parametrize(("name", "arguments", "error", "counted"), [
    ("lookup_order", '{"order_id": "forty-two"}', "invalid arguments for lookup_order at $.order_id",
     ToolRefused("lookup_order", "bad_arguments")),
    ("lookup_order", '{"order_id": "1", "pin": "1234"}', "invalid arguments for lookup_order",
     ToolRefused("lookup_order", "bad_arguments")),
    ("lookup_order", "{not json", "the arguments for lookup_order are not valid JSON",
     ToolRefused("lookup_order", "bad_arguments")),
    ("lookup_order", "[1]", "must be a JSON object", ToolRefused("lookup_order", "bad_arguments")),
    ("delete_everything", "{}", "there is no tool called delete_everything", ToolRefused("(unknown)", "unknown_tool")),
])
def test_bad_calls_are_answered_to_the_model_without_calling_any_url(name: str, arguments: str, error: str,
                                                                     counted: ToolRefused) -> None:
    bridge, _ = make()
    created(bridge)
    assert call(bridge, name, arguments).effects == [counted]  # counted, and nothing to run
    sent = events(done(bridge))
    output = json.loads(sent[0]["item"]["output"])  # type: ignore[index]
    assert error in output["error"] and sent[1] == {"type": "response.create"}
    assert bridge.conversation is not None and bridge.conversation.tool_calls[0]["ok"] is False


def test_a_failing_tool_is_told_to_the_model() -> None:
    bridge, _ = make()
    created(bridge)
    call(bridge, "lookup_order", '{"order_id": "42"}')
    done(bridge)
    sent = events(bridge.tool_done("call_1", Result(False, '{"error": "the tool timed out after 5 s"}', "timeout")))
    assert json.loads(sent[0]["item"]["output"]) == {"error": "the tool timed out after 5 s"}  # type: ignore[index]
    assert bridge.conversation is not None and bridge.conversation.tool_calls == [
        {"name": "lookup_order", "ok": False, "ms": 12, "outcome": "timeout", "at": 1000.0}]


def test_audio_flows_and_barge_in_works_while_a_tool_runs() -> None:
    bridge, _ = make()
    created(bridge)
    call(bridge, "lookup_order", '{"order_id": "42"}')
    marks = speak(bridge)  # "let me look that up..."
    done(bridge)
    assert events(media(bridge))[0]["type"] == "input_audio_buffer.append"
    barge = bridge.on_openai(oai.SpeechStarted("item_u", 0))
    assert [e["type"] for e in events(barge)] == ["conversation.item.truncate"]
    played(bridge, *marks)
    created(bridge, "resp_2")  # the caller's turn, answered while the tool still runs
    assert not bridge.tool_done("call_1", Result(True, "{}"))  # waits for that answer to end
    assert [e["type"] for e in events(done(bridge, "resp_2"))] == ["conversation.item.create", "response.create"]


def test_a_hang_up_during_a_tool_call_ends_the_call_and_the_late_answer_is_dropped() -> None:
    bridge, _ = make()
    created(bridge)
    call(bridge, "lookup_order", '{"order_id": "42"}')
    assert stop(bridge).end == EndCall("caller_hangup", 1000)
    assert not bridge.tool_done("call_1", Result(True, "{}"))


def test_a_refused_response_create_is_asked_again_when_the_other_response_ends() -> None:
    bridge, _ = make()
    created(bridge)
    call(bridge, "lookup_order", '{"order_id": "42"}')
    done(bridge)
    bridge.tool_done("call_1", Result(True, "{}"))  # outputs + response.create sent
    refused = oai.ErrorEvent.of("invalid_request_error", "conversation_already_has_active_response", "busy")
    assert not bridge.on_openai(refused)
    created(bridge, "resp_vad")
    assert events(done(bridge, "resp_vad")) == [{"type": "response.create"}]


# -- the assistant hangs up --------------------------------------------------------------------


def test_end_call_lets_the_goodbye_play_out_then_completes_the_call() -> None:
    bridge, clock = make()
    created(bridge)
    marks = speak(bridge)  # "goodbye!"
    assert not call(bridge, "end_call", '{"reason": "the caller said goodbye"}')
    assert not media(bridge).to_openai, "no new turn may start once the call is ending"
    assert not done(bridge).effects  # the goodbye is still playing at Twilio
    clock.now += 0.25
    assert not bridge.tick(clock.now).effects
    played(bridge, *marks)
    clock.now += 0.25
    assert bridge.tick(clock.now).effects == [UpdateCall(ACCOUNT, CALL, None)]
    assert not bridge.update_done(True)
    assert stop(bridge).end == EndCall("assistant_hangup", 1000)  # Twilio completed it: no fallback


def test_end_call_goes_ahead_if_the_marks_never_come_back() -> None:
    bridge, clock = make()
    created(bridge)
    speak(bridge)
    call(bridge, "end_call", '{"reason": "done"}')
    done(bridge)
    clock.now += 9.9
    assert not bridge.tick(clock.now).effects
    clock.now += 0.2
    assert bridge.tick(clock.now).effects == [UpdateCall(ACCOUNT, CALL, None)]


def test_a_failed_hang_up_closes_the_stream_so_the_fallback_plays() -> None:
    bridge, _ = make()
    # No reason given (a hang-up is never refused for its arguments), nothing playing: at once.
    assert call(bridge, "end_call", "{}").effects == [UpdateCall(ACCOUNT, CALL, None)]
    assert bridge.update_done(False).end == EndCall("assistant_hangup_failed", 1000)


def test_if_twilio_never_stops_the_stream_the_relay_closes_it() -> None:
    bridge, clock = make()
    call(bridge, "end_call", '{"reason": "done"}')
    clock.now += 0.25
    bridge.tick(clock.now)
    bridge.update_done(True)
    clock.now += 4.9
    assert not bridge.tick(clock.now)
    clock.now += 0.2
    assert bridge.tick(clock.now).end == EndCall("assistant_hangup", 1000)


def test_a_rest_call_that_never_answers_counts_as_failed() -> None:
    bridge, clock = make()
    call(bridge, "end_call", '{"reason": "done"}')
    clock.now += 0.25
    bridge.tick(clock.now)
    clock.now += 15.1
    assert bridge.tick(clock.now).end == EndCall("assistant_hangup_failed", 1000)


def test_end_call_disabled_is_an_unknown_tool() -> None:
    bridge, _ = make(end_call_enabled=False)
    created(bridge)
    assert call(bridge, "end_call", "{}").effects == [ToolRefused("(unknown)", "unknown_tool")]
    assert "there is no tool called end_call" in done(bridge).to_openai[0]


# -- transfer ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "number"), DESTINATIONS)
def test_transfer_dials_the_configured_destination_after_the_words_play(name: str, number: str) -> None:
    bridge, clock = make()
    created(bridge)
    marks = speak(bridge)
    call(bridge, "transfer_call", json.dumps({"destination": name}))
    done(bridge)
    played(bridge, *marks)
    clock.now += 0.25
    assert bridge.tick(clock.now).effects == [UpdateCall(ACCOUNT, CALL, number)]
    bridge.update_done(True)
    assert stop(bridge).end == EndCall("transferred", 1000)


def test_a_destination_that_is_not_configured_is_refused_to_the_model() -> None:
    bridge, _ = make()
    created(bridge)
    assert not call(bridge, "transfer_call", '{"destination": "+15559999999"}').effects
    assert "invalid arguments for transfer_call" in done(bridge).to_openai[0]
    assert events(media(bridge))  # the call goes on


def test_a_failed_transfer_is_told_to_the_model_and_the_call_goes_on() -> None:
    bridge, clock = make()
    call(bridge, "transfer_call", '{"destination": "sales"}')
    clock.now += 0.25
    bridge.tick(clock.now)
    sent = events(bridge.update_done(False))
    assert "could not be placed" in json.loads(sent[0]["item"]["output"])["error"]  # type: ignore[index]
    assert sent[1] == {"type": "response.create"}
    assert events(media(bridge))[0]["type"] == "input_audio_buffer.append"
    assert stop(bridge).end == EndCall("caller_hangup", 1000)


def test_no_destinations_no_transfer_tool() -> None:
    bridge, _ = make(transfer_destinations=())
    created(bridge)
    call(bridge, "transfer_call", '{"destination": "sales"}')
    assert "there is no tool called transfer_call" in done(bridge).to_openai[0]


# -- the relay's own time limit ------------------------------------------------------------------


def test_the_time_limit_says_goodbye_then_completes_the_call() -> None:
    bridge, clock = make()
    created(bridge)
    speak(bridge)
    clock.now += 601
    limit = bridge.tick(clock.now)
    assert events(limit) == [{"type": "response.cancel"}] and limit.end is None  # mid-sentence: stop it first
    goodbye = done(bridge, status="cancelled")
    assert events(goodbye) == [{"type": "response.create", "response": {"instructions": GOODBYE_INSTRUCTIONS}}]
    created(bridge, "resp_bye")
    bridge.on_twilio(tw.Mark.of(STREAM, "1"))
    marks = speak(bridge, "item_bye")
    done(bridge, "resp_bye")
    played(bridge, *marks)
    clock.now += 0.25
    assert bridge.tick(clock.now).effects == [UpdateCall(ACCOUNT, CALL, None)]
    bridge.update_done(True)
    assert stop(bridge).end == EndCall("max_call_length", 1000)


def test_the_time_limit_on_a_quiet_line_says_goodbye_at_once() -> None:
    bridge, clock = make()
    clock.now += 601
    assert events(bridge.tick(clock.now)) == [
        {"type": "response.create", "response": {"instructions": GOODBYE_INSTRUCTIONS}}]


# -- keypad ------------------------------------------------------------------------------------------


def dtmf(bridge: CallBridge, digit: str) -> Actions:
    return bridge.on_twilio(tw.parse(json.dumps({"event": "dtmf", "streamSid": STREAM,
                                                 "dtmf": {"track": "inbound_track", "digit": digit}})))


def test_digits_are_gathered_until_hash_then_given_to_the_model() -> None:
    bridge, _ = make()
    assert not dtmf(bridge, "4")
    assert not dtmf(bridge, "2")
    sent = events(dtmf(bridge, "#"))
    assert sent == [{"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "The caller pressed 4 2 # on the phone's keypad."}]}},
        {"type": "response.create"}]


def test_digits_are_sent_after_a_pause() -> None:
    bridge, clock = make()
    dtmf(bridge, "1")
    clock.now += 1.4
    assert not bridge.tick(clock.now)
    clock.now += 0.2
    assert "The caller pressed 1 on" in bridge.tick(clock.now).to_openai[0]


def test_digits_while_the_assistant_speaks_wait_for_its_turn_to_end() -> None:
    bridge, _ = make()
    created(bridge)
    sent = events(dtmf(bridge, "#"))
    assert [e["type"] for e in sent] == ["conversation.item.create"]  # the item, but no response yet
    assert events(done(bridge)) == [{"type": "response.create"}]


def test_digits_are_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bridge, _ = make()
    for digit in "9137#":
        dtmf(bridge, digit)
    assert "9137" not in caplog.text and "9 1 3 7" not in caplog.text and "digits=5" in caplog.text


def test_a_key_that_is_not_a_key_is_ignored() -> None:
    bridge, _ = make()
    assert not dtmf(bridge, "forged text")
    assert not dtmf(bridge, "")
