"""JSON helpers shared by both protocols.

String literals for the per-frame builders (cheap when nothing needs escaping), and the
name of an event the typed decoders do not know.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any, Literal

import msgspec

NotAnEventReason = Literal["not_json", "too_deep", "not_object", "no_name"]


class NotAnEvent(ValueError):
    """The text is not a protocol event at all; ``reason`` says why (each protocol words it)."""

    def __init__(self, reason: NotAnEventReason) -> None:
        super().__init__(reason)
        self.reason = reason


def event_name_reader(field: str) -> Callable[[str | bytes], str]:
    """A reader of the ``field`` naming an event (``type``, ``event``) from a JSON object.

    For the texts a protocol's typed decoder refused: that decoder stops at the first
    thing that cannot be an event, so the rest may still be broken JSON or nest too
    deeply. This reads the whole text once, keeping only ``field``; it raises NotAnEvent
    when the text is not a JSON object with a string there.
    """
    named = msgspec.defstruct("Named", [(field, Any, None)])
    decode = msgspec.json.Decoder(named).decode

    def read(text: str | bytes) -> str:
        try:
            try:
                name = getattr(decode(text), field)
            except msgspec.ValidationError:  # not an object: stopped at its first byte ("[1, 2")
                msgspec.json.decode(text)  # so check the rest is JSON at all (rare: no hot path)
                raise NotAnEvent("not_object") from None
        except msgspec.DecodeError:
            raise NotAnEvent("not_json") from None
        except RecursionError:  # msgspec recurses per nesting level, even to skip a field
            raise NotAnEvent("too_deep") from None
        if type(name) is not str:
            raise NotAnEvent("no_name")
        return name

    return read


def json_string(text: str) -> str:
    """``text`` as a JSON string literal.

    Base64 audio never needs escaping, and the C escaper costs about 38 instructions a
    character (240,000 for a 200 ms audio delta), so plain ASCII without quotes or
    backslashes is wrapped as it is (about 0.3 instructions a character); anything else
    still goes through the escaper. A raw control character would pass unescaped here: it
    cannot end the string (Twilio or OpenAI would reject that one message), and base64
    never contains one.
    """
    if text.isascii() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return encode_basestring_ascii(text)
