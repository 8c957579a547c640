"""The state one call's bridge keeps, shared by its two sides (relay/bridge.py explains the whole).

``BridgeState`` declares every attribute and the few helpers both sides use; the Twilio
side (relay/bridge_twilio.py) and the Realtime side (relay/bridge_openai.py) are mixins of
CallBridge that read and change it. Splitting by peer mirrors the two protocol modules.

Imports only the standard library and the relay's pure modules.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from enum import Enum

from relay import twilio_protocol as tw
from relay.actions import Actions, EndCall
from relay.call_record import CallRecord
from relay.call_settings import BridgeSettings, Persona
from relay.comfort_tone import ComfortTone
from relay.conversation import Conversation
from relay.limits import Limits
from relay.peer_guard import PeerGuard
from relay.playout import Playout
from relay.replay_guard import ReplayGuard


class CallState(Enum):
    """Where a call is in its life."""

    AWAITING_START = "awaiting_start"
    AWAITING_SESSION = "awaiting_session"
    ACTIVE = "active"
    ENDED = "ended"


ACTIVE = CallState.ACTIVE
ENDED = CallState.ENDED


class BridgeState:
    """Every attribute of one call's bridge, and what both sides need."""

    settings: BridgeSettings
    limits: Limits
    _monotonic: Callable[[], float]
    _wall: Callable[[], float]
    _replay_guard: ReplayGuard
    log: logging.LoggerAdapter  # type: ignore[type-arg]
    state: CallState
    accepted_at: float
    started_at: float | None
    ended_at: float | None
    end_reason: str | None
    stream_sid: str
    call_sid: str
    account_sid: str
    caller_number: str
    called_number: str
    _to_twilio: tw.Outbound
    persona: Persona | None
    conversation: Conversation | None
    record: CallRecord | None
    _item_bytes: dict[str, int]  # the record's audio_bytes: each assistant item's audio so far
    playout: Playout
    _early: deque[str]
    tone: ComfortTone
    guard: PeerGuard
    frames_from_caller: int
    early_frames: int
    dropped_before_ready: int
    invalid_audio: int
    barge_ins: int
    first_audio_ms: float | None
    _warned: set[str]

    def _end(self, out: Actions, reason: str, close_code: int, abort: tuple[str, ...] = ()) -> Actions:
        if self.state is not ENDED:
            self.state = ENDED
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
        return self.state is ENDED

    def _ms(self) -> float:
        """Milliseconds since the stream's ``start``."""
        return (self._monotonic() - (self.started_at or self.accepted_at)) * 1000
