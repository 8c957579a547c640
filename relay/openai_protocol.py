"""OpenAI Realtime (GA) events: build what the relay sends, parse what it uses.

https://platform.openai.com/docs/api-reference/realtime (protocols.md part 2). GA shapes
only: ``session.type`` is required, audio formats are objects under ``session.audio``,
audio deltas are ``response.output_audio.delta``. The beta shape (``OpenAI-Beta:
realtime=v1``) was retired on 2026-05-12 and is refused with ``beta_api_shape_disabled``.

Builders return the JSON text to send. ``tests/relay/test_openai_protocol.py`` validates
every one against the openai SDK's GA models and rejects unknown fields.

Pure: standard library, orjson and ``relay.errors`` only.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _q
from typing import Any, NamedTuple

from relay.errors import OpenAIProtocolError

try:  # orjson parses a 6.5 KB audio delta in 3.0 us against json's 9.4 us
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is pinned
    from json import loads as _loads  # type: ignore[assignment]

# -- server event types we act on ------------------------------------------------------
TYPE_SESSION_CREATED = "session.created"
TYPE_SESSION_UPDATED = "session.updated"
TYPE_AUDIO_DELTA = "response.output_audio.delta"
TYPE_SPEECH_STARTED = "input_audio_buffer.speech_started"
TYPE_SPEECH_STOPPED = "input_audio_buffer.speech_stopped"
TYPE_RESPONSE_CREATED = "response.created"
TYPE_RESPONSE_DONE = "response.done"
TYPE_ITEM_TRUNCATED = "conversation.item.truncated"
TYPE_ERROR = "error"

# -- client event types we send ---------------------------------------------------------
TYPE_SESSION_UPDATE = "session.update"
TYPE_APPEND = "input_audio_buffer.append"
TYPE_RESPONSE_CREATE = "response.create"
TYPE_TRUNCATE = "conversation.item.truncate"

AUDIO_FORMAT = "audio/pcmu"  # G.711 mu-law at 8 kHz: Twilio's format, passed through

# Error codes after which the session cannot go on (protocols.md 2.7). Everything else
# (response_cancel_not_active, conversation_already_has_active_response, a truncate past
# the audio's end, ...) is logged and the call continues.
FATAL_ERROR_CODES = frozenset(
    {
        "session_expired",
        "invalid_api_key",
        "insufficient_quota",
        "beta_api_shape_disabled",
        "model_not_found",
        "session_not_found",
    }
)


class SessionCreated(NamedTuple):
    """The server's first event on a new socket."""


class SessionUpdated(NamedTuple):
    """Our ``session.update`` took effect; the formats the server now uses."""

    input_format: str
    output_format: str


class AudioDelta(NamedTuple):
    """A chunk of the assistant's audio (base64 mu-law)."""

    response_id: str
    item_id: str
    delta: str


class SpeechStarted(NamedTuple):
    """Server VAD heard the caller start speaking: the barge-in signal."""

    item_id: str
    audio_start_ms: int


class SpeechStopped(NamedTuple):
    """Server VAD heard the caller stop."""

    item_id: str


class ResponseCreated(NamedTuple):
    """The model started a response."""

    response_id: str


class ResponseDone(NamedTuple):
    """A response ended: its status and token usage."""

    response_id: str
    status: str
    reason: str
    usage: dict[str, int]


class ItemTruncated(NamedTuple):
    """Acknowledges our ``conversation.item.truncate``."""

    item_id: str
    audio_end_ms: int


class ErrorEvent(NamedTuple):
    """An ``error`` event; most are recoverable (see FATAL_ERROR_CODES)."""

    type: str
    code: str
    message: str
    param: str

    @property
    def fatal(self) -> bool:
        """True when the session cannot continue after this error."""
        return self.code in FATAL_ERROR_CODES


class Unknown(NamedTuple):
    """Any other server event: tolerated (the API adds events over time)."""

    type: str


OpenAIEvent = (
    SessionCreated
    | SessionUpdated
    | AudioDelta
    | SpeechStarted
    | SpeechStopped
    | ResponseCreated
    | ResponseDone
    | ItemTruncated
    | ErrorEvent
    | Unknown
)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _format_type(audio: object, direction: str) -> str:
    if isinstance(audio, dict):
        side = audio.get(direction)
        if isinstance(side, dict):
            fmt = side.get("format")
            if isinstance(fmt, dict):
                return _text(fmt.get("type"))
    return ""


def parse(text: str | bytes) -> OpenAIEvent:
    """Parse one server event; raise OpenAIProtocolError if it is not an event at all."""
    try:
        event = _loads(text)
    except ValueError:
        raise OpenAIProtocolError("server event is not JSON") from None
    if not isinstance(event, dict):
        raise OpenAIProtocolError("server event is not a JSON object")
    kind = event.get("type")
    if kind == TYPE_AUDIO_DELTA:  # first: the bulk of all traffic
        delta = event.get("delta")
        if not isinstance(delta, str):
            raise OpenAIProtocolError("audio delta without a 'delta' string")
        return AudioDelta(_text(event.get("response_id")), _text(event.get("item_id")), delta)
    if kind == TYPE_SPEECH_STARTED:
        start = event.get("audio_start_ms")
        return SpeechStarted(_text(event.get("item_id")), start if isinstance(start, int) else 0)
    if kind == TYPE_SPEECH_STOPPED:
        return SpeechStopped(_text(event.get("item_id")))
    if kind == TYPE_RESPONSE_CREATED:
        response = event.get("response")
        return ResponseCreated(_text(response.get("id")) if isinstance(response, dict) else "")
    if kind == TYPE_RESPONSE_DONE:
        return _response_done(event.get("response"))
    if kind == TYPE_ERROR:
        error = event.get("error")
        if not isinstance(error, dict):
            raise OpenAIProtocolError("error event without an 'error' object")
        return ErrorEvent(
            _text(error.get("type")),
            _text(error.get("code")),
            _text(error.get("message"))[:300],
            _text(error.get("param")),
        )
    if kind == TYPE_SESSION_UPDATED:
        session = event.get("session")
        audio = session.get("audio") if isinstance(session, dict) else None
        return SessionUpdated(_format_type(audio, "input"), _format_type(audio, "output"))
    if kind == TYPE_SESSION_CREATED:
        return SessionCreated()
    if kind == TYPE_ITEM_TRUNCATED:
        end = event.get("audio_end_ms")
        return ItemTruncated(_text(event.get("item_id")), end if isinstance(end, int) else 0)
    if not isinstance(kind, str):
        raise OpenAIProtocolError("server event without a 'type'")
    return Unknown(kind[:80])


def _response_done(response: object) -> ResponseDone:
    if not isinstance(response, dict):
        raise OpenAIProtocolError("response.done without a 'response' object")
    details = response.get("status_details")
    reason = ""
    if isinstance(details, dict):
        reason = _text(details.get("reason"))
        error = details.get("error")
        if isinstance(error, dict) and not reason:
            reason = _text(error.get("code")) or _text(error.get("type"))
    usage: dict[str, int] = {}
    raw_usage = response.get("usage")
    if isinstance(raw_usage, dict):
        for key in ("total_tokens", "input_tokens", "output_tokens"):
            value = raw_usage.get(key)
            if isinstance(value, int):
                usage[key] = value
    return ResponseDone(_text(response.get("id")), _text(response.get("status")), reason, usage)


# -- builders (relay -> OpenAI); each returns the JSON text ----------------------------


def session_update(*, voice: str, instructions: str) -> str:
    """The one ``session.update`` the relay sends: pcmu both ways, server VAD, voice."""
    voice_value: Any = {"id": voice} if voice.startswith("voice_") else voice
    session = {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": instructions,
        "audio": {
            "input": {
                "format": {"type": AUDIO_FORMAT},
                # Telephone handsets are close-talking microphones.
                "noise_reduction": {"type": "near_field"},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": {"type": AUDIO_FORMAT}, "voice": voice_value},
        },
    }
    return json.dumps({"type": TYPE_SESSION_UPDATE, "session": session}, separators=(",", ":"))


def append_audio(audio_b64: str) -> str:
    """Caller audio for the input buffer: Twilio's base64 payload, untouched."""
    return '{"type":"input_audio_buffer.append","audio":' + _q(audio_b64) + "}"


def response_create(instructions: str | None = None) -> str:
    """Ask for a response; ``instructions`` override the session's for this one only."""
    event: dict[str, Any] = {"type": TYPE_RESPONSE_CREATE}
    if instructions:
        event["response"] = {"instructions": instructions}
    return json.dumps(event, separators=(",", ":"))


def greeting(text: str) -> str:
    """The response that makes the assistant speak first, saying ``text``."""
    return response_create(
        "Greet the caller now. Say exactly this, in a natural voice, and nothing else: " + text
    )


def truncate(item_id: str, audio_end_ms: int) -> str:
    """Tell the model the caller heard only ``audio_end_ms`` of ``item_id`` (barge-in)."""
    return json.dumps(
        {
            "type": TYPE_TRUNCATE,
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": audio_end_ms,
        },
        separators=(",", ":"),
    )
