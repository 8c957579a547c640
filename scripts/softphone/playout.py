"""What Twilio knows about the far end's playback: which marks have been played.

Twilio buffers the audio the relay sends and echoes each ``mark`` "when the audio
before it has played, or at once if there is no audio buffered"; after a ``clear`` it
drops the buffer and echoes every pending mark at once
(https://www.twilio.com/docs/voice/media-streams/websocket-messages).

Here the far end is the page. Positions count 8 kHz samples (one mu-law byte each) of
the assistant's audio: ``sent`` is how many went to the page, ``played`` how many the
page says it has played. After a ``clear`` the page counts what it dropped as played,
so both sides agree that the cleared audio is behind them.

Pure: no sockets, no clock, no gevent.
"""

from __future__ import annotations

from collections import deque


class Playout:
    """Marks waiting for the page to play the audio before them."""

    def __init__(self) -> None:
        self.sent = 0
        self.played = 0
        self._marks: deque[tuple[int, str]] = deque()

    @property
    def pending(self) -> int:
        """Marks not yet echoed."""
        return len(self._marks)

    @property
    def buffered(self) -> int:
        """Samples sent to the page and not yet played."""
        return self.sent - self.played

    def audio(self, samples: int) -> None:
        """``samples`` more of the assistant's audio went to the page."""
        self.sent += samples

    def mark(self, name: str) -> list[str]:
        """A mark after the audio sent so far: echoed now if nothing is left to play."""
        if self.played >= self.sent:
            return [name]
        self._marks.append((self.sent, name))
        return []

    def played_up_to(self, position: int) -> list[str]:
        """The page has played ``position`` samples: the marks now due, in order.

        A position behind what is known (a report that crossed a ``clear``) changes
        nothing; one past what was sent is held to what was sent.
        """
        position = min(position, self.sent)
        if position <= self.played:
            return []
        self.played = position
        due = []
        while self._marks and self._marks[0][0] <= position:
            due.append(self._marks.popleft()[1])
        return due

    def clear(self) -> list[str]:
        """The buffer is dropped: every pending mark comes back at once."""
        names = [name for _position, name in self._marks]
        self._marks.clear()
        self.played = self.sent
        return names
