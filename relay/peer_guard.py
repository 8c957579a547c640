"""PeerGuard: whether whoever speaks for Twilio on a stream behaves like Twilio.

Counts what a real Twilio never sends (not JSON, invalid events, binary frames) and judges
the rate of messages and of caller audio over ``Limits.flood_window_s``. Unknown event
names are tolerated (Twilio adds events over time) and each is logged once, but a peer
can invent a name per message, so after MAX_UNKNOWN_EVENT_NAMES names the rest are
neither logged nor remembered. It never ends a call itself: it tells the bridge why one
should end.

Pure: standard library only.
"""

from __future__ import annotations

import logging

from relay.limits import Limits

MAX_UNKNOWN_EVENT_NAMES = 8
_AUDIO_BYTES_PER_S = 8000  # 8 kHz mu-law


class PeerGuard:
    """One stream's counts of suspicious input."""

    __slots__ = ("limits", "log", "bad_messages", "_since", "_messages", "_audio_chars", "_unknown_events")

    def __init__(self, limits: Limits, log: logging.LoggerAdapter, now: float) -> None:  # type: ignore[type-arg]
        self.limits = limits
        self.log = log
        self.bad_messages = 0
        self._since = now
        self._messages = 0
        self._audio_chars = 0  # base64 characters of caller audio
        self._unknown_events: set[str] = set()

    def received(self, messages: int, audio_chars: int) -> None:
        """One socket read: ``messages`` messages, ``audio_chars`` base64 characters of caller audio."""
        self._messages += messages
        self._audio_chars += audio_chars

    def bad_message(self, kind: str, message: str, *args: object) -> bool:
        """One more message no Twilio sends (logged the first time); True once there are too many."""
        self.bad_messages += 1
        limit = self.limits.max_bad_messages
        if self.bad_messages == 1 or self.bad_messages == limit:
            self.log.warning(message + " count=%d", *args, self.bad_messages)
        if self.bad_messages == limit:
            self.log.warning("call.too_many_bad_messages kind=%s", kind)
        return self.bad_messages >= limit

    def unknown_event(self, name: str) -> None:
        """An event name this relay does not know: logged once, a bounded number of names."""
        seen = self._unknown_events
        if name in seen or len(seen) > MAX_UNKNOWN_EVENT_NAMES:
            return
        seen.add(name)
        if len(seen) > MAX_UNKNOWN_EVENT_NAMES:
            self.log.warning("twilio.unknown_events_suppressed names_logged=%d", MAX_UNKNOWN_EVENT_NAMES)
        else:
            # Quoted: the name is the peer's text, and must not forge a log line of its own.
            self.log.warning("twilio.unknown_event event=%r", name)

    def flooding(self, now: float) -> bool:
        """Once a window: True if the peer sent far more than Twilio ever does."""
        window = now - self._since
        limits = self.limits
        if window < limits.flood_window_s:
            return False
        messages_per_s = self._messages / window
        audio_x_realtime = self._audio_chars * 3 / 4 / _AUDIO_BYTES_PER_S / window
        self._since, self._messages, self._audio_chars = now, 0, 0
        if messages_per_s > limits.flood_messages_per_s:
            self.log.warning("twilio.flood messages_per_s=%.0f", messages_per_s)
            return True
        if audio_x_realtime > limits.flood_audio_ratio:
            self.log.warning("twilio.flood audio_x_realtime=%.1f", audio_x_realtime)
            return True
        return False
