"""The Twilio side of CallBridge: every message of the caller's stream, one dispatch path.

Parses each socket read (relay/twilio_protocol.py), polices the peer (relay/peer_guard.py),
checks the stream token on ``start`` and binds the call to what it vouches for, holds the
caller's first words until the session can read them, and hands marks, digits and the
hang-up to the parts that own them. A mixin of CallBridge (relay/bridge.py).

Imports only the standard library and the relay's pure modules.
"""

from __future__ import annotations

from collections.abc import Sequence

from relay import openai_protocol as oai
from relay import stream_token
from relay import twilio_protocol as tw
from relay.actions import Actions, OpenUpstream
from relay.bridge_state import ACTIVE, ENDED, BridgeState, CallState
from relay.call_record import CallRecord
from relay.conversation import Conversation
from relay.errors import CLOSE_NORMAL, CLOSE_POLICY_VIOLATION, FrameError, TwilioProtocolError
from relay.replay_guard import retention_end

_parse_twilio = tw.parse
_append_audio = oai.append_audio
_Media = tw.Media


class TwilioSide(BridgeState):
    """What the bridge does with Twilio's stream."""

    def twilio_messages(self, batch: Sequence[str | bytes]) -> Actions:
        """Every data message of one read from Twilio's socket, in order.

        Caller audio on a live call takes the short way (every 20 ms of every call: no
        call per frame but the parser's); everything else goes through ``_twilio``.
        """
        out = Actions()
        to_openai = out.to_openai
        audio_chars = forwarded = 0
        live = self.state is ACTIVE and self.conversation.ending is None  # type: ignore[union-attr]
        stream_sid = self.stream_sid
        for message in batch:
            if type(message) is not str:
                self._bad_message(out, "binary", "twilio.binary_frame ignored=true")
                continue
            try:
                event = _parse_twilio(message)
            except TwilioProtocolError as exc:
                self._invalid(exc, out)
                continue
            if live and type(event) is _Media and event.stream_sid == stream_sid:
                payload = event.media.payload
                audio_chars += len(payload)
                forwarded += 1
                to_openai.append(_append_audio(payload))
                continue
            self._twilio(event, out)
            live = self.state is ACTIVE and self.conversation.ending is None  # type: ignore[union-attr]
        self.frames_from_caller += forwarded
        self.guard.received(len(batch), audio_chars)
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
        elif self.state is ENDED:
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
            if self.state is ACTIVE and event.stream_sid == self.stream_sid:  # type: ignore[union-attr]
                self.conversation.digit(event.digit, self._monotonic(), out)  # type: ignore[union-attr]
        else:
            self.guard.unknown_event(event.event)  # type: ignore[union-attr]

    def _media(self, media: tw.Media, out: Actions) -> None:
        """Caller audio: the hot path (every 20 ms of every call)."""
        state = self.state
        if state is ACTIVE:
            if media.stream_sid != self.stream_sid:
                self._warn_once("media_sid", "twilio.wrong_stream_sid event=media")
                return
            payload = media.payload
            self.guard.received(0, len(payload))
            if self.conversation.ending is None:  # type: ignore[union-attr]  # an ending starts no new turn
                self.frames_from_caller += 1
                out.to_openai.append(_append_audio(payload))
        elif state is CallState.AWAITING_SESSION:
            if media.stream_sid != self.stream_sid:
                self._warn_once("media_sid", "twilio.wrong_stream_sid event=media")
                return
            payload = media.payload
            self.guard.received(0, len(payload))
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
        self._item_bytes = self.record.audio_bytes
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
