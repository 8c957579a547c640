r"""Structured logging: one line per lifecycle event, as text (the default) or JSON.

``configure()`` is called once, by ``relay/wsgi.py``, with ``RELAY_LOG_LEVEL`` and
``RELAY_LOG_FORMAT``; library modules only ever call ``logging.getLogger(__name__)``.
Per-call lines go through a CallLog adapter that puts ``conn=...`` and, once the stream
token has verified, ``call_sid=... stream_sid=...`` after the event name (contextvars do
not follow gevent's spawned greenlets, so the adapter is passed along).

``text``::

    2026-05-01T12:00:00.123Z INFO relay.live_call call.ended conn=812-4 call_sid=CA… reason=caller_hangup

``json``: one object per line with the same fields: ``time``, ``level``, ``logger``,
``event``, the call's ids (``conn``, ``call_sid``, ``stream_sid``), then every
``key=value`` of the line. Keys come from the logging call's format string and each value
is exactly one of its arguments (a number or ``None`` as such, a ``%r`` string as the
string), so no text inside a value can add a field. A lone ``%s`` of ``key=value`` pairs
our code joined (the call summary) is read as text: numbers become numbers, and words
after a value with no ``key=`` of their own extend it. A key that repeats one already set
never replaces it (``event=`` beside the event name becomes ``event_field``). A
traceback is the ``exc_info`` field.

Log injection: peers choose much of what we log (event names, error texts, SIDs before
they are checked). Every record's message is escaped before either format writes it:
control characters (CR, LF and the rest of C0, DEL, C1) and the Unicode line and
paragraph separators become ``\n``, ``\r``, ``\t``, ``\xNN`` or ``\uNNNN``, so one
record is one line and nothing a peer sends can begin a line of its own. In text, a
traceback (our bug, not a peer's words) follows on lines indented by two spaces, escaped
the same way.

Never log audio payloads or secrets: log counts, sizes and ids.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import IO, Any

_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s"
_DATEFMT = "%Y-%m-%dT%H:%M:%S"
FORMATS = ("text", "json")

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# One field of a line: key=value (a repr-quoted string or a bare word), or a lone word.
_FIELD = re.compile(r"""\s*(?:([A-Za-z_][\w.]*)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S*)|(\S+))""")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(text: str) -> str:
    """``text`` with every character that could break or begin a line shown as an escape."""
    return _CONTROL.sub(_escape_one, text)


class TextFormatter(logging.Formatter):
    """``time level logger message``, UTC, escaped to one line (plus an indented traceback)."""

    def __init__(self) -> None:
        super().__init__(_FORMAT, datefmt=_DATEFMT)
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        """One line per record; a traceback on indented lines after it."""
        record.message = escape_controls(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        blocks = []
        if record.exc_info:
            blocks.append(self.formatException(record.exc_info))
        if record.stack_info:
            blocks.append(self.formatStack(record.stack_info))
        for block in blocks:
            line += "".join("\n  " + escape_controls(part) for part in block.split("\n"))
        return line


def _value(raw: str) -> Any:
    if raw[:1] in ("'", '"'):
        try:
            text = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return raw
        # repr() escaped the controls; decoding it must not bring them back.
        return escape_controls(text) if isinstance(text, str) else raw
    if _NUMBER.fullmatch(raw):
        number = float(raw)
        if number.is_integer() and "." not in raw and "e" not in raw.lower():
            return int(raw)
        return number
    return raw


def _put(into: dict[str, Any], key: str, value: Any) -> str | None:
    """Set a field; the key it went in under, or None.

    A field already set is never replaced: the same value again (the call's ids, which
    the line repeats) is dropped, another one goes in as ``<key>_field`` (the line's own
    ``event=``, for instance, beside the event name).
    """
    if key in into:
        if into[key] == value:
            return None
        key += "_field"
        if key in into:
            return None
    into[key] = value
    return key


def fields(text: str, into: dict[str, Any]) -> dict[str, Any]:
    """Add the ``key=value`` fields of ``text`` to ``into`` (keys already there are kept)."""
    last: str | None = None
    position = 0
    while position < len(text):
        match = _FIELD.match(text, position)
        if match is None or match.end() == position:
            break
        position = match.end()
        key, raw, word = match.groups()
        if key is not None:
            last = _put(into, key, _value(raw))
        elif word is not None:
            if last is not None:
                into[last] = f"{into[last]} {word}"
            else:
                into["text"] = f"{into['text']} {word}" if "text" in into else word
    return into


# A %-placeholder of a logging call's format string (the relay uses no mapping keys).
_PLACEHOLDER = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]")


def _typed(spec: str, arg: object) -> Any:
    """The JSON value of one argument, as the text line shows it (controls escaped)."""
    kind = spec[-1]
    if kind == "r":
        return escape_controls(arg if isinstance(arg, str) else repr(arg))
    if kind == "s":
        if arg is None or isinstance(arg, bool):
            return arg
        if isinstance(arg, int | float) and math.isfinite(arg):
            return arg
        return escape_controls(str(arg))
    text = spec % (arg,)
    return _value(text) if _NUMBER.fullmatch(text) else escape_controls(text)


def _render(template: str, args: list[object]) -> str:
    """``template`` with its placeholders replaced by ``args`` (consumed from the front)."""
    def one(match: re.Match[str]) -> str:
        return "%" if match.group() == "%%" else match.group() % (args.pop(0),)
    return _PLACEHOLDER.sub(one, template)


def _template_fields(template: str, args: tuple[object, ...], into: dict[str, Any]) -> bool:
    """Read ``key=value`` fields from the logging call's format string and its arguments.

    A key is always our code's (the format string's); a value is exactly one argument, so
    no text inside a value can add or split a field. A lone ``%s`` is a string of
    ``key=value`` pairs our code joined (the call summary, the timings): it is read as
    text. False if the placeholders and the arguments do not line up (then the caller
    reads the formatted message instead).
    """
    pending = list(args)
    last: str | None = None
    for token in template.split()[1:]:
        placeholders = [m for m in _PLACEHOLDER.finditer(token) if m.group() != "%%"]
        if len(placeholders) > len(pending):
            return False
        equals = token.find("=")
        inside = any(m.start() <= equals < m.end() for m in placeholders)
        if equals > 0 and not inside:
            key_part, value_part = token[:equals], token[equals + 1:]
            key = _render(key_part, pending)
            value_holders = [m for m in _PLACEHOLDER.finditer(value_part) if m.group() != "%%"]
            if len(value_holders) == 1 and value_holders[0].group() == value_part:
                value: Any = _typed(value_part, pending.pop(0))
            else:
                value = _value(escape_controls(_render(value_part, pending)))
            last = _put(into, key, value)
        elif len(placeholders) == 1 and placeholders[0].group() == token and token[-1] == "s":
            fields(escape_controls(str(pending.pop(0))), into)
            last = None
        else:
            word = escape_controls(_render(token, pending))
            if last is not None and isinstance(into[last], str):
                into[last] = f"{into[last]} {word}"
            else:
                into["text"] = f"{into['text']} {word}" if "text" in into else word
    return not pending


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the text line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        message = escape_controls(record.getMessage())
        event, _, rest = message.partition(" ")
        stamp = time.strftime(_DATEFMT, time.gmtime(record.created))
        document: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": event,
        }
        ids: tuple[tuple[str, str], ...] = getattr(record, "call_ids", ())
        document.update(ids)
        args = record.args if isinstance(record.args, tuple) else ()
        read = dict(document)
        if not isinstance(record.args, Mapping) and _template_fields(str(record.msg), args, read):
            document = read
        else:  # placeholders and arguments do not line up: read the line as text
            fields(rest, document)
        if record.exc_info:
            document.setdefault("exc_info", self.formatException(record.exc_info))
        if record.stack_info:
            document.setdefault("stack_info", self.formatStack(record.stack_info))
        return json.dumps(document, default=str)


def configure(level: str = "INFO", log_format: str = "text", stream: IO[str] | None = None) -> None:
    """Send relay logs to ``stream`` (stderr: gunicorn/systemd/journald collect it) at ``level``."""
    if log_format not in FORMATS:
        raise ValueError(f"log_format must be one of {FORMATS} (got {log_format!r})")
    root = logging.getLogger("relay")
    root.setLevel(level)
    for handler in [h for h in root.handlers if getattr(h, "_relay_handler", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler._relay_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.propagate = False


class CallLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with the call's ids; ``bind`` adds them once the token verified."""

    def __init__(self, logger: logging.Logger, conn_id: str) -> None:
        super().__init__(logger, {})
        self._ids: tuple[tuple[str, str], ...] = (("conn", conn_id),)
        self._prefix = f"conn={conn_id}"

    def bind(self, call_sid: str, stream_sid: str) -> None:
        """Name the call: every later line carries these ids."""
        self._ids += (("call_sid", call_sid), ("stream_sid", stream_sid))
        self._prefix = " ".join(f"{key}={value}" for key, value in self._ids)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        """Put the call's ids after the event name (and on the record, for JSON)."""
        kwargs["extra"] = {**kwargs.get("extra", {}), "call_ids": self._ids}
        text = str(msg)
        event, _, rest = text.partition(" ")
        return (f"{event} {self._prefix} {rest}" if rest else f"{event} {self._prefix}"), kwargs
