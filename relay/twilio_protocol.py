"""Twilio Media Streams messages: parse what Twilio sends, build what we send back.

https://www.twilio.com/docs/voice/media-streams/websocket-messages (docs/twilio-media-streams.md)

Inbound text is decoded once, by msgspec, straight into the immutable event structs
below: one C pass that also checks every field's type (about 4,300 instructions for a
media frame, against 7,800 for orjson's dicts plus the checks in Python). Anything that
is not a Media Streams event raises TwilioProtocolError; an event name this relay does
not know becomes ``Unknown``. A ``media`` payload is checked to be base64 (its alphabet,
padding and length, by one C regular-expression match: about half a microsecond for a
20 ms frame) but not decoded: it is passed upstream as the exact string Twilio sent, and
only audio ever goes upstream.

Outbound builders return the JSON text itself: they run on every audio frame, so they
concatenate prepared pieces instead of building a dict for ``json.dumps``; every string
that might need escaping goes through the C escaper (tests compare with ``json.loads``).

Pure: the standard library, msgspec and ``relay.errors`` only. camelCase lives here.
"""

from __future__ import annotations

import re
from json.encoder import encode_basestring_ascii as _q
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct, field

from relay.errors import CLOSE_UNSUPPORTED_DATA, TwilioProtocolError
from relay.json_text import NotAnEvent, event_name_reader, json_string

# -- event names (Twilio -> relay and relay -> Twilio) --------------------------------
EVENT_CONNECTED = "connected"
EVENT_START = "start"
EVENT_MEDIA = "media"
EVENT_MARK = "mark"
EVENT_DTMF = "dtmf"
EVENT_STOP = "stop"
EVENT_CLEAR = "clear"

# 8 kHz G.711 mu-law: one byte per sample, 8 bytes per millisecond.
BYTES_PER_MS = 8

# Twilio SIDs are two letters and 32 hex digits (Twilio's API definitions:
# ^CA[0-9a-fA-F]{32}$). Anything else is refused: SIDs end up in log lines, in the JSON we
# build and in the stream token's MAC. msgspec applies a pattern with re.search, so it
# must be anchored at both ends, and with \Z: "$" also matches before a final newline,
# which would let "CA...\n" through to split a log line.
CallSid = Annotated[str, Meta(pattern=r"\ACA[0-9a-fA-F]{32}\Z")]
StreamSid = Annotated[str, Meta(pattern=r"\AMZ[0-9a-fA-F]{32}\Z")]


class _MediaBody(Struct, frozen=True, gc=False):
    payload: str


class _MarkBody(Struct, frozen=True, gc=False):
    name: str


class _DtmfBody(Struct, frozen=True, gc=False):
    digit: str


class _StopBody(Struct, frozen=True, gc=False, rename="camel"):
    call_sid: str = ""
    account_sid: str = ""


class _MediaFormat(Struct, frozen=True, gc=False, rename="camel"):
    # Only mu-law 8 kHz passes through to OpenAI's audio/pcmu untouched.
    encoding: Literal["audio/x-mulaw"] = "audio/x-mulaw"
    sample_rate: Literal[8000] = 8000
    channels: int = 1


class _StartBody(Struct, frozen=True, gc=False, rename="camel"):
    stream_sid: StreamSid
    call_sid: CallSid
    # Null is read as absent in these three: none carries anything the relay needs, so a
    # null must not cost the caller the call (an invalid start ends it).
    account_sid: str | None = ""
    tracks: tuple[str, ...] | None = ("inbound",)
    custom_parameters: dict[str, str] | None = field(default_factory=dict)
    media_format: _MediaFormat = field(default_factory=_MediaFormat)


class Connected(Struct, frozen=True, gc=False, tag_field="event", tag=EVENT_CONNECTED):
    """First message on every stream."""

    protocol: str = ""
    version: str = ""


class Start(Struct, frozen=True, gc=False, tag_field="event", tag=EVENT_START):
    """Stream metadata; ``custom_parameters`` are the TwiML ``<Parameter>`` values."""

    start: _StartBody

    @property
    def stream_sid(self) -> str:
        """The stream's SID (MZ...)."""
        return self.start.stream_sid

    @property
    def call_sid(self) -> str:
        """The call's SID (CA...)."""
        return self.start.call_sid

    @property
    def account_sid(self) -> str:
        """The Twilio account (AC...)."""
        return self.start.account_sid or ""

    @property
    def custom_parameters(self) -> dict[str, str]:
        """The ``<Parameter>`` values from the TwiML."""
        return self.start.custom_parameters or {}

    @property
    def tracks(self) -> tuple[str, ...]:
        """Tracks streamed (always ``inbound`` with ``<Connect>``)."""
        return self.start.tracks or ("inbound",)

    @classmethod
    def of(cls, stream_sid: str, call_sid: str, custom_parameters: dict[str, str] | None = None,
           account_sid: str = "") -> Start:
        """Build one directly (tests, stand-ins)."""
        return cls(_StartBody(stream_sid, call_sid, account_sid, ("inbound",), custom_parameters or {}))


class Media(Struct, frozen=True, gc=False, tag_field="event", tag=EVENT_MEDIA, rename="camel"):
    """Caller audio: base64 mu-law, passed upstream untouched.

    Twilio's ``media.timestamp`` and ``chunk`` are not kept: barge-in is measured from
    returned marks, not from inbound timestamps.
    """

    media: _MediaBody
    stream_sid: str = ""

    @property
    def payload(self) -> str:
        """The base64 audio, exactly as Twilio sent it."""
        return self.media.payload

    @classmethod
    def of(cls, stream_sid: str, payload: str) -> Media:
        """Build one directly (tests, stand-ins)."""
        return cls(_MediaBody(payload), stream_sid)


class Mark(Struct, frozen=True, gc=False, tag_field="event", tag=EVENT_MARK, rename="camel"):
    """Twilio echoing one of our marks: the audio before it has played (or was cleared)."""

    mark: _MarkBody
    stream_sid: str = ""

    @property
    def name(self) -> str:
        """The mark's name, as we sent it."""
        return self.mark.name

    @classmethod
    def of(cls, stream_sid: str, name: str) -> Mark:
        """Build one directly (tests, stand-ins)."""
        return cls(_MarkBody(name), stream_sid)


class Dtmf(Struct, frozen=True, gc=False, tag_field="event", tag=EVENT_DTMF, rename="camel"):
    """A key pressed by the caller."""

    dtmf: _DtmfBody
    stream_sid: str = ""

    @property
    def digit(self) -> str:
        """The key."""
        return self.dtmf.digit


class Stop(Struct, frozen=True, gc=False, tag_field="event", tag=EVENT_STOP, rename="camel"):
    """The stream ended (caller hung up, or the call was redirected)."""

    stop: _StopBody = field(default_factory=_StopBody)
    stream_sid: str = ""

    @property
    def call_sid(self) -> str:
        """The call's SID, if Twilio gave it."""
        return self.stop.call_sid

    @classmethod
    def of(cls, stream_sid: str, call_sid: str) -> Stop:
        """Build one directly (tests, stand-ins)."""
        return cls(_StopBody(call_sid), stream_sid)


class Unknown(Struct, frozen=True, gc=False):
    """An event name this relay does not know; tolerated, logged."""

    event: str


TwilioEvent = Connected | Start | Media | Mark | Dtmf | Stop | Unknown
_KNOWN = {EVENT_CONNECTED, EVENT_START, EVENT_MEDIA, EVENT_MARK, EVENT_DTMF, EVENT_STOP}
_decode = msgspec.json.Decoder(Connected | Start | Media | Mark | Dtmf | Stop).decode


_NOT_AN_EVENT = {"not_json": "message is not JSON", "too_deep": "message nests too deeply",
                 "not_object": "message is not a JSON object"}


# Base64's shape: its alphabet, then at most two "=" of padding, in whole 4-character
# groups (RFC 4648 section 4). Checked in C; the length test is the caller's.
_base64_shape = re.compile(r"[A-Za-z0-9+/]*={0,2}").fullmatch


def parse(text: str) -> TwilioEvent:
    """Parse one Twilio text message; raise TwilioProtocolError if it is not one."""
    try:
        event: TwilioEvent = _decode(text)
    except msgspec.ValidationError as exc:
        return _unknown_or_invalid(text, exc)
    except msgspec.DecodeError:
        raise TwilioProtocolError(_NOT_AN_EVENT["not_json"], CLOSE_UNSUPPORTED_DATA) from None
    except RecursionError:  # msgspec recurses per nesting level, even to skip a field
        raise TwilioProtocolError(_NOT_AN_EVENT["too_deep"], CLOSE_UNSUPPORTED_DATA) from None
    if type(event) is Media:
        payload = event.media.payload
        if not payload or len(payload) & 3 or _base64_shape(payload) is None:
            raise TwilioProtocolError("invalid media message: the payload is not base64 audio", event=EVENT_MEDIA)
    return event


_read_event = event_name_reader("event")


def _unknown_or_invalid(text: str, error: msgspec.ValidationError) -> Unknown:
    try:
        event = _read_event(text)
    except NotAnEvent as exc:
        if exc.reason == "no_name":
            raise TwilioProtocolError("message has no 'event' name") from None
        raise TwilioProtocolError(_NOT_AN_EVENT[exc.reason], CLOSE_UNSUPPORTED_DATA) from None
    if event in _KNOWN:
        raise TwilioProtocolError(f"invalid {event} message: {error}", event=event)
    return Unknown(event[:64])


def payload_bytes(payload_b64: str) -> int:
    """Decoded size of a base64 string, computed without decoding it."""
    n = len(payload_b64)
    if n == 0:
        return 0
    padding = (payload_b64[-1] == "=") + (payload_b64[-2] == "=") if n > 1 else 0
    return n * 3 // 4 - padding


# -- builders (relay -> Twilio); each returns the JSON text ---------------------------


class Outbound:
    """The messages we send on one stream, with the ``streamSid`` part built once.

    ``media`` and ``mark`` run for every audio delta of every call: two string
    concatenations and one C escape each.
    """

    __slots__ = ("_media", "_mark", "clear")

    def __init__(self, stream_sid: str) -> None:
        sid = _q(stream_sid)
        self._media = '{"event":"media","streamSid":' + sid + ',"media":{"payload":'
        self._mark = '{"event":"mark","streamSid":' + sid + ',"mark":{"name":'
        #: Drop the audio Twilio has buffered for the caller (barge-in).
        self.clear = '{"event":"clear","streamSid":' + sid + "}"

    def media(self, payload_b64: str) -> str:
        """Play base64 mu-law audio to the caller."""
        return self._media + json_string(payload_b64) + "}}"

    def mark(self, name: str) -> str:
        """Ask Twilio to echo ``name`` once the audio sent before it has played."""
        return self._mark + json_string(name) + "}}"


def media(stream_sid: str, payload_b64: str) -> str:
    """Play base64 mu-law audio to the caller."""
    return Outbound(stream_sid).media(payload_b64)


def mark(stream_sid: str, name: str) -> str:
    """Ask Twilio to echo ``name`` once the audio sent before it has played."""
    return Outbound(stream_sid).mark(name)


def clear(stream_sid: str) -> str:
    """Drop the audio Twilio has buffered for the caller (barge-in)."""
    return Outbound(stream_sid).clear
