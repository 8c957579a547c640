"""G.711 mu-law and WAV helpers for the stand-in model, the simulated caller and the bench.

Pure Python (``audioop`` left the standard library in 3.13). The phone line carries
8 kHz mu-law, one byte per sample: 160 bytes per 20 ms frame, 8 bytes per millisecond.
"""

from __future__ import annotations

import array
import base64
import sys
import wave
from pathlib import Path

SAMPLE_RATE = 8000
FRAME_BYTES = 160  # 20 ms
BYTES_PER_MS = 8
ASSETS = Path(__file__).resolve().parent / "assets"
GREETING_WAV = ASSETS / "standin_greeting.wav"
CALLER_WAV = ASSETS / "caller_utterance.wav"

_BIAS = 0x84
_CLIP = 32635


def _decode_byte(u: int) -> int:
    u = ~u & 0xFF
    exponent = (u >> 4) & 0x07
    sample = (((u & 0x0F) << 3) + _BIAS) << exponent
    sample -= _BIAS
    return -sample if u & 0x80 else sample


def _encode_sample(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    if sign:
        sample = -sample
    sample = min(sample, _CLIP) + _BIAS
    exponent = max((sample >> 7).bit_length() - 1, 0)
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


DECODE = [_decode_byte(u) for u in range(256)]
_ENCODE = bytes(_encode_sample(s - 65536 if s >= 32768 else s) for s in range(65536))
# |sample| / 256 per mu-law byte: ``frame.translate(LEVEL)`` then ``sum()`` gives a
# frame's energy with no Python loop over samples.
LEVEL = bytes(min(abs(v) >> 8, 255) for v in DECODE)
SILENCE = 0xFF  # mu-law code for 0


def ulaw_encode(pcm16: bytes) -> bytes:
    """16-bit signed little-endian PCM to mu-law."""
    samples = array.array("h", pcm16)
    if sys.byteorder == "big":
        samples.byteswap()
    table = _ENCODE
    return bytes(table[s & 0xFFFF] for s in samples)


def ulaw_decode(ulaw: bytes) -> bytes:
    """mu-law to 16-bit signed little-endian PCM."""
    samples = array.array("h", (DECODE[b] for b in ulaw))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def level(frame: bytes) -> float:
    """Mean absolute amplitude of a mu-law frame, 0..128 (a VAD's energy)."""
    return sum(frame.translate(LEVEL)) / len(frame) if frame else 0.0


def read_wav_ulaw(path: Path | str) -> bytes:
    """A 16-bit 8 kHz mono WAV as mu-law bytes."""
    with wave.open(str(path), "rb") as wav:
        if wav.getframerate() != SAMPLE_RATE or wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError(f"{path}: need 16-bit mono 8 kHz WAV")
        return ulaw_encode(wav.readframes(wav.getnframes()))


def words_of(path: Path | str) -> str:
    """What a clip says: the text file beside its WAV (``caller_utterance.txt``), one line.

    The clips in scripts/assets were spoken by espeak-ng (``-v en-us``, 160 words a minute;
    150 for the caller) and resampled to 8 kHz by sox; espeak-ng says each ``.txt`` again
    to within a sample's rounding, which is how the words of the two oldest clips were
    established.
    """
    return Path(path).with_suffix(".txt").read_text(encoding="utf-8").strip()


def write_wav_ulaw(path: Path | str, ulaw: bytes) -> None:
    """Write mu-law audio as a 16-bit 8 kHz mono WAV anyone can play."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(ulaw_decode(ulaw))


def frames(ulaw: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    """Split audio into ``size``-byte frames, the last one padded with silence."""
    out = [ulaw[i : i + size] for i in range(0, len(ulaw), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + bytes([SILENCE]) * (size - len(out[-1]))
    return out


def b64(data: bytes) -> str:
    """Base64 text, as Twilio and OpenAI carry audio."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Bytes from base64 text."""
    return base64.b64decode(text)


def silence(ms: int) -> bytes:
    """``ms`` milliseconds of mu-law silence."""
    return bytes([SILENCE]) * (ms * BYTES_PER_MS)
