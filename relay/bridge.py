"""CallBridge: the per-call state machine between Twilio and OpenAI. Sans-I/O.

Everything that happens to a call comes in through one method each and every one returns
``Actions`` (relay/actions.py): the raw messages of each socket read (``twilio_messages``,
``openai_messages``: parsed here, one dispatch path per side), the sockets' fates
(``twilio_closed``, ``upstream_open``, ``upstream_failed``, ``upstream_closed``,
``send_failed``), our own failures (``internal_error``) and the clock (``tick``). Every
policy lives here: deadlines, floods, bad messages, stalled peers, what the caller hears
while the session opens. ``relay/live_call.py`` performs the actions and decides nothing.
The bridge never touches a socket, a clock of its own or the environment.

::

    AWAITING_START --start, token ok--> AWAITING_SESSION --session.updated--> ACTIVE
          |                                   |                                 |
          +--------- any ending (EndCall) ----+---------------------------------+--> ENDED

- Caller audio that arrives before the session is ready is held (bounded by
  ``Limits.early_audio_s``) and sent in order once ``session.updated`` confirms the
  session reads mu-law: OpenAI does not promise that audio sent after ``session.update``
  but before its confirmation is decoded in the new format, and audio read as 24 kHz PCM
  would be noise to the model. The wait costs one round trip.
- While the session is not ready after ``Limits.comfort_tone_after_s``, the caller hears
  a soft comfort tone (relay/comfort_tone.py) until the greeting, which clears it first.
- Played-audio bookkeeping for barge-in is relay/playout.py's; tools, the endings the
  assistant chooses (hang-up, transfer, the time limit's goodbye) and keypad digits are
  relay/conversation.py's, which the bridge feeds and whose actions it returns.

Imports only the standard library and the relay's pure modules.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from enum import Enum

from relay import openai_protocol as oai
from relay import stream_token
from relay import twilio_protocol as tw
from relay.actions import Actions, EndCall, OpenUpstream
from relay.call_record import CallRecord
from relay.call_settings import BridgeSettings, Persona
from relay.comfort_tone import ComfortTone
from relay.conversation import Conversation, ToolOutcome
from relay.errors import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    FrameError,
    OpenAIProtocolError,
    TwilioProtocolError,
    UpstreamError,
)
from relay.limits import Limits
from relay.peer_guard import PeerGuard
from relay.playout import Playout
from relay.replay_guard import ReplayGuard, retention_end


class CallState(Enum):
    """Where a call is in its life."""

    AWAITING_START = "awaiting_start"
    AWAITING_SESSION = "awaiting_session"
    ACTIVE = "active"
    ENDED = "ended"


_ACTIVE = CallState.ACTIVE
_ENDED = CallState.ENDED
_payload_bytes = tw.payload_bytes
_parse_twilio = tw.parse
_parse_openai = oai.parse
_append_audio = oai.append_audio


class CallBridge:
    """One call's state. Not thread-safe; gevent runs one greenlet at a time."""

    def __init__(
        self,
        settings: BridgeSettings,
        limits: Limits,
        *,
        monotonic: Callable[[], float],
        wall: Callable[[], float],
        replay_guard: ReplayGuard,
        log: logging.LoggerAdapter,  # type: ignore[type-arg]
    ) -> None:
        self.settings = settings
        self.limits = limits
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
        self.account_sid = ""
        # The numbers the stream token vouches for (set by a verified start; "" if absent).
        self.caller_number = ""
        self.called_number = ""
        self._to_twilio = tw.Outbound("")
        self.persona: Persona | None = None  # chosen by the called number, once start verifies
        self.conversation: Conversation | None = None
        self.record: CallRecord | None = None  # what the call said and did, once start verifies
        self.playout = Playout()
        self._early: deque[str] = deque(maxlen=limits.early_audio_frames)
        self.tone = ComfortTone(limits.comfort_tone_after_s)
        self.guard = PeerGuard(limits, log, self.accepted_at)
        # Counters for the end-of-call line.
        self.frames_from_caller = 0
        self.early_frames = 0
        self.dropped_before_ready = 0
        self.invalid_audio = 0
        self.barge_ins = 0
        self.first_audio_ms: float | None = None
        self._warned: set[str] = set()

    # -- helpers ----------------------------------------------------------------------

    def _end(self, out: Actions, reason: str, close_code: int, abort: tuple[str, ...] = ()) -> Actions:
        if self.state is not _ENDED:
            self.state = _ENDED
            self.end_reason = reason
            self.ended_at = self._monotonic()
            out.end = EndCall(reason, close_code, abort)
        return out

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log.warning(message, *args)

    @property
    def ended(self) -> bool:
        """True once the call is over (an EndCall has been returned)."""
        return self.state is _ENDED

    def _ms(self) -> float:
        """Milliseconds since the stream's ``start``."""
        return (self._monotonic() - (self.started_at or self.accepted_at)) * 1000

    def report(self) -> dict[str, object] | None:
        """The call's record for CALL_REPORT_URL, once it is over; None for a stream never verified."""
        record, conversation = self.record, self.conversation
        if record is None or conversation is None or self.started_at is None:
            return None
        ended = self.ended_at if self.ended_at is not None else self._monotonic()
        for keys, at in conversation.keypad:
            record.digits(keys, (at - self.started_at) * 1000)
        conversation.keypad.clear()
        return record.report(
            ended_wall=record.started_wall + (ended - self.started_at),
            end_reason=self.end_reason or "unknown", first_audio_ms=self.first_audio_ms, barge_ins=self.barge_ins,
            tool_calls=conversation.tool_calls, transfer=conversation.transfer,
        )

    @property
    def assistant_speaking(self) -> bool:
        """True while audio we sent has not been confirmed played."""
        return self.playout.playing

    def summary(self) -> dict[str, object]:
        """Figures for the end-of-call log line (no audio, no secrets)."""
        end = self.ended_at if self.ended_at is not None else self._monotonic()
        return {
            "reason": self.end_reason,
            "duration_s": round(end - (self.started_at or self.accepted_at), 3),
            "frames_from_caller": self.frames_from_caller,
            "frames_to_caller": self.playout.marks_sent,
            "bytes_to_caller": self.playout.bytes_sent,
            "early_frames": self.early_frames,
            "dropped_before_ready": self.dropped_before_ready,
            "invalid_audio": self.invalid_audio,
            "barge_ins": self.barge_ins,
            "first_audio_ms": self.first_audio_ms,
        }

    # -- Twilio -> bridge ---------------------------------------------------------------

    def twilio_messages(self, batch: Sequence[str | bytes]) -> Actions:
        """Every data message of one read from Twilio's socket, in order."""
        out = Actions()
        self.guard.received(len(batch))
        for message in batch:
            if type(message) is not str:
                self._bad_message(out, "binary", "twilio.binary_frame ignored=true")
                continue
            try:
                event = _parse_twilio(message)
            except TwilioProtocolError as exc:
                self._invalid(exc, out)
                continue
            self._twilio(event, out)
        return out

    def on_twilio(self, event: tw.TwilioEvent) -> Actions:
        """One parsed Twilio event (tests; the socket path is ``twilio_messages``)."""
        out = Actions()
        self._twilio(event, out)
        return out

    def _twilio(self, event: tw.TwilioEvent, out: Actions) -> None:
        kind = type(event)
        if kind is tw.Media:
            self._media(event, out)  # type: ignore[arg-type]
        elif kind is tw.Mark:
            if event.stream_sid == self.stream_sid:  # type: ignore[union-attr]
                self.playout.echoed(event.name)  # type: ignore[union-attr]
        elif self.state is _ENDED:
            return
        elif kind is tw.Start:
            self._on_start(event, out)  # type: ignore[arg-type]
        elif kind is tw.Stop:
            self.log.info("twilio.stop")
            self._end(out, self._hangup_reason(), CLOSE_NORMAL)
        elif kind is tw.Connected:
            self.log.debug("twilio.connected protocol=%s", event.protocol)  # type: ignore[union-attr]
        elif kind is tw.Dtmf:
            # The digit itself is not logged: callers type PINs and card numbers.
            if self.state is _ACTIVE and event.stream_sid == self.stream_sid:  # type: ignore[union-attr]
                self.conversation.digit(event.digit, self._monotonic(), out)  # type: ignore[union-attr]
        else:
            self.guard.unknown_event(event.event)  # type: ignore[union-attr]

    def _media(self, media: tw.Media, out: Actions) -> None:
        """Caller audio: the hot path (every 20 ms of every call)."""
        state = self.state
        if state is _ACTIVE:
            if media.stream_sid != self.stream_sid:
                self._warn_once("media_sid", "twilio.wrong_stream_sid event=media")
                return
            payload = media.payload
            self.guard.audio(len(payload))
            if self.conversation.ending is None:  # type: ignore[union-attr]  # an ending starts no new turn
                self.frames_from_caller += 1
                out.to_openai.append(_append_audio(payload))
        elif state is CallState.AWAITING_SESSION:
            if media.stream_sid != self.stream_sid:
                self._warn_once("media_sid", "twilio.wrong_stream_sid event=media")
                return
            payload = media.payload
            self.guard.audio(len(payload))
            early = self._early
            if len(early) == early.maxlen:
                self.dropped_before_ready += 1
            early.append(_append_audio(payload))
        elif state is CallState.AWAITING_START:
            self._warn_once("media_before_start", "twilio.media_before_start ignored=true")

    def _invalid(self, error: TwilioProtocolError, out: Actions) -> None:
        """A message that is not a valid Twilio event.

        A first ``start`` that failed validation (a missing or mistyped field, a malformed
        SID) ends the call at once: nothing can follow it (no stream to answer, no token to
        check), so waiting out the start timeout would only be dead air before Twilio's
        fallback. Anything else is one more bad message: invalid audio is never forwarded.
        """
        if error.event == tw.EVENT_START and self.state is CallState.AWAITING_START:
            self.log.warning("call.rejected reason=invalid_start detail=%.200s", error)
            self._end(out, "invalid_start", CLOSE_POLICY_VIOLATION)
            return
        if error.event == tw.EVENT_MEDIA:
            self.invalid_audio += 1
        self._bad_message(out, "invalid", "twilio.invalid_message detail=%.200s", error)

    def _bad_message(self, out: Actions, kind: str, message: str, *args: object) -> None:
        if self.guard.bad_message(kind, message, *args):
            self._end(out, "twilio_protocol_error", CLOSE_POLICY_VIOLATION)

    def _hangup_reason(self, default: str = "caller_hangup") -> str:
        """Why the stream ended when Twilio ended it: an ending the assistant began, or ``default``."""
        reason = self.conversation.stop_reason() if self.conversation is not None else "caller_hangup"
        return default if reason == "caller_hangup" else reason

    def _on_start(self, start: tw.Start, out: Actions) -> None:
        if self.state is not CallState.AWAITING_START:
            self._warn_once("second_start", "twilio.second_start ignored=true")
            return
        now = self._wall()
        try:
            verified = stream_token.verify_parameters(
                self.settings.stream_token_secret, start.custom_parameters, start.call_sid, now
            )
        except stream_token.StreamTokenError as exc:
            self.log.warning("call.rejected reason=token_%s unverified_call_sid=%s detail=%r",
                             exc.reason, start.call_sid, str(exc))
            self._end(out, "token_" + exc.reason, CLOSE_POLICY_VIOLATION)
            return
        # Only a verified token makes these ids the call's: no line before this one carries them.
        bind = getattr(self.log, "bind", None)
        if bind is not None:
            bind(start.call_sid, start.stream_sid)
        keep_until = retention_end(verified.expires, now, self.settings.max_call_s)
        if not self._replay_guard.claim(start.call_sid, keep_until, now):
            self.log.warning("call.rejected reason=token_replayed")
            self._end(out, "token_replayed", CLOSE_POLICY_VIOLATION)
            return
        self.caller_number = verified.caller_number
        self.called_number = verified.called_number
        self.stream_sid = start.stream_sid
        self.call_sid = start.call_sid
        self.account_sid = start.account_sid
        # The assistant is chosen by the called number the token vouches for, never by a
        # value the caller could change.
        self.persona = self.settings.persona_for(verified.called_number)
        self.conversation = Conversation(self.persona.assistant, self.limits, self.playout, self.log, self._end,
                                         account_sid=start.account_sid, call_sid=start.call_sid)
        self._to_twilio = tw.Outbound(start.stream_sid)
        self.record = CallRecord(start.call_sid, start.stream_sid, verified.caller_number, verified.called_number,
                                 now, self.settings.model, self.persona.assistant.voice,
                                 self.settings.transcription_model)
        self.started_at = self._monotonic()
        self.state = CallState.AWAITING_SESSION
        self.log.info("twilio.start ms_since_accept=%.1f", (self.started_at - self.accepted_at) * 1000)
        out.effects.append(OpenUpstream())

    def twilio_closed(self, error: FrameError | None = None) -> Actions:
        """Twilio's socket closed (with or without a ``stop`` first), or its framing broke."""
        out = Actions()
        if error is not None:
            self.log.warning("twilio.frame_error close_code=%d detail=%s", error.close_code, error)
            return self._end(out, "twilio_protocol_error", error.close_code, abort=("twilio",))
        return self._end(out, self._hangup_reason("twilio_closed"), CLOSE_NORMAL)

    # -- OpenAI -> bridge -----------------------------------------------------------------

    def upstream_open(self) -> Actions:
        """The Realtime socket is open: configure the session."""
        out = Actions()
        if self.state is not _ENDED and self.persona is not None:
            out.to_openai.append(self.persona.session_update)
        return out

    def upstream_failed(self, error: UpstreamError) -> Actions:
        """The Realtime socket could not be opened."""
        self.log.error(
            "openai.connect_failed stage=%s status=%s code=%s detail=%r",
            error.stage, error.status, error.code, error.detail,
        )
        return self._end(Actions(), f"openai_{error.stage}_failed", CLOSE_INTERNAL_ERROR)

    def upstream_closed(self, code: int | None, reason: str, error: FrameError | None = None) -> Actions:
        """OpenAI closed the socket, it dropped, or its framing broke."""
        if self.state is not _ENDED:
            if error is not None:
                self.log.error("openai.frame_error close_code=%d detail=%s", error.close_code, error)
            else:
                self.log.warning("openai.closed code=%s reason=%r", code, reason[:120])
        return self._end(Actions(), "openai_closed", CLOSE_INTERNAL_ERROR, abort=("openai",) if error else ())

    def send_failed(self, side: str, *, overflow: bool) -> Actions:
        """A send to ``side`` (``twilio`` or ``openai``) failed: the socket died or its peer stopped reading."""
        out = Actions()
        if self.state is _ENDED:
            return out
        if overflow:
            self.log.warning("%s.send_overflow max_queued_bytes=%d", side, self.limits.max_queued_bytes)
            return self._end(out, f"{side}_stalled", CLOSE_INTERNAL_ERROR, abort=(side,))
        if side == "twilio":
            return self._end(out, "twilio_closed", CLOSE_NORMAL)
        self.log.warning("openai.send_failed")
        return self._end(out, "openai_closed", CLOSE_INTERNAL_ERROR)

    def internal_error(self) -> Actions:
        """Our own code failed while handling this call (already logged with its traceback)."""
        return self._end(Actions(), "internal_error", CLOSE_INTERNAL_ERROR)

    def openai_messages(self, batch: Sequence[str | bytes]) -> Actions:
        """Every data message of one read from OpenAI's socket, in order."""
        out = Actions()
        for message in batch:
            try:
                event = _parse_openai(message)
            except OpenAIProtocolError as exc:
                self.log.warning("openai.invalid_event detail=%s", exc)
                continue
            self._openai(event, out)
        return out

    def on_openai(self, event: oai.OpenAIEvent) -> Actions:
        """One parsed Realtime event (tests; the socket path is ``openai_messages``)."""
        out = Actions()
        self._openai(event, out)
        return out

    def _openai(self, event: oai.OpenAIEvent, out: Actions) -> None:
        if self.state is _ENDED:
            return
        kind = type(event)
        if kind is oai.AudioDelta:
            self._audio_delta(event, out)  # type: ignore[arg-type]
        elif kind is oai.SpeechStarted:
            if self.record is not None:
                self.record.caller_started(event.item_id, self._ms())  # type: ignore[union-attr]
            self._on_speech_started(out)
        elif kind is oai.SessionUpdated:
            self._on_session_updated(event, out)  # type: ignore[arg-type]
        elif kind is oai.ErrorEvent:
            self._on_error(event, out)  # type: ignore[arg-type]
        elif kind is oai.ResponseDone:
            self._on_response_done(event, out)  # type: ignore[arg-type]
        elif kind is oai.ResponseCreated:
            if self.conversation is not None:
                self.conversation.response_created()
        elif kind is oai.FunctionCallDone:
            if self.state is _ACTIVE:
                self.conversation.function_call(event, self._monotonic(), out)  # type: ignore[union-attr,arg-type]
        elif kind is oai.InputTranscript:
            if self.record is not None:
                self.record.caller_said(event.item_id, event.transcript, self._ms())  # type: ignore[union-attr]
                self.record.transcribed(event.usage)  # type: ignore[union-attr]
        elif kind is oai.OutputTranscript:
            if self.record is not None:
                self.record.assistant_said(event.item_id, event.transcript, self._ms())  # type: ignore[union-attr]
        elif kind is oai.InputTranscriptFailed:
            self.log.info("openai.transcription_failed item_id=%r", event.item_id)  # type: ignore[union-attr]
        elif kind is oai.ItemTruncated:
            self.log.debug("openai.item_truncated audio_end_ms=%s", event.audio_end_ms)  # type: ignore[union-attr]

    def _audio_delta(self, delta: oai.AudioDelta, out: Actions) -> None:
        """Assistant audio: the hot path. Twilio ``media``, then its ``mark``."""
        if self.state is not _ACTIVE:
            return
        audio = delta.delta
        size = _payload_bytes(audio)
        self.record.assistant_audio(delta.item_id, size, self._ms())  # type: ignore[union-attr]
        if size == 0 or delta.item_id == self.playout.suppressed_item_id:
            return
        if self.first_audio_ms is None:
            self._first_audio(out)
        name = self.playout.sent(delta.item_id, size)
        to_twilio = self._to_twilio
        out.to_twilio += (to_twilio.media(audio), to_twilio.mark(name))

    def _stop_tone(self, out: Actions) -> None:
        """No more comfort tone; drop what Twilio still holds of it."""
        if self.tone.stop():
            out.to_twilio.append(self._to_twilio.clear)

    def _first_audio(self, out: Actions) -> None:
        self._stop_tone(out)
        if self.started_at is not None:
            self.first_audio_ms = round((self._monotonic() - self.started_at) * 1000, 1)
            self.log.info("call.first_audio ms_since_start=%.1f", self.first_audio_ms)

    def _on_session_updated(self, event: oai.SessionUpdated, out: Actions) -> None:
        if self.state is not CallState.AWAITING_SESSION:
            return
        for direction, fmt in (("input", event.input_format), ("output", event.output_format)):
            if fmt and fmt != oai.AUDIO_FORMAT:
                self.log.error("openai.session_rejected %s_format=%s", direction, fmt)
                self._end(out, "session_rejected", CLOSE_INTERNAL_ERROR)
                return
        self.state = _ACTIVE
        self.log.info(
            "openai.session_updated ms_since_accept=%.1f early_frames=%d",
            (self._monotonic() - self.accepted_at) * 1000, len(self._early),
        )
        if self._early:  # the caller's first words, in order, before anything else
            self.early_frames = len(self._early)
            self.frames_from_caller += len(self._early)
            out.to_openai += self._early
            self._early.clear()
        greeting = self.persona.greeting  # type: ignore[union-attr]
        if greeting is not None:
            out.to_openai.append(greeting)
            self.conversation.responding = True  # type: ignore[union-attr]
        else:
            self._stop_tone(out)

    def _on_speech_started(self, out: Actions) -> None:
        if not self.tone.over:  # the caller is talking: the assistant is clearly there
            self._stop_tone(out)
        interrupted = self.playout.interrupt()
        if interrupted is None:
            return  # nothing is playing: no barge-in, just the caller talking
        item_id, audio_end_ms = interrupted
        self.barge_ins += 1
        self.record.assistant_cut(item_id, audio_end_ms)  # type: ignore[union-attr]
        self.log.info("call.barge_in item_id=%s audio_end_ms=%d", item_id, audio_end_ms)
        out.to_twilio.append(self._to_twilio.clear)
        out.to_openai.append(oai.truncate(item_id, audio_end_ms))

    def _on_response_done(self, done: oai.ResponseDone, out: Actions) -> None:
        if not self.tone.over:  # the greeting ended without a sound: no tone for ever
            self._stop_tone(out)
        self.log.info(
            "openai.response_done response_id=%s status=%s reason=%s total_tokens=%s "
            "input_tokens=%s output_tokens=%s",
            done.response_id, done.status, done.reason or "-",
            done.usage.get("total_tokens"), done.usage.get("input_tokens"), done.usage.get("output_tokens"),
        )
        if self.record is not None and done.usage:
            self.record.responded(done.usage)
        if done.fatal:
            # Quota and key failures surface here too: every later response would fail the
            # same way, so end the call and let the fallback play.
            self.log.error("openai.response_failed fatal=true reason=%s", done.reason)
            self._end(out, "openai_error", CLOSE_INTERNAL_ERROR)
        elif self.state is _ACTIVE:
            self.conversation.response_done(self._monotonic(), out)  # type: ignore[union-attr]

    def _on_error(self, error: oai.ErrorEvent, out: Actions) -> None:
        if self.state is CallState.AWAITING_SESSION or error.fatal:
            self.log.error(
                "openai.error fatal=true type=%s code=%s param=%s message=%r",
                error.error_type, error.code, error.param, error.message,
            )
            reason = "session_rejected" if self.state is CallState.AWAITING_SESSION else "openai_error"
            self._end(out, reason, CLOSE_INTERNAL_ERROR)
            return
        self.log.warning(
            "openai.error fatal=false type=%s code=%s param=%s message=%r",
            error.error_type, error.code, error.param, error.message,
        )
        if error.code == "conversation_already_has_active_response" and self.conversation is not None:
            self.conversation.response_refused()

    # -- time -----------------------------------------------------------------------------

    def tick(self, now: float, twilio_blocked_since: float = 0.0, openai_blocked_since: float = 0.0) -> Actions:
        """Deadlines, stalled peers, floods and the comfort tone; about every ``Limits.tick_s``.

        ``*_blocked_since`` is when data started waiting for that peer to read (0: none).
        """
        out = Actions()
        state = self.state
        if state is _ENDED:
            return out
        settings, limits = self.settings, self.limits
        age = now - self.accepted_at
        if state is CallState.AWAITING_START and age > settings.start_timeout_s:
            self.log.warning("call.start_timeout waited_s=%.1f", age)
            return self._end(out, "start_timeout", CLOSE_POLICY_VIOLATION)
        if state is not _ACTIVE and age > settings.session_timeout_s:
            self.log.error("openai.session_timeout waited_s=%.1f", age)
            return self._end(out, "session_timeout", CLOSE_INTERNAL_ERROR)
        if self.started_at is not None and now - self.started_at > settings.max_call_s:
            conversation = self.conversation
            if state is not _ACTIVE or conversation is None:
                return self._end(out, "max_call_length", CLOSE_NORMAL)
            if conversation.ending is None:
                self.log.info("call.max_length_reached max_call_s=%d", settings.max_call_s)
                conversation.time_limit(now, out)
        for side, since in (("twilio", twilio_blocked_since), ("openai", openai_blocked_since)):
            if since and now - since > limits.send_stall_s:
                self.log.warning("%s.send_stalled seconds=%.1f", side, now - since)
                return self._end(out, f"{side}_stalled", CLOSE_INTERNAL_ERROR, abort=(side,))
        if self.guard.flooding(now):
            return self._end(out, "twilio_flood", CLOSE_POLICY_VIOLATION)
        if self.state is not _ENDED:
            self._comfort_tone(now, out)
        if self.state is _ACTIVE:
            self.conversation.tick(now, out)  # type: ignore[union-attr]
        return out

    # -- what the relay did on the bridge's behalf ---------------------------------------------

    def tool_done(self, call_id: str, result: ToolOutcome) -> Actions:
        """A RunTool effect finished: its output goes to the model."""
        out = Actions()
        if self.state is _ACTIVE:
            self.conversation.tool_done(call_id, result, out)  # type: ignore[union-attr]
        return out

    def update_done(self, ok: bool) -> Actions:
        """An UpdateCall effect finished: Twilio accepted it (``ok``) or could not be asked."""
        out = Actions()
        if self.state is _ACTIVE:
            self.conversation.update_done(ok, self._monotonic(), out)  # type: ignore[union-attr]
        return out

    def _comfort_tone(self, now: float, out: Actions) -> None:
        """Keep a soft tone queued at Twilio while the session is slow to open.

        From ``Limits.comfort_tone_after_s`` after ``start`` until the greeting's first audio
        (or, with no greeting, the session being ready), the caller talking, the greeting's
        response ending without audio, or the session deadline; whichever comes first.
        """
        if self.tone.over or self.started_at is None:
            return
        if now - self.accepted_at > self.settings.session_timeout_s:
            self._stop_tone(out)
            return
        was_playing = self.tone.playing
        payloads = self.tone.due(now, now - self.started_at)
        if payloads and not was_playing:
            self.log.info("call.comfort_tone waited_s=%.1f", now - self.started_at)
        media = self._to_twilio.media
        out.to_twilio += [media(payload) for payload in payloads]
