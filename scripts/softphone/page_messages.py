"""What the softphone page and its gateway say to each other over one WebSocket (``/phone``).

One WebSocket is one call: opening it dials, closing it hangs up.

Page to gateway:

- a binary message is one 20 ms frame of the caller's voice: exactly 160 bytes of 8 kHz
  mu-law, as Twilio carries it (the page's capture worklet makes them);
- ``{"type": "played", "samples": N}``: the page has played the first N samples of the
  assistant's audio it was sent (audio dropped on a ``clear`` counts as played);
- ``{"type": "dtmf", "digit": "5"}``: a key on the keypad;
- ``{"type": "hangup"}``.

Gateway to page:

- a binary message is the assistant's audio, 8 kHz mu-law, as the relay sent it;
- JSON text: ``progress`` (dialing, the webhook's answer, connected), ``first_audio``,
  ``clear``, ``notice`` (the relay did something Twilio would warn about), and
  ``ended`` (who ended the call, why, and what Twilio would do next).

Pure: parses and builds text; no sockets, no gevent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
MAX_TEXT_BYTES = 256  # the page's longest message is a few dozen bytes
DIGITS = frozenset("0123456789*#")

ENDED_BY_CALLER = "caller"  # the person hung up (or the page went away)
ENDED_BY_ASSISTANT = "assistant"  # the relay closed the stream
ENDED_BY_GATEWAY = "gateway"  # the call could not be placed, or the page broke the protocol
ENDED_BY_API = "api"  # ended from outside (e.g. a REST API stand-in: completed, transferred)


class PageProtocolError(ValueError):
    """The page sent something no softphone page sends: the call ends with this reason."""


@dataclass(frozen=True, slots=True)
class CallerAudio:
    """One 20 ms frame of the caller's voice (mu-law)."""

    frame: bytes


@dataclass(frozen=True, slots=True)
class Played:
    """The page has played this many samples of the assistant's audio."""

    samples: int


@dataclass(frozen=True, slots=True)
class Digit:
    """A keypad press."""

    digit: str


@dataclass(frozen=True, slots=True)
class HangUp:
    """The person pressed "Hang up"."""


PageMessage = CallerAudio | Played | Digit | HangUp


def parse(message: str | bytes | bytearray) -> PageMessage:
    """One message from the page; PageProtocolError (with a plain reason) if it is not one."""
    if isinstance(message, bytes | bytearray):
        if len(message) != FRAME_BYTES:
            raise PageProtocolError(f"an audio frame of {len(message)} bytes (a frame is {FRAME_BYTES})")
        return CallerAudio(bytes(message))
    if len(message) > MAX_TEXT_BYTES:
        raise PageProtocolError(f"a text message of {len(message)} characters (at most {MAX_TEXT_BYTES})")
    try:
        data = json.loads(message)
    except ValueError:
        raise PageProtocolError("a text message that is not JSON") from None
    if not isinstance(data, dict):
        raise PageProtocolError("a JSON message that is not an object")
    kind = data.get("type")
    if kind == "played":
        samples = data.get("samples")
        if type(samples) is not int or samples < 0:
            raise PageProtocolError("a 'played' message without a whole, non-negative 'samples'")
        return Played(samples)
    if kind == "dtmf":
        digit = data.get("digit")
        if not isinstance(digit, str) or digit not in DIGITS:
            raise PageProtocolError("a 'dtmf' message whose digit is not one of 0-9 * #")
        return Digit(digit)
    if kind == "hangup":
        return HangUp()
    raise PageProtocolError("a message of unknown type")


def _text(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


def progress(step: str, detail: str, **fields: Any) -> str:
    """A step of placing the call: ``dialing``, ``answered`` (the webhook's TwiML), ``connected``."""
    return _text("progress", step=step, detail=detail, **fields)


def first_audio(ms_since_start: float) -> str:
    """The relay's first audio arrived this long after the stream's ``start``."""
    return _text("first_audio", ms=round(ms_since_start, 1))


def clear(dropped_by_gateway: int = 0) -> str:
    """The relay sent ``clear``: drop the buffered audio now."""
    return _text("clear", buffered=dropped_by_gateway)


def notice(text: str) -> str:
    """Something worth a line on the page's timeline (no audio, no secrets)."""
    return _text("notice", text=text)


def ended(by: str, reason: str, afterwards: Sequence[str] = ()) -> str:
    """The call is over: who ended it, why, and what Twilio would do next."""
    return _text("ended", by=by, reason=reason, afterwards=list(afterwards))
