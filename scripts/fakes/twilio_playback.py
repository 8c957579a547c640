"""Twilio's outbound buffer, as the simulated caller keeps it.

Audio plays at 8 bytes a millisecond, and each ``mark`` is reached once the audio queued
before it has played (Twilio then echoes it); a ``clear`` drops what has not played and
returns every pending mark at once.

The facts are in docs/twilio-media-streams.md. Independent of ``relay/``.
"""

from __future__ import annotations

import threading
from collections import deque

from scripts import audio


class Playback:
    """Twilio's outbound buffer: plays at 8 bytes/ms, echoes marks when reached."""

    def __init__(self) -> None:
        self.cursor = 0.0  # monotonic time the buffered audio finishes playing
        self.chunks: list[tuple[float, bytes]] = []  # (play start, audio)
        self.marks: deque[tuple[float, str]] = deque()
        self.lock = threading.Lock()

    def add_audio(self, now: float, data: bytes) -> None:
        """Queue audio behind what is already buffered."""
        with self.lock:
            start = max(now, self.cursor)
            self.chunks.append((start, data))
            self.cursor = start + len(data) / audio.BYTES_PER_MS / 1000

    def add_mark(self, now: float, name: str) -> None:
        """A mark, reached when the audio queued before it has played."""
        with self.lock:
            self.marks.append((max(now, self.cursor), name))

    def due_marks(self, now: float) -> list[str]:
        """The marks reached by ``now``."""
        with self.lock:
            out = []
            while self.marks and self.marks[0][0] <= now:
                out.append(self.marks.popleft()[1])
            return out

    def clear(self, now: float) -> list[str]:
        """Drop unplayed audio; every pending mark comes back at once."""
        with self.lock:
            self.chunks = [(start, data[:self._played(now, start, data)]) for start, data in self.chunks
                           if self._played(now, start, data) > 0]
            self.cursor = now
            names = [name for _, name in self.marks]
            self.marks.clear()
            return names

    def heard(self, now: float) -> bytes:
        """The audio played by ``now``."""
        with self.lock:
            return b"".join(data[:self._played(now, start, data)] for start, data in self.chunks)

    @staticmethod
    def _played(now: float, start: float, data: bytes) -> int:
        return int(max(0.0, min(now - start, len(data) / 8000)) * 8000)
