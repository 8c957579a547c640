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

The class is one state machine in three files: relay/bridge_state.py (its state),
relay/bridge_twilio.py (the Twilio side) and relay/bridge_openai.py (the Realtime side);
this module adds the clock and what the relay did on its behalf.

Imports only the standard library and the relay's pure modules.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from relay import twilio_protocol as tw
from relay.actions import Actions
from relay.bridge_openai import OpenAISide
from relay.bridge_state import ACTIVE, ENDED, CallState
from relay.bridge_twilio import TwilioSide
from relay.call_settings import BridgeSettings
from relay.comfort_tone import ComfortTone
from relay.conversation import ToolOutcome
from relay.errors import CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, CLOSE_POLICY_VIOLATION
from relay.limits import Limits
from relay.peer_guard import PeerGuard
from relay.playout import Playout
from relay.replay_guard import ReplayGuard

__all__ = ["CallBridge", "CallState"]


class CallBridge(TwilioSide, OpenAISide):
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
        self.started_at = None
        self.ended_at = None
        self.end_reason = None
        self.stream_sid = ""
        self.call_sid = ""
        self.account_sid = ""
        # The numbers the stream token vouches for (set by a verified start; "" if absent).
        self.caller_number = ""
        self.called_number = ""
        self._to_twilio = tw.Outbound("")
        self.persona = None  # chosen by the called number, once start verifies
        self.conversation = None
        self.record = None  # what the call said and did, once start verifies
        self._item_bytes = {}
        self.playout = Playout()
        self._early = deque(maxlen=limits.early_audio_frames)
        self.tone = ComfortTone(limits.comfort_tone_after_s)
        self.guard = PeerGuard(limits, log, self.accepted_at)
        # Counters for the end-of-call line.
        self.frames_from_caller = 0
        self.early_frames = 0
        self.dropped_before_ready = 0
        self.invalid_audio = 0
        self.barge_ins = 0
        self.first_audio_ms = None
        self._warned = set()

    # -- the call's record ----------------------------------------------------------

    def report(self) -> dict[str, object] | None:
        """The call's record for CALL_REPORT_URL, once it is over; None for a stream never verified."""
        record, conversation = self.record, self.conversation
        if record is None or conversation is None or self.started_at is None:
            return None
        ended = self.ended_at if self.ended_at is not None else self._monotonic()
        started = self.started_at

        def since_start(at: float) -> float:
            return round((at - started) * 1000, 1)

        for keys, at in conversation.keypad:
            record.digits(keys, since_start(at))
        conversation.keypad.clear()
        tool_calls = [{**call, "at_ms": since_start(call["at"])} for call in conversation.tool_calls]
        transfer = conversation.transfer
        if transfer is not None:
            transfer = {"destination": transfer["destination"], "ok": transfer["ok"],
                        "at_ms": since_start(transfer["at"])}
        return record.report(
            ended_wall=record.started_wall + (ended - started),
            end_reason=self.end_reason or "unknown", first_audio_ms=self.first_audio_ms, barge_ins=self.barge_ins,
            tool_calls=tool_calls, transfer=transfer,
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

    # -- time -----------------------------------------------------------------------------

    def tick(self, now: float, twilio_blocked_since: float = 0.0, openai_blocked_since: float = 0.0) -> Actions:
        """Deadlines, stalled peers, floods and the comfort tone; about every ``Limits.tick_s``.

        ``*_blocked_since`` is when data started waiting for that peer to read (0: none).
        """
        out = Actions()
        state = self.state
        if state is ENDED:
            return out
        settings, limits = self.settings, self.limits
        age = now - self.accepted_at
        if state is CallState.AWAITING_START and age > settings.start_timeout_s:
            self.log.warning("call.start_timeout waited_s=%.1f", age)
            return self._end(out, "start_timeout", CLOSE_POLICY_VIOLATION)
        if state is not ACTIVE and age > settings.session_timeout_s:
            self.log.error("openai.session_timeout waited_s=%.1f", age)
            return self._end(out, "session_timeout", CLOSE_INTERNAL_ERROR)
        if self.started_at is not None and now - self.started_at > settings.max_call_s:
            conversation = self.conversation
            if state is not ACTIVE or conversation is None:
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
        if self.state is not ENDED:
            self._comfort_tone(now, out)
        if self.state is ACTIVE:
            self.conversation.tick(now, out)  # type: ignore[union-attr]
        return out

    # -- what the relay did on the bridge's behalf ---------------------------------------------

    def tool_done(self, call_id: str, result: ToolOutcome) -> Actions:
        """A RunTool effect finished: its output goes to the model."""
        out = Actions()
        if self.state is ACTIVE:
            self.conversation.tool_done(call_id, result, out)  # type: ignore[union-attr]
        return out

    def update_done(self, ok: bool) -> Actions:
        """An UpdateCall effect finished: Twilio accepted it (``ok``) or could not be asked."""
        out = Actions()
        if self.state is ACTIVE:
            self.conversation.update_done(ok, self._monotonic(), out)  # type: ignore[union-attr]
        return out
