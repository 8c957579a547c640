"""One tool call, on loopback against the example tool (scripts/fakes/example_tool.py), which
checks the signature with its own lines: what the tool receives, what the model gets back for
every outcome, and what the log says (never the arguments or the answer)."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from relay.assistant import Assistant, Tool
from relay.tools import MAX_OUTPUT_BYTES, ToolResult, ToolRunner
from scripts.fakes.example_tool import ExampleTool

SECRET = "tool-signing-secret-0123456789abcdef"
CALL_SID = "CA" + "1" * 32
SCHEMA = '{"type":"object","required":["order_id"],"properties":{"order_id":{"type":"string"}}}'


@pytest.fixture
def example() -> Iterator[ExampleTool]:
    tool = ExampleTool(SECRET, delay_s=3).start()
    yield tool
    tool.stop()


def assistant(url: str, timeout_s: float = 2.0) -> Assistant:
    return Assistant(instructions="", greeting="", voice="marin",
                     tools=(Tool("lookup_order", "Look up an order.", url, SCHEMA, timeout_s),))


def run(url: str, arguments: str = '{"order_id": "1001"}', *, runner: ToolRunner | None = None,
        timeout_s: float = 2.0, name: str = "lookup_order") -> ToolResult:
    return (runner or ToolRunner(SECRET)).run(assistant(url, timeout_s), name, call_sid=CALL_SID,
                                              call_id="call_abc", arguments_json=arguments)


def test_a_tool_call_and_what_the_tool_received(example: ExampleTool) -> None:
    result = run(example.url)
    assert result.ok and result.outcome == "ok" and result.status == 200
    assert json.loads(result.output) == {
        "order_id": "1001", "found": True, "status": "shipped", "carrier": "UPS", "expected_delivery": "2026-12-18"}
    assert result.tool == "lookup_order" and result.duration_ms > 0
    [request] = example.requests
    assert request.signature_ok and request.method == "POST" and request.content_type == "application/json"
    assert request.json() == {"call_sid": CALL_SID, "call_id": "call_abc", "tool": "lookup_order",
                              "arguments": {"order_id": "1001"}}


def test_a_business_miss_is_still_an_answer(example: ExampleTool) -> None:
    result = run(example.url, '{"order_id": "9999"}')
    assert result.ok and json.loads(result.output) == {"order_id": "9999", "found": False}


def test_a_wrong_secret_or_a_stale_clock_is_refused_by_the_tool(example: ExampleTool) -> None:
    wrong = run(example.url, runner=ToolRunner("another-secret-0123456789abcdefgh"))
    stale = run(example.url, runner=ToolRunner(SECRET, wall_clock=lambda: time.time() - 600))
    for result in (wrong, stale):
        assert (result.ok, result.outcome, result.status) == (False, "http_error", 401)
        assert json.loads(result.output) == {"error": "lookup_order failed (HTTP 401)"}
    assert [request.signature_ok for request in example.requests] == [False, False]


def test_a_slow_tool_times_out(example: ExampleTool) -> None:
    example.mode = "slow"
    result = run(example.url, timeout_s=0.5)
    assert (result.ok, result.outcome, result.status) == (False, "timeout", None)
    assert json.loads(result.output) == {"error": "lookup_order did not answer within 0.5 seconds"}


def test_an_error_status(example: ExampleTool) -> None:
    example.mode = "error"
    result = run(example.url)
    assert (result.ok, result.outcome, result.status) == (False, "http_error", 500)
    assert "the order database is down" not in result.output


def test_an_answer_over_16_kib_is_an_error_and_16_kib_is_not(example: ExampleTool) -> None:
    assert MAX_OUTPUT_BYTES == 16 * 1024
    example.mode = "oversized"
    example.oversize_bytes = MAX_OUTPUT_BYTES
    whole = run(example.url)
    assert whole.ok and len(whole.output) == MAX_OUTPUT_BYTES
    example.oversize_bytes = MAX_OUTPUT_BYTES + 1
    result = run(example.url)
    assert (result.ok, result.outcome, result.status) == (False, "too_large", 200)
    assert json.loads(result.output) == {"error": "lookup_order answered with more than 16 KiB, too much to use"}


def test_an_empty_answer_tells_the_model_it_worked(example: ExampleTool) -> None:
    example.mode = "empty"
    result = run(example.url)
    assert (result.ok, result.status, result.output) == (True, 204, '{"ok": true}')


def test_a_tool_that_is_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        result = run(f"http://127.0.0.1:{sock.getsockname()[1]}/lookup_order")
    assert (result.ok, result.outcome) == (False, "unreachable")
    assert json.loads(result.output) == {"error": "lookup_order could not be reached"}


@pytest.mark.parametrize("arguments", ['{"order_id": 1001}', "{}", '{"order_id": "1', "[]"])
def test_bad_arguments_never_reach_the_tool(example: ExampleTool, arguments: str) -> None:
    result = run(example.url, arguments)
    assert (result.ok, result.outcome, result.status) == (False, "bad_arguments", None)
    assert json.loads(result.output)["error"]
    assert example.requests == []


def test_a_tool_the_assistant_does_not_have(example: ExampleTool) -> None:
    result = run(example.url, name="delete_everything")
    assert (result.ok, result.outcome, result.tool) == (False, "unknown_tool", "(unknown)")
    assert json.loads(result.output) == {"error": "there is no tool named 'delete_everything'"}
    assert example.requests == []


def test_the_log_names_the_tool_and_outcome_never_arguments_or_answers(
        example: ExampleTool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="relay.tools")
    run(example.url, '{"order_id": "1002"}')
    example.mode = "error"
    run(example.url, '{"order_id": "1003"}')
    run(example.url, '{"order_id": 1004}')
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith("tool.call tool=lookup_order outcome=ok status=200 duration_ms=")
    assert lines[1].startswith("tool.call tool=lookup_order outcome=http_error status=500 duration_ms=")
    assert lines[2].startswith("tool.call tool=lookup_order outcome=bad_arguments status=- duration_ms=")
    for private in ("1002", "1003", "1004", "processing", "delivered", "database"):
        assert private not in caplog.text
