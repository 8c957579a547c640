"""Every call leaves a record, end to end: a call through the relay (in process, and under gunicorn)
with a tool call, a barge-in and a transfer produces a signed report whose transcript has the
caller's and the assistant's turns in the order they were spoken (the interrupted one cut to what
the caller heard), the tool call, the transfer and the usage; /metrics counts the call, the tool
call by tool and outcome, and how long the tool took."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from scripts.fakes.openai import Script
from tests.e2e.conftest import (
    CALLED,
    CALLER,
    GREETING,
    LINES,
    WORDS,
    Stack,
    greeted,
    heard_in_order,
    speak_then_hold,
)
from tests.helpers import wait_until

E2E = Callable[..., Stack]
VOICE = bytes(0x10 | (i % 7) for i in range(4000))  # half a second of loud voice: no clip's, so described


def grew(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0) - before.get(key, 0)


def test_a_call_with_a_tool_a_barge_in_and_a_transfer_leaves_its_whole_record(e2e: E2E) -> None:
    stack = e2e(Script(then="transfer_call", lines=LINES), tool_mode="slow", tool_delay_s=1.0, tool_timeout_s=5)
    before = stack.metrics()
    caller = stack.call()
    greeted(caller)
    speak_then_hold(caller)
    assert wait_until(lambda: stack.tool.requests, 5)
    assert wait_until(lambda: heard_in_order(caller, LINES.preamble), 2)
    caller.say(VOICE, realtime=False)  # talks over "one moment please..." while the tool runs
    assert wait_until(lambda: caller.result.clears_ms, 2)
    assert caller.closed.wait(8), "the transfer never ended the stream"
    result = caller.finish()
    assert result.ended_by == "assistant"

    report = stack.report(caller)
    assert (report["call_sid"], report["from"], report["to"]) == (caller.target.call_sid, CALLER, CALLED)
    assert report["end_reason"] == "transferred" and report["barge_ins"] == 1 and report["first_audio_ms"] > 0
    turns = report["transcript"]
    assert [(t["role"], t["text"]) for t in turns if not t.get("interrupted")] == [
        ("assistant", GREETING.text), ("caller", WORDS), ("caller", "(caller speech, 0.5 s)"),
        ("assistant", LINES.answer.text), ("assistant", LINES.handover.text)]
    [cut] = [t for t in turns if t.get("interrupted")]
    assert turns.index(cut) == 2, "the interrupted answer sits where it was spoken"
    assert cut["role"] == "assistant" and 0 < cut["heard_ms"] < 1500
    assert LINES.preamble.text.startswith(cut["text"]) and len(cut["text"]) < len(LINES.preamble.text)
    assert [t["at_ms"] for t in turns] == sorted(t["at_ms"] for t in turns)
    [tool] = report["tool_calls"]
    assert tool["name"] == "lookup_order" and tool["ok"] is True and tool["ms"] >= 1000
    transfer = report["transfer"]
    assert (transfer["destination"], transfer["ok"]) == ("sales", True)
    # Both placed among the turns: the tool asked for with the words that announced it (before the
    # tool's answer was spoken), the transfer with the handover.
    answer, handover = turns[-2], turns[-1]
    assert cut["at_ms"] <= tool["at_ms"] < answer["at_ms"] and answer["at_ms"] - tool["at_ms"] >= 1000
    assert handover["at_ms"] <= transfer["at_ms"]
    responses = len(stack.session(caller).sent_of("response.done"))
    usage = report["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (40 * responses, 80 * responses)
    assert usage["input_token_details"]["audio_tokens"] == 10 * responses
    assert usage["transcription"]["total_tokens"] > 0  # the caller's two turns, transcribed
    assert report["voice"] == "marin" and report["model"]

    after = stack.metrics()
    assert grew(before, after, 'liveline_calls_total{end_reason="transferred"}') == 1
    assert grew(before, after, 'liveline_tool_calls_total{outcome="ok",tool="lookup_order"}') == 1
    assert grew(before, after, 'liveline_tool_call_seconds_count{tool="lookup_order"}') == 1
    assert grew(before, after, 'liveline_tool_call_seconds_sum{tool="lookup_order"}') >= 1.0
    assert grew(before, after, "liveline_barge_ins_total") == 1
    assert grew(before, after, "liveline_first_audio_seconds_count") == 1


def test_under_gunicorn_a_tool_call_and_a_hang_up_are_reported_and_counted(e2e: E2E) -> None:
    stack = e2e(Script(lines=LINES), gunicorn=True)
    caller = stack.call()
    greeted(caller)
    speak_then_hold(caller)
    assert caller.closed.wait(15), "the assistant never hung up"
    result = caller.finish()
    assert result.ended_by == "assistant" and [u.kind for u in result.rest_updates] == ["hang_up"]
    assert heard_in_order(caller, LINES.preamble, LINES.answer, LINES.goodbye)
    report = stack.report(caller, timeout_s=10)
    assert report["end_reason"] == "assistant_hangup"
    assert [(t["role"], t["text"]) for t in report["transcript"]] == [
        ("assistant", GREETING.text), ("caller", WORDS), ("assistant", LINES.preamble.text),
        ("assistant", LINES.answer.text), ("assistant", LINES.goodbye.text)]
    assert [(t["name"], t["ok"]) for t in report["tool_calls"]] == [("lookup_order", True)]
    metrics: dict[str, Any] = {}
    assert wait_until(lambda: metrics.update(stack.metrics()) or
                      metrics.get('liveline_calls_total{end_reason="assistant_hangup"}') == 1, 5), metrics
    assert metrics['liveline_tool_calls_total{outcome="ok",tool="lookup_order"}'] == 1
    assert metrics['liveline_tool_call_seconds_count{tool="lookup_order"}'] == 1
    assert metrics["liveline_calls_active"] == 0
    log = stack.relay.log()
    assert re.search(r"tool\.call .*tool=lookup_order outcome=ok status=200", log)
    assert re.search(r"twilio\.rest .*action=complete ok=True status=200", log)
    assert '"order_id"' not in log and WORDS not in log, "arguments or transcripts reached the log"
