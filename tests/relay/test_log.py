"""The relay's log lines, text and JSON: the same fields, and no peer can split or forge one.

Formatters are fed real LogRecords (through a real logger and the CallLog adapter) and
write to a StringIO; ``configure()`` is exercised on the ``relay`` logger and put back.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from relay import log as relay_log
from relay.log import CallLog, JsonFormatter, TextFormatter, configure

CALL = "CA" + "0123456789abcdef" * 2
STREAM = "MZ" + "fedcba9876543210" * 2
# What a peer would slip into a value to start a line of its own.
FORGED = "\r\n2026-01-01T00:00:00.000Z WARNING relay.bridge call.rejected reason=forged"
LINE_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]]]:
    """A logger of our own, its output captured; the formatter is set by each test."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    test_logger = logging.getLogger("relay.test_log")
    test_logger.addHandler(handler)
    test_logger.setLevel(logging.DEBUG)
    test_logger.propagate = False
    yield test_logger, out, handler
    test_logger.removeHandler(handler)
    test_logger.propagate = True


@pytest.fixture
def relay_logger_restored() -> Iterator[None]:
    """configure() changes the ``relay`` logger: put it back as it was."""
    root = logging.getLogger("relay")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    root.propagate = saved[2]


def call_log(test_logger: logging.Logger, bound: bool = True) -> CallLog:
    call = CallLog(test_logger, "812-4")
    if bound:
        call.bind(CALL, STREAM)
    return call


def test_text_lines_are_as_before(logger: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    test_logger, out, handler = logger
    handler.setFormatter(TextFormatter())
    call_log(test_logger).info("call.ended %s", "reason=caller_hangup duration_s=10.022")

    (line,) = out.getvalue().splitlines()
    assert LINE_START.match(line)
    assert line.endswith(f" INFO relay.test_log call.ended conn=812-4 call_sid={CALL} stream_sid={STREAM} "
                         f"reason=caller_hangup duration_s=10.022")


@pytest.mark.parametrize("formatter", [TextFormatter, JsonFormatter])
def test_no_value_can_split_or_begin_a_line(
    logger: tuple[logging.Logger, io.StringIO, logging.Handler], formatter: type[logging.Formatter]
) -> None:
    test_logger, out, handler = logger
    handler.setFormatter(formatter())
    nasty = f"x{FORGED}\x00\x1b[31m\x7f\x85\u2028\u2029\v\f\x1c\x1d\x1e end"
    call_log(test_logger, bound=False).warning("twilio.connected protocol=%s", nasty)
    call_log(test_logger).warning("openai.error message=%r", nasty)

    text = out.getvalue()
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 3, text  # two records, two lines
    for line in lines[:2]:
        assert line.splitlines() == [line]  # no separator Python (or a log shipper) would split on
        assert "\r" not in line and not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in line)
        if formatter is TextFormatter:
            assert "\\r\\n2026-01-01T00:00:00.000Z WARNING" in line  # escaped, still readable
        else:  # the whole peer text is one value: it adds no field of its own
            record = json.loads(line)
            value = record.get("protocol", record.get("message"))
            assert value.startswith("x\\r\\n2026-01-01T00:00:00.000Z WARNING relay.bridge call.rejected reason=forged")
            assert "reason" not in record


def test_a_traceback_follows_on_indented_lines(logger: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    test_logger, out, handler = logger
    handler.setFormatter(TextFormatter())
    try:
        raise ValueError("peer said" + FORGED)
    except ValueError:
        call_log(test_logger).exception("call.internal_error side=twilio")

    first, *rest = out.getvalue().splitlines()
    assert LINE_START.match(first) and first.endswith("call.internal_error conn=812-4 "
                                                      f"call_sid={CALL} stream_sid={STREAM} side=twilio")
    assert rest and all(line.startswith("  ") for line in rest)  # the forged "line" too: never a record
    assert any(line.endswith("ValueError: peer said\\r") for line in rest)


def test_json_lines_carry_the_same_fields(logger: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    test_logger, out, handler = logger
    handler.setFormatter(JsonFormatter())
    call = call_log(test_logger)
    call.info("call.ended %s", "reason=caller_hangup duration_s=10.022 frames_from_caller=512 first_audio_ms=None")
    call.warning("openai.closed code=%s reason=%r", 1011, "it's gone")
    call.warning("call.rejected reason=invalid_start detail=%.200s", "invalid start message: Expected `str`")
    test_logger.info("relay.draining live_calls=%d", 3)

    ended, closed, rejected, draining = (json.loads(line) for line in out.getvalue().splitlines())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ended.pop("time"))
    assert ended == {"level": "INFO", "logger": "relay.test_log", "event": "call.ended", "conn": "812-4",
                     "call_sid": CALL, "stream_sid": STREAM, "reason": "caller_hangup", "duration_s": 10.022,
                     "frames_from_caller": 512, "first_audio_ms": "None"}
    assert closed["code"] == 1011 and closed["reason"] == "it's gone" and closed["level"] == "WARNING"
    assert rejected["detail"] == "invalid start message: Expected `str`"
    assert draining["event"] == "relay.draining" and draining["live_calls"] == 3 and "conn" not in draining


def test_json_text_inside_a_value_cannot_replace_the_calls_ids(
    logger: tuple[logging.Logger, io.StringIO, logging.Handler]
) -> None:
    test_logger, out, handler = logger
    handler.setFormatter(JsonFormatter())
    call_log(test_logger).warning("openai.invalid_event detail=%s", "bad call_sid=CAforged level=DEBUG event=x")
    call_log(test_logger, bound=False).warning("twilio.unknown_event event=%r", "x conn=1 call_sid=CAforged")

    bound, unbound = (json.loads(line) for line in out.getvalue().splitlines())
    assert (bound["call_sid"], bound["level"], bound["event"]) == (CALL, "WARNING", "openai.invalid_event")
    assert bound["detail"] == "bad call_sid=CAforged level=DEBUG event=x"
    assert "call_sid" not in unbound and unbound["conn"] == "812-4" and unbound["event"] == "twilio.unknown_event"


def test_json_values_decoded_from_repr_stay_escaped(
    logger: tuple[logging.Logger, io.StringIO, logging.Handler]
) -> None:
    test_logger, out, handler = logger
    handler.setFormatter(JsonFormatter())
    call_log(test_logger).warning("openai.error message=%r other=%s", "a\nb", "c\nd")

    (record,) = (json.loads(line) for line in out.getvalue().splitlines())
    assert record["message"] == "a\\nb" and record["other"] == "c\\nd"


def test_json_reads_a_line_whose_arguments_do_not_line_up_as_text(
    logger: tuple[logging.Logger, io.StringIO, logging.Handler]
) -> None:
    test_logger, out, handler = logger
    handler.setFormatter(JsonFormatter())
    test_logger.info("relay.stats calls=%(calls)d share=%(share)s", {"calls": 3, "share": "half"})
    test_logger.info("relay.literal ratio=50%d")  # no arguments: logging leaves the text as it is

    mapped, literal = (json.loads(line) for line in out.getvalue().splitlines())
    assert mapped["calls"] == 3 and mapped["share"] == "half"
    assert literal["ratio"] == "50%d"


def test_json_tracebacks_are_a_field(logger: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    test_logger, out, handler = logger
    handler.setFormatter(JsonFormatter())
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        call_log(test_logger).exception("call.internal_error side=openai")

    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["side"] == "openai" and "RuntimeError: boom" in record["exc_info"]


@pytest.mark.parametrize(("log_format", "parse"), [("text", str.strip), ("json", json.loads)])
def test_configure_applies_the_format_to_the_relay_logger(
    relay_logger_restored: None, log_format: str, parse: object
) -> None:
    out = io.StringIO()
    configure("INFO", log_format, stream=out)
    configure("INFO", log_format, stream=out)  # twice: still one handler
    logging.getLogger("relay.server").info("relay.draining live_calls=%d", 0)
    logging.getLogger("relay.server").debug("not at INFO")

    (line,) = out.getvalue().splitlines()
    if log_format == "json":
        assert json.loads(line)["event"] == "relay.draining"
    else:
        assert LINE_START.match(line) and line.endswith(" INFO relay.server relay.draining live_calls=0")


def test_configure_refuses_an_unknown_format(relay_logger_restored: None) -> None:
    with pytest.raises(ValueError):
        relay_log.configure("INFO", "xml")


def test_json_keeps_a_lines_own_event_field_beside_the_event_name(
    logger: tuple[logging.Logger, io.StringIO, logging.Handler]
) -> None:
    test_logger, out, handler = logger
    handler.setFormatter(JsonFormatter())
    call_log(test_logger).warning("twilio.unknown_event event=%r", "hangup_soon")

    (record,) = (json.loads(line) for line in out.getvalue().splitlines())
    assert record["event"] == "twilio.unknown_event" and record["event_field"] == "hangup_soon"
