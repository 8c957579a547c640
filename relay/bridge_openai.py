"""The Realtime side of CallBridge: the session, the assistant's audio, barge-in, and what OpenAI says.

Configures the session once the socket is open, sends the caller's held words and the
greeting once it is ready, forwards each audio delta to Twilio with its mark, truncates
what the caller did not hear when they talk over it, plays the comfort tone while the
session is slow, feeds the call's record, and ends the call on fatal errors, closes and
failed sends. A mixin of CallBridge (relay/bridge.py).

Imports only the standard library and the relay's pure modules.
"""

from __future__ import annotations

from collections.abc import Sequence

from relay import openai_protocol as oai
from relay import twilio_protocol as tw
from relay.actions import Actions
from relay.bridge_state import ACTIVE, ENDED, BridgeState, CallState
from relay.errors import CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, FrameError, OpenAIProtocolError, UpstreamError

_payload_bytes = tw.payload_bytes
_parse_openai = oai.parse
_AudioDelta = oai.AudioDelta


class OpenAISide(BridgeState):
    """What the bridge does with the Realtime session."""

    def upstream_open(self) -> Actions:
        """The Realtime socket is open: configure the session."""
        out = Actions()
        if self.state is not ENDED and self.persona is not None:
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
        if self.state is not ENDED:
            if error is not None:
                self.log.error("openai.frame_error close_code=%d detail=%s", error.close_code, error)
            else:
                self.log.warning("openai.closed code=%s reason=%r", code, reason[:120])
        return self._end(Actions(), "openai_closed", CLOSE_INTERNAL_ERROR, abort=("openai",) if error else ())

    def send_failed(self, side: str, *, overflow: bool) -> Actions:
        """A send to ``side`` (``twilio`` or ``openai``) failed: the socket died or its peer stopped reading."""
        out = Actions()
        if self.state is ENDED:
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
        """Every data message of one read from OpenAI's socket, in order.

        Audio deltas go straight to ``_audio_delta`` (every chunk of the assistant's voice);
        everything else through ``_openai``.
        """
        out = Actions()
        for message in batch:
            try:
                event = _parse_openai(message)
            except OpenAIProtocolError as exc:
                self.log.warning("openai.invalid_event detail=%s", exc)
                continue
            if type(event) is _AudioDelta:
                self._audio_delta(event, out)
            else:
                self._openai(event, out)
        return out

    def on_openai(self, event: oai.OpenAIEvent) -> Actions:
        """One parsed Realtime event (tests; the socket path is ``openai_messages``)."""
        out = Actions()
        self._openai(event, out)
        return out

    def _openai(self, event: oai.OpenAIEvent, out: Actions) -> None:
        if self.state is ENDED:
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
            if self.state is ACTIVE:
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
        if self.state is not ACTIVE:
            return
        audio, item_id = delta.delta, delta.item_id
        size = _payload_bytes(audio)
        generated = self._item_bytes  # every item's audio, heard or not: the record's cut needs it
        so_far = generated.get(item_id)
        if so_far is None:
            self.record.assistant_item(item_id, self._ms())  # type: ignore[union-attr]
            so_far = 0
        generated[item_id] = so_far + size
        if size == 0 or item_id == self.playout.suppressed_item_id:
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
        self.state = ACTIVE
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
        elif self.state is ACTIVE:
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
