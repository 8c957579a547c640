"""Tools end to end: the model calls lookup_order after the caller's first words, the relay asks the
example tool (signed), and the model speaks what came back; every way a tool fails is told to
the model, which says so, and a tool never holds up the call's audio or another call."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from scripts.fakes.openai import Script
from tests.e2e.conftest import (
    LINES,
    SLOW_LINE,
    Stack,
    greeted,
    heard_in_order,
    output_document,
    outputs,
    speak_then_hold,
)
from tests.helpers import wait_until

E2E = Callable[..., Stack]


def test_the_model_speaks_the_answer_of_the_tool_it_called(e2e: E2E) -> None:
    stack = e2e(Script(then=None, lines=LINES))
    caller = stack.call()
    greeted(caller)
    speak_then_hold(caller)
    assert wait_until(lambda: stack.tool.requests, 5), "the tool was never called"
    [request] = stack.tool.requests
    session = stack.session(caller)
    [call] = session.sent_of("response.function_call_arguments.done")
    assert request.signature_ok and request.content_type == "application/json"
    assert request.json() == {"call_sid": caller.target.call_sid, "call_id": call["call_id"],
                              "tool": "lookup_order", "arguments": {"order_id": "1001"}}
    assert output_document(session) == {"order_id": "1001", "found": True, "status": "shipped", "carrier": "UPS",
                                        "expected_delivery": "2026-12-18"}
    kinds = session.types()
    created = kinds.index("conversation.item.create")
    assert kinds[created + 1] == "response.create", "the output is followed by a request to speak"
    assert wait_until(lambda: heard_in_order(caller, LINES.preamble, LINES.answer), 5), "the answer was not spoken"
    result = caller.finish()
    assert result.ended_by == "caller" and result.rest_updates == []


FAILURES = {
    "slow": ("slow", {"error": "lookup_order did not answer within 0.5 seconds"}, "timeout"),
    "error": ("error", {"error": "lookup_order failed (HTTP 500)"}, "http_error"),
    "oversized": ("oversized", {"error": "lookup_order answered with more than 16 KiB, too much to use"}, "too_large"),
    "down": ("down", {"error": "lookup_order could not be reached"}, "unreachable"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failing_tool_is_told_to_the_model_which_says_so(e2e: E2E, case: str) -> None:
    mode, told, outcome = FAILURES[case]
    stack = e2e(Script(then=None, lines=LINES), tool_mode="normal" if mode == "down" else mode,
                tool_timeout_s=0.5)
    if mode == "down":
        stack.tool.stop()  # its port is closed: nothing listens there any more
    before = stack.metrics()  # in process, the metrics are the whole test run's: count what this call adds
    caller = stack.call()
    greeted(caller)
    speak_then_hold(caller)
    session = stack.session(caller)
    assert output_document(session) == told
    assert wait_until(lambda: heard_in_order(caller, LINES.sorry), 5), "the model did not say it could not"
    assert not heard_in_order(caller, LINES.answer)
    key = f'liveline_tool_calls_total{{outcome="{outcome}",tool="lookup_order"}}'
    assert stack.metrics().get(key, 0) - before.get(key, 0) == 1
    caller.finish()
    report = stack.report(caller)
    [entry] = report["tool_calls"]
    assert entry["name"] == "lookup_order" and entry["ok"] is False


@pytest.mark.parametrize("arguments", ['{"order_id": 1001}', '{"order_id": "10a"}', "order 1001"])
def test_bad_arguments_are_answered_to_the_model_and_the_url_is_never_called(e2e: E2E, arguments: str) -> None:
    stack = e2e(Script(then=None, arguments=arguments, lines=LINES))
    before = stack.metrics()
    caller = stack.call()
    greeted(caller)
    speak_then_hold(caller)
    told = output_document(stack.session(caller))
    assert set(told) == {"error"} and told["error"]
    assert wait_until(lambda: heard_in_order(caller, LINES.sorry), 5)
    assert stack.tool.requests == [], "arguments that do not fit the schema reached the tool"
    key = 'liveline_tool_calls_total{outcome="bad_arguments",tool="lookup_order"}'
    assert stack.metrics().get(key, 0) - before.get(key, 0) == 1, "a refused call is a tool call too"


def test_audio_flows_both_ways_and_barge_in_works_while_a_tool_runs(e2e: E2E) -> None:
    stack = e2e(Script(then=None, lines=LINES), tool_mode="slow", tool_delay_s=1.5, tool_timeout_s=5)
    caller = stack.call()
    greeted(caller)
    speak_then_hold(caller)
    assert wait_until(lambda: stack.tool.requests, 5)
    asked = time.monotonic()
    session = stack.session(caller)
    appended_then = len(session.appended)
    # The preamble (1.5 s) is still playing at Twilio: the caller talks over it.
    assert wait_until(lambda: heard_in_order(caller, LINES.preamble), 2)
    caller.say(bytes(0x10 | (i % 7) for i in range(4000)), realtime=False)  # half a second of loud voice
    assert wait_until(lambda: caller.result.clears_ms, 2), "no barge-in (clear) while the tool ran"
    assert not outputs(session), "the barge-in came after the tool had answered: nothing was proven"
    [truncate] = [e for e in session.events if e.get("type") == "conversation.item.truncate"]
    preamble_item = session.sent_of("response.output_item.added")[1]["item"]["id"]
    assert truncate["item_id"] == preamble_item and 0 < truncate["audio_end_ms"] < 1500
    assert wait_until(lambda: outputs(session), 5)
    answered = time.monotonic()
    # Caller audio kept reaching the model while the tool ran (the phone sends 50 frames a second).
    assert len(session.appended) - appended_then >= 25 * (answered - asked)
    assert wait_until(lambda: heard_in_order(caller, LINES.answer), 5), "the answer came after the barge-in"
    assert json.loads(outputs(session)[0]["output"])["found"] is True


def test_a_caller_who_hangs_up_during_a_tool_call_ends_it_at_once(e2e: E2E) -> None:
    stack = e2e(Script(then=None, lines=LINES), tool_mode="slow", tool_delay_s=3.0, tool_timeout_s=5)
    caller = stack.call()
    greeted(caller)
    speak_then_hold(caller)
    assert wait_until(lambda: stack.tool.requests, 5)
    session = stack.session(caller)
    hung_up = time.monotonic()
    result = caller.finish()
    assert result.close_code == 1000
    assert wait_until(lambda: not stack.relay.app.registry.calls, 2), "the call waited for its tool"
    assert time.monotonic() - hung_up < 2.0
    assert wait_until(lambda: session.closed_at is not None, 2), "the Realtime session outlived the call"
    assert outputs(session) == [], "a late answer went to a model whose call was over"
    report = stack.report(caller)
    assert report["end_reason"] == "caller_hangup" and report["tool_calls"] == []


def test_a_slow_tool_on_one_call_never_holds_up_another(e2e: E2E) -> None:
    stack = e2e(Script(then=None, lines=LINES), tool_delay_s=3.0, tool_timeout_s=5, slow_line=True)
    waiting = stack.call(SLOW_LINE)  # its lookup_order is the slow one
    greeted(waiting)
    speak_then_hold(waiting)
    assert wait_until(lambda: stack.session(waiting).sent_of("response.function_call_arguments.done"), 5)
    asked = time.monotonic()
    other = stack.call()  # the default assistant's lookup_order answers at once
    greeted(other)
    speak_then_hold(other)
    assert wait_until(lambda: heard_in_order(other, LINES.answer), 5), "the other call's tool answer never came"
    assert time.monotonic() - asked < 2.5
    assert outputs(stack.session(waiting)) == [], "the slow tool answered already: nothing was proven"
    assert [r.json()["call_sid"] for r in stack.tool.requests] == [other.target.call_sid]
    assert wait_until(lambda: heard_in_order(waiting, LINES.answer), 5)
