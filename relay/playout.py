"""What the caller has actually heard of the assistant, told by the marks Twilio echoes.

After each chunk of assistant audio the relay sends Twilio a ``mark`` and queues
``(name, item_id, bytes)``. Twilio echoes a mark once the audio before it has played, so
each echo that matches the head of the queue adds its bytes to what the caller heard of
that item. On barge-in the relay sends Twilio ``clear`` and truncates the item at
``heard_bytes // 8`` ms (8 kHz mu-law: 8 bytes a millisecond), then drops the queue:
Twilio echoes every pending mark after a ``clear`` (cleared, not played), and those echoes
no longer match anything. Every step is O(1).

Pure: standard library only.
"""

from __future__ import annotations

from collections import deque

BYTES_PER_MS = 8


class Playout:
    """Marks in flight and the audio heard of the item playing."""

    __slots__ = ("pending", "heard_item_id", "heard_bytes", "suppressed_item_id", "marks_sent", "bytes_sent")

    def __init__(self) -> None:
        self.pending: deque[tuple[str, str, int]] = deque()
        self.heard_item_id = ""
        self.heard_bytes = 0
        self.suppressed_item_id = ""  # deltas of a truncated item still in flight
        self.marks_sent = 0
        self.bytes_sent = 0

    @property
    def playing(self) -> bool:
        """True while audio we sent has not been confirmed played."""
        return bool(self.pending)

    def sent(self, item_id: str, size: int) -> str:
        """``size`` bytes of ``item_id`` went to Twilio: the name of the mark to follow them."""
        self.marks_sent += 1
        name = str(self.marks_sent)
        self.pending.append((name, item_id, size))
        self.bytes_sent += size
        return name

    def echoed(self, name: str) -> None:
        """Twilio echoed a mark: the audio before it has played (or was cleared)."""
        pending = self.pending
        if not pending or pending[0][0] != name:
            return  # the echo of a mark dropped by a clear: cleared, not played
        _name, item_id, size = pending.popleft()
        if item_id != self.heard_item_id:
            self.heard_item_id = item_id
            self.heard_bytes = 0
        self.heard_bytes += size

    def interrupt(self) -> tuple[str, int] | None:
        """The caller talked over the assistant: ``(item_id, audio_end_ms)`` to truncate, or None.

        None when nothing is playing (the caller is simply talking). Afterwards the queue
        is empty and later deltas of the interrupted item are suppressed.
        """
        if not self.pending:
            return None
        item_id = self.pending[0][1]
        heard = self.heard_bytes if self.heard_item_id == item_id else 0
        self.pending.clear()
        self.suppressed_item_id = item_id
        self.heard_item_id, self.heard_bytes = "", 0
        return item_id, heard // BYTES_PER_MS
