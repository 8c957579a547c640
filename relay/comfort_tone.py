"""A soft comfort tone, generated: what a caller hears while the assistant is not ready yet.

When the Realtime session takes longer than usual to open, a silent line sounds dead and
callers hang up. Telephone systems answer this with a tone; ours is a quiet two-note chime
(G4 and D5, a fifth: no ringback or busy signal is built that way, so it is not mistaken
for either) of 180 ms with a raised-cosine envelope (no clicks), once a second, at about
-24 dBFS. It stops at the assistant's first audio (the relay clears what Twilio has
buffered) or when the call ends and the fallback plays.

Generated once, at import, as 8 kHz G.711 mu-law (ITU-T G.711, the format Twilio streams),
and cut into base64 chunks the bridge sends as Twilio ``media`` payloads.

Pure: standard library only.
"""

from __future__ import annotations

import base64
import math

SAMPLE_RATE = 8000
CHUNK_MS = 100  # one media message per 100 ms of tone
_CYCLE_S = 1.0
_NOTE_S = 0.18
_FREQUENCIES_HZ = (392.0, 587.33)
_PEAK = 0.063  # linear amplitude of the chord's peak: about -24 dBFS

_BIAS = 0x84
_CLIP = 32635


def ulaw(sample: int) -> int:
    """One 16-bit linear sample as a G.711 mu-law byte."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sample < 0 else sample, _CLIP) + _BIAS
    exponent = max(0, magnitude.bit_length() - 8)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _cycle() -> bytes:
    samples = int(_CYCLE_S * SAMPLE_RATE)
    note = int(_NOTE_S * SAMPLE_RATE)
    out = bytearray()
    for n in range(samples):
        value = 0.0
        if n < note:
            envelope = 0.5 - 0.5 * math.cos(2 * math.pi * n / note)  # raised cosine: 0 -> 1 -> 0
            value = envelope * sum(math.sin(2 * math.pi * f * n / SAMPLE_RATE) for f in _FREQUENCIES_HZ)
            value *= _PEAK / len(_FREQUENCIES_HZ)
        out.append(ulaw(round(value * 32767)))
    return bytes(out)


CYCLE = _cycle()
_CHUNK_BYTES = SAMPLE_RATE * CHUNK_MS // 1000
#: The tone as base64 payloads of CHUNK_MS each, to be sent in a loop.
CHUNKS: tuple[str, ...] = tuple(
    base64.b64encode(CYCLE[i : i + _CHUNK_BYTES]).decode("ascii") for i in range(0, len(CYCLE), _CHUNK_BYTES)
)
# How far ahead of the clock the tone is queued at Twilio (the bridge ticks every 0.25 s).
LEAD_MS = 500


class ComfortTone:
    """When to play the tone on one call, and which chunk comes next."""

    __slots__ = ("after_s", "queued_until_ms", "over", "_next")

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.queued_until_ms: int | None = None  # tone queued at Twilio up to this moment (monotonic ms)
        self.over = False
        self._next = 0

    @property
    def playing(self) -> bool:
        """True while Twilio may still hold tone to play."""
        return self.queued_until_ms is not None

    def due(self, now: float, waited_s: float) -> list[str]:
        """The payloads to queue now (``waited_s``: how long the caller has waited)."""
        if self.over:
            return []
        now_ms = int(now * 1000)
        if self.queued_until_ms is None:
            if waited_s < self.after_s:
                return []
            self.queued_until_ms = now_ms
        payloads = []
        while self.queued_until_ms < now_ms + LEAD_MS:
            payloads.append(CHUNKS[self._next])
            self._next = (self._next + 1) % len(CHUNKS)
            self.queued_until_ms = max(self.queued_until_ms, now_ms) + CHUNK_MS
        return payloads

    def stop(self) -> bool:
        """No more tone; True if Twilio still holds some (it must be cleared)."""
        self.over = True
        was_playing = self.queued_until_ms is not None
        self.queued_until_ms = None
        return was_playing
