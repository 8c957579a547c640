"""CallBridge: the per-call state machine between Twilio and OpenAI. Sans-I/O.

Events go in (``on_twilio``, ``on_invalid_message``, ``on_openai``, ``on_upstream_open``,
``on_upstream_closed``, ``on_upstream_failed``, ``on_twilio_closed``, ``on_tick``) and
actions come out: ``SendTwilio``/``SendOpenAI`` (wire text), ``OpenUpstream`` (the stream
token checked out: send the Realtime upgrade now) and ``EndCall``. The bridge never
touches a socket, a clock of its own or the environment; ``relay/live_call.py`` performs
its actions.

::

    AWAITING_START --start, token ok--> AWAITING_SESSION --session.updated--> ACTIVE
          |                                   |                                 |
          +--------- any ending (EndCall) ----+---------------------------------+--> ENDED

Played-audio bookkeeping (for barge-in): after each audio delta sent to Twilio we send a
mark and queue ``(name, item_id, bytes)``. Twilio echoes a mark once the audio before it
has played, so each echo that matches the head of the queue adds its bytes to what the
caller heard. On barge-in we send Twilio ``clear`` and ``conversation.item.truncate`` with
``audio_end_ms = heard_bytes // 8`` for the item being played, then drop the queue:
Twilio echoes every pending mark after a ``clear`` (cleared, not played), and those
echoes no longer match anything. Every step is O(1) per frame.

Imports only the standard library and the relay's pure modules.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from relay import openai_protocol as oai
from relay import stream_token
from relay import twilio_protocol as tw
from relay.errors import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    TwilioProtocolError,
    UpstreamError,
)
from relay.replay_guard import ReplayGuard, retention_end


class CallState(Enum):
    """Where a call is in its life."""

    AWAITING_START = "awaiting_start"
    AWAITING_SESSION = "awaiting_session"
    ACTIVE = "active"
    ENDED = "ended"


_ACTIVE = CallState.ACTIVE
_payload_bytes = tw.payload_bytes

# Unknown Twilio events are tolerated (Twilio adds events over time) and each new name is
# logged once. A peer can invent a name per message, so after this many names the rest
# are neither logged nor remembered: one line says so.
MAX_UNKNOWN_EVENT_NAMES = 8


class SendTwilio(NamedTuple):
    """Send this text to Twilio."""

    text: str


class SendOpenAI(NamedTuple):
    """Send this text to OpenAI."""

    text: str


class OpenUpstream(NamedTuple):
    """The stream is authorised: upgrade the pre-connected Realtime socket."""


class EndCall(NamedTuple):
    """End the call: close Twilio with ``close_code`` (Twilio then plays the fallback)."""

    reason: str
    close_code: int


Action = SendTwilio | SendOpenAI | OpenUpstream | EndCall


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """What every call's bridge needs, built once per process."""

    stream_token_secret: str = field(repr=False)
    session_update: str
    greeting: str | None
    start_timeout_s: float
    session_timeout_s: float
    max_call_s: float


class CallBridge:
    """One call's state. Not thread-safe; gevent runs one greenlet at a time."""

    def __init__(
        self,
        settings: BridgeSettings,
        *,
        monotonic: Callable[[], float],
        wall: Callable[[], float],
        replay_guard: ReplayGuard,
        log: logging.LoggerAdapter,  # type: ignore[type-arg]
    ) -> None:
        self.settings = settings
        self._monotonic = monotonic
        self._wall = wall
        self._replay_guard = replay_guard
        self.log = log
        self.state = CallState.AWAITING_START
        self.accepted_at = monotonic()
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.stream_sid = ""
        self.call_sid = ""
        # The numbers the stream token vouches for (set by a verified start; "" if absent).
        self.caller_number = ""
        self.called_number = ""
        self._to_twilio = tw.Outbound("")
        # Barge-in bookkeeping (see the module docstring).
        self.pending_marks: deque[tuple[str, str, int]] = deque()
        self.heard_item_id = ""
        self.heard_bytes = 0
        self.suppressed_item_id = ""  # deltas of a truncated item still in flight
        self._mark_seq = 0
        # Counters for the end-of-call line.
        self.frames_from_caller = 0
        self.bytes_to_caller = 0
        self.dropped_before_ready = 0
        self.barge_ins = 0
        self.first_audio_ms: float | None = None
        self._warned: set[str] = set()
        self._unknown_events: set[str] = set()

    # -- helpers ----------------------------------------------------------------------

    def _end(self, reason: str, close_code: int) -> list[Action]:
        if self.state is CallState.ENDED:
            return []
        self.state = CallState.ENDED
        self.end_reason = reason
        self.ended_at = self._monotonic()
        return [EndCall(reason, close_code)]

    def force_end(self, reason: str) -> None:
        """Record an ending decided outside the bridge (socket errors, floods, our bugs)."""
        self._end(reason, CLOSE_INTERNAL_ERROR)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log.warning(message, *args)

    @property
    def assistant_speaking(self) -> bool:
        """True while audio we sent has not been confirmed played."""
        return bool(self.pending_marks)

    def summary(self) -> dict[str, object]:
        """Figures for the end-of-call log line (no audio, no secrets)."""
        end = self.ended_at if self.ended_at is not None else self._monotonic()
        return {
            "reason": self.end_reason,
            "duration_s": round(end - (self.started_at or self.accepted_at), 3),
            "frames_from_caller": self.frames_from_caller,
            "frames_to_caller": self._mark_seq,
            "bytes_to_caller": self.bytes_to_caller,
            "dropped_before_ready": self.dropped_before_ready,
            "barge_ins": self.barge_ins,
            "first_audio_ms": self.first_audio_ms,
        }

    # -- Twilio -> bridge ---------------------------------------------------------------

    def on_twilio(self, event: tw.TwilioEvent) -> list[Action]:
        """React to one parsed Twilio message."""
        kind = type(event)
        if kind is tw.Media:
            text = self.append_for(event)  # type: ignore[arg-type]
            return [SendOpenAI(text)] if text is not None else []
        if kind is tw.Mark:
            self.on_mark(event)  # type: ignore[arg-type]
            return []
        if self.state is CallState.ENDED:
            return []
        if kind is tw.Start:
            return self._on_start(event)  # type: ignore[arg-type]
        if kind is tw.Stop:
            self.log.info("twilio.stop")
            return self._end("caller_hangup", CLOSE_NORMAL)
        if kind is tw.Connected:
            self.log.debug("twilio.connected protocol=%s", event.protocol)  # type: ignore[union-attr]
            return []
        if kind is tw.Dtmf:
            # The digit itself is not logged: callers type PINs and card numbers.
            self.log.info("twilio.dtmf")
            return []
        self._on_unknown(event.event)  # type: ignore[union-attr]
        return []

    def _on_unknown(self, name: str) -> None:
        seen = self._unknown_events
        if name in seen or len(seen) > MAX_UNKNOWN_EVENT_NAMES:
            return
        seen.add(name)
        if len(seen) > MAX_UNKNOWN_EVENT_NAMES:
            self.log.warning("twilio.unknown_events_suppressed names_logged=%d", MAX_UNKNOWN_EVENT_NAMES)
        else:
            # Quoted: the name is the peer's text, and must not forge a log line of its own.
            self.log.warning("twilio.unknown_event event=%r", name)

    def append_for(self, media: tw.Media) -> str | None:
        """The hot path for caller audio: the ``append`` to send upstream, or None.

        ``on_twilio`` wraps this; LiveCall calls it directly for every media frame, so a
        frame costs no action objects.
        """
        if self.state is _ACTIVE:
            if media.stream_sid != self.stream_sid:
                self._warn_once("media_sid", "twilio.wrong_stream_sid event=media")
                return None
            self.frames_from_caller += 1
            return oai.append_audio(media.payload)
        if self.state is CallState.AWAITING_START:
            self._warn_once("media_before_start", "twilio.media_before_start ignored=true")
        elif self.state is CallState.AWAITING_SESSION:
            # Audio appended before session.updated would be read as 24 kHz PCM.
            self.dropped_before_ready += 1
        return None

    def on_mark(self, mark: tw.Mark) -> None:
        """Twilio echoed a mark: the audio before it has played (or was cleared)."""
        pending = self.pending_marks
        if not pending or pending[0][0] != mark.name or mark.stream_sid != self.stream_sid:
            return  # the echo of a mark dropped by a clear: cleared, not played
        _name, item_id, size = pending.popleft()
        if item_id != self.heard_item_id:
            self.heard_item_id = item_id
            self.heard_bytes = 0
        self.heard_bytes += size

    def _on_start(self, start: tw.Start) -> list[Action]:
        if self.state is not CallState.AWAITING_START:
            self._warn_once("second_start", "twilio.second_start ignored=true")
            return []
        self.stream_sid = start.stream_sid
        self.call_sid = start.call_sid
        self._to_twilio = tw.Outbound(start.stream_sid)
        now = self._wall()
        try:
            verified = stream_token.verify_parameters(
                self.settings.stream_token_secret, start.custom_parameters, start.call_sid, now
            )
        except stream_token.StreamTokenError as exc:
            self.log.warning("call.rejected reason=token_%s unverified_call_sid=%s detail=%r",
                             exc.reason, start.call_sid, str(exc))
            return self._end("token_" + exc.reason, CLOSE_POLICY_VIOLATION)
        # Only a verified token makes these ids the call's: no line before this one carries them.
        bind = getattr(self.log, "bind", None)
        if bind is not None:
            bind(start.call_sid, start.stream_sid)
        keep_until = retention_end(verified.expires, now, self.settings.max_call_s)
        if not self._replay_guard.claim(start.call_sid, keep_until, now):
            self.log.warning("call.rejected reason=token_replayed")
            return self._end("token_replayed", CLOSE_POLICY_VIOLATION)
        self.caller_number = verified.caller_number
        self.called_number = verified.called_number
        self.started_at = self._monotonic()
        self.state = CallState.AWAITING_SESSION
        self.log.info(
            "twilio.start ms_since_accept=%.1f", (self.started_at - self.accepted_at) * 1000
        )
        return [OpenUpstream()]

    def on_invalid_message(self, error: TwilioProtocolError) -> list[Action]:
        """A Twilio message that is not a valid event; ``[]``: one more bad message to count.

        A first ``start`` that failed validation (a missing or mistyped field, a malformed
        SID) ends the call at once: nothing can follow it (no stream to answer, no token to
        check), so waiting out the start timeout would only be dead air before Twilio's
        fallback.
        """
        if error.event != tw.EVENT_START or self.state is not CallState.AWAITING_START:
            return []
        self.log.warning("call.rejected reason=invalid_start detail=%.200s", error)
        return self._end("invalid_start", CLOSE_POLICY_VIOLATION)

    def on_twilio_closed(self) -> list[Action]:
        """Twilio's socket closed (with or without a ``stop`` first)."""
        return self._end("twilio_closed", CLOSE_NORMAL)

    # -- OpenAI -> bridge -----------------------------------------------------------------

    def on_upstream_open(self) -> list[Action]:
        """The Realtime socket is open: configure the session."""
        if self.state is CallState.ENDED:
            return []
        return [SendOpenAI(self.settings.session_update)]

    def on_upstream_failed(self, error: UpstreamError) -> list[Action]:
        """The Realtime socket could not be opened."""
        self.log.error(
            "openai.connect_failed stage=%s status=%s code=%s detail=%r",
            error.stage, error.status, error.code, error.detail,
        )
        return self._end(f"openai_{error.stage}_failed", CLOSE_INTERNAL_ERROR)

    def on_upstream_closed(self, code: int | None, reason: str) -> list[Action]:
        """OpenAI closed the socket (or it dropped)."""
        if self.state is not CallState.ENDED:
            self.log.warning("openai.closed code=%s reason=%r", code, reason[:120])
        return self._end("openai_closed", CLOSE_INTERNAL_ERROR)

    def on_openai(self, event: oai.OpenAIEvent) -> list[Action]:
        """React to one parsed Realtime server event."""
        if self.state is CallState.ENDED:
            return []
        kind = type(event)
        if kind is oai.AudioDelta:
            texts = self.twilio_for(event)  # type: ignore[arg-type]
            return [SendTwilio(texts[0]), SendTwilio(texts[1])] if texts is not None else []
        if kind is oai.SpeechStarted:
            return self._on_speech_started(event)  # type: ignore[arg-type]
        if kind is oai.SessionUpdated:
            return self._on_session_updated(event)  # type: ignore[arg-type]
        if kind is oai.ErrorEvent:
            return self._on_error(event)  # type: ignore[arg-type]
        if kind is oai.ResponseDone:
            done: oai.ResponseDone = event  # type: ignore[assignment]
            self.log.info(
                "openai.response_done response_id=%s status=%s reason=%s total_tokens=%s "
                "input_tokens=%s output_tokens=%s",
                done.response_id, done.status, done.reason or "-",
                done.usage.get("total_tokens"), done.usage.get("input_tokens"),
                done.usage.get("output_tokens"),
            )
            if done.fatal:
                # Quota and key failures surface here too (protocols.md 2.4): every later
                # response would fail the same way, so end the call and let the fallback play.
                self.log.error("openai.response_failed fatal=true reason=%s", done.reason)
                return self._end("openai_error", CLOSE_INTERNAL_ERROR)
            return []
        if kind is oai.ItemTruncated:
            self.log.debug("openai.item_truncated audio_end_ms=%s", event.audio_end_ms)  # type: ignore[union-attr]
        return []

    def _on_session_updated(self, event: oai.SessionUpdated) -> list[Action]:
        if self.state is not CallState.AWAITING_SESSION:
            return []
        for direction, fmt in (("input", event.input_format), ("output", event.output_format)):
            if fmt and fmt != oai.AUDIO_FORMAT:
                self.log.error("openai.session_rejected %s_format=%s", direction, fmt)
                return self._end("session_rejected", CLOSE_INTERNAL_ERROR)
        self.state = CallState.ACTIVE
        self.log.info(
            "openai.session_updated ms_since_accept=%.1f",
            (self._monotonic() - self.accepted_at) * 1000,
        )
        if self.settings.greeting is not None:
            return [SendOpenAI(self.settings.greeting)]
        return []

    def twilio_for(self, delta: oai.AudioDelta) -> tuple[str, str] | None:
        """The hot path for assistant audio: Twilio ``media`` and its ``mark``, or None.

        ``on_openai`` wraps this; LiveCall calls it directly for every audio delta.
        """
        if self.state is not _ACTIVE or delta.item_id == self.suppressed_item_id:
            return None
        audio = delta.delta
        size = _payload_bytes(audio)
        if size == 0:
            return None
        self._mark_seq += 1
        name = str(self._mark_seq)
        self.pending_marks.append((name, delta.item_id, size))
        self.bytes_to_caller += size
        if self.first_audio_ms is None and self.started_at is not None:
            self.first_audio_ms = round((self._monotonic() - self.started_at) * 1000, 1)
            self.log.info("call.first_audio ms_since_start=%.1f", self.first_audio_ms)
        out = self._to_twilio
        return out.media(audio), out.mark(name)

    def _on_speech_started(self, event: oai.SpeechStarted) -> list[Action]:
        if not self.pending_marks:
            return []  # nothing is playing: no barge-in, just the caller talking
        item_id = self.pending_marks[0][1]
        heard = self.heard_bytes if self.heard_item_id == item_id else 0
        audio_end_ms = heard // tw.BYTES_PER_MS
        self.pending_marks.clear()
        self.suppressed_item_id = item_id
        self.heard_item_id, self.heard_bytes = "", 0
        self.barge_ins += 1
        self.log.info("call.barge_in item_id=%s audio_end_ms=%d", item_id, audio_end_ms)
        return [
            SendTwilio(self._to_twilio.clear),
            SendOpenAI(oai.truncate(item_id, audio_end_ms)),
        ]

    def _on_error(self, error: oai.ErrorEvent) -> list[Action]:
        if self.state is CallState.AWAITING_SESSION or error.fatal:
            self.log.error(
                "openai.error fatal=true type=%s code=%s param=%s message=%r",
                error.error_type, error.code, error.param, error.message,
            )
            reason = "session_rejected" if self.state is CallState.AWAITING_SESSION else "openai_error"
            return self._end(reason, CLOSE_INTERNAL_ERROR)
        self.log.warning(
            "openai.error fatal=false type=%s code=%s param=%s message=%r",
            error.error_type, error.code, error.param, error.message,
        )
        return []

    # -- time -----------------------------------------------------------------------------

    def on_tick(self, now: float) -> list[Action]:
        """Enforce the call's deadlines; called about every quarter second."""
        state = self.state
        if state is CallState.ENDED:
            return []
        age = now - self.accepted_at
        if state is CallState.AWAITING_START and age > self.settings.start_timeout_s:
            self.log.warning("call.start_timeout waited_s=%.1f", age)
            return self._end("start_timeout", CLOSE_POLICY_VIOLATION)
        if state is not CallState.ACTIVE and age > self.settings.session_timeout_s:
            self.log.error("openai.session_timeout waited_s=%.1f", age)
            return self._end("session_timeout", CLOSE_INTERNAL_ERROR)
        if self.started_at is not None and now - self.started_at > self.settings.max_call_s:
            self.log.info("call.max_length_reached max_call_s=%d", self.settings.max_call_s)
            return self._end("max_call_length", CLOSE_NORMAL)
        return []
