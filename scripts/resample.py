"""Sample-rate conversion for the caller's WAV: a polyphase windowed-sinc filter, pure Python.

A phone line carries 8 kHz audio, and a recording is usually 16, 44.1 or 48 kHz. Dropping
samples to get there folds everything above 4 kHz back into the voice band (a 6 kHz hiss
comes out as a 2 kHz whistle), so the signal is low-passed first. This is the textbook
band-limited interpolation (J. O. Smith, "Digital Audio Resampling",
https://ccrma.stanford.edu/~jos/resample/): each output sample is a sum of input samples
weighted by a sinc at the cutoff, shaped by a Kaiser window
(https://en.wikipedia.org/wiki/Kaiser_window). For a rational ratio L/M (8000/44100 =
80/441), output sample n sits at input position n*M/L, so only L distinct filter phases
exist: they are computed once, and each output sample is one dot product.

Cutoff (-6 dB) at 90% of the lower Nyquist frequency, 3.6 kHz for 8 kHz; 24 zero crossings
each side; Kaiser beta 8. Going to 8 kHz: within 0.6 dB up to 3.4 kHz (the telephone band is
0.3-3.4 kHz), more than 80 dB down from 4.1 kHz, unity gain at DC (measured by
tests/scripts/test_caller_wav.py). About 0.1 s of CPU per second of 48 kHz audio.
"""

from __future__ import annotations

import math
from functools import lru_cache
from operator import mul

CUTOFF = 0.9  # of the lower Nyquist frequency
ZERO_CROSSINGS = 24  # of the sinc, each side
KAISER_BETA = 8.0


def _bessel_i0(x: float) -> float:
    """The zeroth-order modified Bessel function of the first kind (its power series)."""
    total, term, k = 1.0, 1.0, 1
    while term > 1e-12 * total:
        term *= (x / (2 * k)) ** 2
        total += term
        k += 1
    return total


@lru_cache(maxsize=8)
def _phases(rate_in: int, rate_out: int) -> tuple[int, int, int, tuple[tuple[float, ...], ...]]:
    """(L, M, half-width in input samples, the L filter phases) for rate_in -> rate_out."""
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    cutoff = CUTOFF * min(rate_in, rate_out) / 2 / rate_in  # cycles per input sample
    half = math.ceil(ZERO_CROSSINGS / (2 * cutoff))  # input samples each side of the centre
    norm = _bessel_i0(KAISER_BETA)
    phases = []
    for phase in range(up):
        offset = phase / up  # where the output sample sits between two input samples
        taps = []
        for j in range(-half, half + 2):
            t = j - offset
            if abs(t) >= half:
                taps.append(0.0)
                continue
            x = 2 * cutoff * t
            sinc = 1.0 if x == 0 else math.sin(math.pi * x) / (math.pi * x)
            window = _bessel_i0(KAISER_BETA * math.sqrt(1 - (t / half) ** 2)) / norm
            taps.append(sinc * window)
        total = sum(taps)
        phases.append(tuple(tap / total for tap in taps))  # unity gain at DC, for every phase
    return up, down, half, tuple(phases)


def resample(samples: list[float], rate_in: int, rate_out: int) -> list[float]:
    """``samples`` at ``rate_in`` Hz, band-limited and resampled to ``rate_out`` Hz."""
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive (got {rate_in} -> {rate_out})")
    if rate_in == rate_out or not samples:
        return list(samples)
    up, down, half, phases = _phases(rate_in, rate_out)
    # Tap j (-half .. half+1) of output n weighs input k0 + j, k0 = n*M // L: padded[k0 + half + j].
    padded = [0.0] * half + list(samples) + [0.0] * (half + 2)
    width = 2 * half + 2
    out = []
    for n in range(len(samples) * up // down):
        position = n * down
        start = position // up
        out.append(sum(map(mul, phases[position % up], padded[start:start + width])))
    return out
