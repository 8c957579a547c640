"""What Twilio sends on a Media Stream, as JSON text: the one builder every caller uses.

The simulated caller, the softphone gateway, the hardening tests and the bench all place
calls through ``InboundStream``, so the messages they send have one shape: the one in
Twilio's documentation (https://www.twilio.com/docs/voice/media-streams/websocket-messages).
``sequenceNumber`` starts at "1" with ``start`` and counts every later message; a media
frame's ``chunk`` counts from "1" and its ``timestamp`` is the milliseconds of audio sent
before it. Numbers are strings, as Twilio sends them; the JSON is compact, keys in the
order of Twilio's examples (docs/twilio-media-streams.md).

``media`` is on the hot path of the bench's load generator (hundreds of calls at 50 frames
a second), so it is written from a template rather than through ``json.dumps``; every
value in it is JSON-escaped all the same.

Independent of ``relay/``: it builds its JSON with the standard library.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii as _json_string

BYTES_PER_MS = 8  # 8 kHz mu-law: one byte a sample
TEST_ACCOUNT_SID = "AC" + "0" * 32


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits (``CA``, ``MZ``, ``AC``)."""
    return prefix + secrets.token_hex(16)


def _dumps(message: dict[str, object]) -> str:
    return json.dumps(message, separators=(",", ":"))


class InboundStream:
    """The messages of one stream, numbered as Twilio numbers them."""

    def __init__(self, call_sid: str, *, stream_sid: str | None = None,
                 account_sid: str = TEST_ACCOUNT_SID) -> None:
        self.call_sid = call_sid
        self.stream_sid = stream_sid or new_sid("MZ")
        self.account_sid = account_sid
        self._sequence = 0
        self._chunk = 0
        self._audio_ms = 0
        self._sid_json = _json_string(self.stream_sid)

    def _next(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    @staticmethod
    def connected() -> str:
        """The first message on every stream (no sequence number, no streamSid)."""
        return _dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom_parameters: Mapping[str, str]) -> str:
        """``start``: the stream's metadata and the TwiML ``<Parameter>`` values."""
        return _dumps({
            "event": "start", "sequenceNumber": self._next(),
            "start": {
                "accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": dict(custom_parameters),
            },
            "streamSid": self.stream_sid,
        })

    def media(self, frame: bytes) -> str:
        """One frame of caller audio (raw mu-law; usually 160 bytes, 20 ms)."""
        return self.media_b64(base64.b64encode(frame).decode("ascii"), len(frame))

    def media_b64(self, payload: str, size: int | None = None) -> str:
        """A ``media`` message with an already encoded (or deliberately broken) payload."""
        self._chunk += 1
        timestamp = self._audio_ms
        if size is None:
            size = len(payload) * 3 // 4 - payload[-2:].count("=")
        self._audio_ms += size // BYTES_PER_MS
        return (f'{{"event":"media","sequenceNumber":"{self._next()}","media":{{"track":"inbound",'
                f'"chunk":"{self._chunk}","timestamp":"{timestamp}","payload":{_json_string(payload)}}},'
                f'"streamSid":{self._sid_json}}}')

    def mark(self, name: str) -> str:
        """The echo of a mark the relay sent: the audio before it has played (or was cleared)."""
        return _dumps({"event": "mark", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                       "mark": {"name": name}})

    def dtmf(self, digit: str) -> str:
        """A key the caller pressed."""
        return _dumps({"event": "dtmf", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                       "dtmf": {"track": "inbound_track", "digit": digit}})

    def stop(self) -> str:
        """The caller hung up (or the call was redirected away from the stream)."""
        return _dumps({"event": "stop", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                       "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})
