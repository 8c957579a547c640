"""OpenAI Realtime (GA) events: build what the relay sends, parse what it uses.

https://platform.openai.com/docs/api-reference/realtime (docs/openai-realtime.md). GA shapes
only: ``session.type`` is required, audio formats are objects under ``session.audio``,
audio deltas are ``response.output_audio.delta``. The beta shape (``OpenAI-Beta:
realtime=v1``) was retired on 2026-05-12 and is refused with ``beta_api_shape_disabled``.

Server events are decoded once, by msgspec, straight into the structs below (the fields
the relay uses; the rest of each event is skipped in C). A type this relay does not act
on becomes ``Unknown``: the API adds events over time. Builders return the JSON text to
send; ``tests/relay/test_openai_protocol.py`` validates every one against the openai
SDK's GA models and rejects unknown fields.

Pure: the standard library, msgspec, ``relay.errors`` and ``relay.redact`` only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from msgspec import Struct, field

from relay.errors import OpenAIProtocolError
from relay.json_text import NotAnEvent, event_name_reader, json_string
from relay.redact import strip_keys

# -- server event types we act on ------------------------------------------------------
TYPE_SESSION_CREATED = "session.created"
TYPE_SESSION_UPDATED = "session.updated"
TYPE_AUDIO_DELTA = "response.output_audio.delta"
TYPE_SPEECH_STARTED = "input_audio_buffer.speech_started"
TYPE_SPEECH_STOPPED = "input_audio_buffer.speech_stopped"
TYPE_RESPONSE_CREATED = "response.created"
TYPE_RESPONSE_DONE = "response.done"
TYPE_ITEM_TRUNCATED = "conversation.item.truncated"
TYPE_FUNCTION_CALL_DONE = "response.function_call_arguments.done"
TYPE_INPUT_TRANSCRIPT_DONE = "conversation.item.input_audio_transcription.completed"
TYPE_INPUT_TRANSCRIPT_FAILED = "conversation.item.input_audio_transcription.failed"
TYPE_OUTPUT_TRANSCRIPT_DONE = "response.output_audio_transcript.done"
TYPE_ERROR = "error"

# -- client event types we send ---------------------------------------------------------
TYPE_SESSION_UPDATE = "session.update"
TYPE_APPEND = "input_audio_buffer.append"
TYPE_RESPONSE_CREATE = "response.create"
TYPE_TRUNCATE = "conversation.item.truncate"
TYPE_ITEM_CREATE = "conversation.item.create"
TYPE_RESPONSE_CANCEL = "response.cancel"

AUDIO_FORMAT = "audio/pcmu"  # G.711 mu-law at 8 kHz: Twilio's format, passed through

# Error codes after which the session cannot go on (docs/openai-realtime.md#limits-and-errors). Everything else
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


class _Format(Struct, frozen=True, gc=False):
    type: str = ""


class _AudioSide(Struct, frozen=True, gc=False):
    format: _Format = field(default_factory=_Format)


class _Audio(Struct, frozen=True, gc=False):
    input: _AudioSide = field(default_factory=_AudioSide)
    output: _AudioSide = field(default_factory=_AudioSide)


class _Session(Struct, frozen=True, gc=False):
    audio: _Audio = field(default_factory=_Audio)


class _Response(Struct, frozen=True, gc=False):
    id: str = ""


class _ErrorInfo(Struct, frozen=True, gc=False):
    type: str | None = None
    code: str | None = None


class _StatusDetails(Struct, frozen=True, gc=False):
    type: str | None = None
    reason: str | None = None
    error: _ErrorInfo | None = None


class _Usage(Struct, frozen=True, gc=False):
    total_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    # Nested counts (text, audio, cached...): kept as OpenAI gives them, for the call's report.
    input_token_details: dict[str, Any] | None = None
    output_token_details: dict[str, Any] | None = None


class _DoneResponse(Struct, frozen=True, gc=False):
    id: str = ""
    status: str = ""
    status_details: _StatusDetails | None = None
    usage: _Usage | None = None


class _Error(Struct, frozen=True, gc=False):
    type: str | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None


class SessionCreated(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_SESSION_CREATED):
    """The server's first event on a new socket."""


class SessionUpdated(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_SESSION_UPDATED):
    """Our ``session.update`` took effect; the formats the server now uses."""

    session: _Session = field(default_factory=_Session)

    @property
    def input_format(self) -> str:
        """``session.audio.input.format.type``, or "" if the server did not say."""
        return self.session.audio.input.format.type

    @property
    def output_format(self) -> str:
        """``session.audio.output.format.type``, or "" if the server did not say."""
        return self.session.audio.output.format.type

    @classmethod
    def of(cls, input_format: str, output_format: str) -> SessionUpdated:
        """Build one directly (tests)."""
        return cls(_Session(_Audio(_AudioSide(_Format(input_format)), _AudioSide(_Format(output_format)))))


class AudioDelta(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_AUDIO_DELTA):
    """A chunk of the assistant's audio (base64 mu-law)."""

    item_id: str
    delta: str
    response_id: str = ""


class SpeechStarted(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_SPEECH_STARTED):
    """Server VAD heard the caller start speaking: the barge-in signal."""

    item_id: str = ""
    audio_start_ms: int = 0


class SpeechStopped(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_SPEECH_STOPPED):
    """Server VAD heard the caller stop."""

    item_id: str = ""


class ResponseCreated(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_RESPONSE_CREATED):
    """The model started a response."""

    response: _Response = field(default_factory=_Response)

    @property
    def response_id(self) -> str:
        """The response's id."""
        return self.response.id


class ResponseDone(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_RESPONSE_DONE):
    """A response ended: its status and token usage."""

    response: _DoneResponse

    @property
    def response_id(self) -> str:
        """The response's id."""
        return self.response.id

    @property
    def status(self) -> str:
        """``completed``, ``cancelled``, ``failed`` or ``incomplete``."""
        return self.response.status

    @property
    def reason(self) -> str:
        """Why it was cancelled or incomplete, or its error code if it failed."""
        details = self.response.status_details
        if details is None:
            return ""
        if details.reason:
            return details.reason
        if details.error is not None:
            return details.error.code or details.error.type or ""
        return ""

    @property
    def fatal(self) -> bool:
        """True when it failed for a reason every later response would share (quota, key)."""
        return self.status == "failed" and self.reason in FATAL_ERROR_CODES

    @property
    def usage(self) -> dict[str, Any]:
        """Token counts the API reported, with their details when it gave them."""
        usage = self.response.usage
        if usage is None:
            return {}
        counts = {"total_tokens": usage.total_tokens, "input_tokens": usage.input_tokens,
                  "output_tokens": usage.output_tokens, "input_token_details": usage.input_token_details,
                  "output_token_details": usage.output_token_details}
        return {name: value for name, value in counts.items() if value is not None}


class ItemTruncated(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_ITEM_TRUNCATED):
    """Acknowledges our ``conversation.item.truncate``."""

    item_id: str = ""
    audio_end_ms: int = 0


class FunctionCallDone(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_FUNCTION_CALL_DONE):
    """The model called a function: its name and arguments (a JSON text) are complete."""

    call_id: str
    name: str
    arguments: str = ""
    response_id: str = ""
    item_id: str = ""


class InputTranscript(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_INPUT_TRANSCRIPT_DONE):
    """What the caller said in one turn (``item_id``), transcribed; it may come after the answer."""

    item_id: str = ""
    transcript: str = ""
    usage: dict[str, Any] | None = None


class InputTranscriptFailed(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_INPUT_TRANSCRIPT_FAILED):
    """A caller turn could not be transcribed."""

    item_id: str = ""


class OutputTranscript(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_OUTPUT_TRANSCRIPT_DONE):
    """The words of one item of the assistant's audio, complete."""

    item_id: str = ""
    transcript: str = ""
    response_id: str = ""


class ErrorEvent(Struct, frozen=True, gc=False, tag_field="type", tag=TYPE_ERROR):
    """An ``error`` event; most are recoverable (see FATAL_ERROR_CODES)."""

    error: _Error

    @property
    def error_type(self) -> str:
        """OpenAI's error type, e.g. ``invalid_request_error``."""
        return self.error.type or ""

    @property
    def code(self) -> str:
        """OpenAI's error code, e.g. ``session_expired``."""
        return self.error.code or ""

    @property
    def message(self) -> str:
        """OpenAI's message (cut to 300 characters), with anything key-shaped removed."""
        return strip_keys((self.error.message or "")[:1000])[:300]

    @property
    def param(self) -> str:
        """The parameter the error is about, if any."""
        return self.error.param or ""

    @property
    def fatal(self) -> bool:
        """True when the session cannot continue after this error."""
        return self.code in FATAL_ERROR_CODES

    @classmethod
    def of(cls, error_type: str, code: str, message: str, param: str = "") -> ErrorEvent:
        """Build one directly (tests)."""
        return cls(_Error(error_type, code, message, param))


class Unknown(Struct, frozen=True, gc=False):
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
    | FunctionCallDone
    | InputTranscript
    | InputTranscriptFailed
    | OutputTranscript
    | ErrorEvent
    | Unknown
)
_KNOWN = {TYPE_SESSION_CREATED, TYPE_SESSION_UPDATED, TYPE_AUDIO_DELTA, TYPE_SPEECH_STARTED,
          TYPE_SPEECH_STOPPED, TYPE_RESPONSE_CREATED, TYPE_RESPONSE_DONE, TYPE_ITEM_TRUNCATED,
          TYPE_FUNCTION_CALL_DONE, TYPE_INPUT_TRANSCRIPT_DONE, TYPE_INPUT_TRANSCRIPT_FAILED,
          TYPE_OUTPUT_TRANSCRIPT_DONE, TYPE_ERROR}
_decode = msgspec.json.Decoder(
    SessionCreated | SessionUpdated | AudioDelta | SpeechStarted | SpeechStopped | ResponseCreated
    | ResponseDone | ItemTruncated | FunctionCallDone | InputTranscript | InputTranscriptFailed | OutputTranscript
    | ErrorEvent
).decode


_NOT_AN_EVENT = {"not_json": "server event is not JSON", "too_deep": "server event nests too deeply",
                 "not_object": "server event is not a JSON object", "no_name": "server event without a 'type'"}


def parse(text: str | bytes) -> OpenAIEvent:
    """Parse one server event; raise OpenAIProtocolError if it is not an event at all."""
    try:
        return _decode(text)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        return _unknown_or_invalid(text, exc)
    except msgspec.DecodeError:
        raise OpenAIProtocolError(_NOT_AN_EVENT["not_json"]) from None
    except RecursionError:  # msgspec recurses per nesting level, even to skip a field
        raise OpenAIProtocolError(_NOT_AN_EVENT["too_deep"]) from None


_read_type = event_name_reader("type")


def _unknown_or_invalid(text: str | bytes, error: msgspec.ValidationError) -> Unknown:
    try:
        kind = _read_type(text)
    except NotAnEvent as exc:
        raise OpenAIProtocolError(_NOT_AN_EVENT[exc.reason]) from None
    if kind in _KNOWN:
        raise OpenAIProtocolError(f"invalid {kind} event: {error}")
    return Unknown(kind[:80])


# -- builders (relay -> OpenAI); each returns the JSON text ----------------------------


def session_update(*, voice: str, instructions: str, tools: Sequence[Mapping[str, Any]] = (),
                   transcription_model: str | None = None) -> str:
    """The one ``session.update`` the relay sends: pcmu both ways, server VAD, voice.

    ``tools`` are GA function tools (flat: ``{"type": "function", "name", "description",
    "parameters"}``), offered with ``tool_choice: "auto"``. ``transcription_model`` asks
    for a transcript of the caller (``conversation.item.input_audio_transcription.*``).
    """
    voice_value: Any = {"id": voice} if voice.startswith("voice_") else voice
    audio_input: dict[str, Any] = {
        "format": {"type": AUDIO_FORMAT},
        # Telephone handsets are close-talking microphones.
        "noise_reduction": {"type": "near_field"},
    }
    if transcription_model:
        audio_input["transcription"] = {"model": transcription_model}
    session: dict[str, Any] = {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": instructions,
        "audio": {
            "input": {
                **audio_input,
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
    if tools:
        session["tools"] = [dict(tool) for tool in tools]
        session["tool_choice"] = "auto"
    return json.dumps({"type": TYPE_SESSION_UPDATE, "session": session}, separators=(",", ":"))


def append_audio(audio_b64: str) -> str:
    """Caller audio for the input buffer: Twilio's base64 payload, untouched."""
    return '{"type":"input_audio_buffer.append","audio":' + json_string(audio_b64) + "}"


def response_create(instructions: str | None = None) -> str:
    """Ask for a response; ``instructions`` override the session's for this one only."""
    event: dict[str, Any] = {"type": TYPE_RESPONSE_CREATE}
    if instructions:
        event["response"] = {"instructions": instructions}
    return json.dumps(event, separators=(",", ":"))


def function_call_output(call_id: str, output: str) -> str:
    """A tool's result for the model (``output`` is a string: JSON text, as the API wants).

    The model speaks about it only after a ``response.create``.
    """
    return json.dumps({"type": TYPE_ITEM_CREATE,
                       "item": {"type": "function_call_output", "call_id": call_id, "output": output}},
                      separators=(",", ":"))


def user_text(text: str) -> str:
    """A user message in text (the keys a caller pressed, say); a ``response.create`` answers it."""
    return json.dumps({"type": TYPE_ITEM_CREATE,
                       "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}},
                      separators=(",", ":"))


def response_cancel() -> str:
    """Stop the response in progress (the server answers an idle session with a harmless error)."""
    return '{"type":"response.cancel"}'


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
