"""The caller's words for ``make call --wav FILE``: any common WAV, as the phone line's 8 kHz mu-law.

A phone line carries one channel of 8 kHz G.711 mu-law. A recording made on a laptop is
usually 44.1 or 48 kHz, often stereo, 16- or 24-bit or float. ``load`` reads the WAV itself
(the RIFF chunks, https://www.mmsp.ece.mcgill.ca/Documents/AudioFormats/WAVE/WAVE.html:
PCM of 8, 16, 24 or 32 bits, 32- or 64-bit float, mu-law, and the same inside
WAVE_FORMAT_EXTENSIBLE), mixes the channels down to one (their mean), resamples to 8 kHz
with a band-limiting filter (scripts/resample.py) and encodes mu-law. Anything else is a
WavProblem: one or two lines saying what is wrong and the command that converts the file.

Only the first MAX_SECONDS are used: a call holds the line for ``--hold`` seconds anyway.
"""

from __future__ import annotations

import array
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from scripts import audio
from scripts.resample import resample

MAX_SECONDS = 60
_PCM, _FLOAT, _MULAW, _EXTENSIBLE = 1, 3, 7, 0xFFFE
_NAMES = {2: "Microsoft ADPCM", 6: "A-law", 0x11: "IMA ADPCM", 0x55: "MP3", 0x50: "MPEG"}


class WavProblem(Exception):
    """What is wrong with the file and what to do, in one or two lines."""


@dataclass(frozen=True)
class CallerAudio:
    """The caller's audio as the line carries it, and what was done to get there (None: nothing)."""

    ulaw: bytes
    note: str | None


@dataclass(frozen=True)
class _Format:
    tag: int
    channels: int
    rate: int
    bits: int

    def describe(self) -> str:
        kind = {_PCM: "PCM", _FLOAT: "float", _MULAW: "mu-law"}.get(self.tag, "?")
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        return f"{self.rate / 1000:g} kHz {layout} {self.bits}-bit {kind}"


def _convert_hint(path: Path) -> str:
    return (f"convert it first: ffmpeg -i {path} -ac 1 -ar 8000 -c:a pcm_s16le caller.wav "
            f"(or: sox {path} -c 1 -r 8000 -b 16 caller.wav), then --wav caller.wav")


def load(path: Path | str) -> CallerAudio:
    """The file's first MAX_SECONDS as 8 kHz mono mu-law; WavProblem if it cannot be read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WavProblem(f"--wav {path}: no such file.\nGive a WAV file (any sample rate, mono or stereo), "
                         f"for example --wav {audio.CALLER_WAV.relative_to(audio.ASSETS.parent.parent)}.") from None
    except IsADirectoryError:
        raise WavProblem(f"--wav {path} is a folder, not a WAV file.\nGive the path of a .wav file.") from None
    except OSError as exc:
        raise WavProblem(f"--wav {path}: cannot read it ({exc.strerror}).\nCheck the file's permissions.") from None
    fmt, samples = _decode(path, data)
    samples = samples[: MAX_SECONDS * fmt.rate * fmt.channels]
    mono = _mix_down(samples, fmt.channels)
    at_8k = resample(mono, fmt.rate, audio.SAMPLE_RATE)
    pcm = array.array("h", (max(-32768, min(32767, round(v * 32768))) for v in at_8k))
    if sys.byteorder == "big":
        pcm.byteswap()
    plain = fmt == _Format(_PCM, 1, audio.SAMPLE_RATE, 16)
    cut = len(samples) == MAX_SECONDS * fmt.rate * fmt.channels
    note = None if plain and not cut else (
        f"{path.name}: {fmt.describe()}, converted to 8 kHz mono mu-law"
        + (" (channels mixed down)" if fmt.channels > 1 else "")
        + (f"; only its first {MAX_SECONDS} s are used" if cut else ""))
    return CallerAudio(audio.ulaw_encode(pcm.tobytes()), note)


def _decode(path: Path, data: bytes) -> tuple[_Format, list[float]]:
    """The format and the interleaved samples in [-1, 1)."""
    if not data:
        raise WavProblem(f"--wav {path} is empty.\nGive a WAV file with the caller's words in it.")
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavProblem(f"--wav {path} is not a WAV file (it does not start with a RIFF/WAVE header).\n"
                         f"If it is audio, {_convert_hint(path)}.")
    chunks = _chunks(data)
    if b"fmt " not in chunks or b"data" not in chunks:
        raise WavProblem(f"--wav {path} is a damaged WAV file (no {'fmt' if b'fmt ' not in chunks else 'data'} "
                         f"chunk).\n{_convert_hint(path).capitalize()}.")
    fmt = _format(path, chunks[b"fmt "])
    block = fmt.channels * fmt.bits // 8
    body = chunks[b"data"]
    body = body[: len(body) - len(body) % block]
    if not body:
        raise WavProblem(f"--wav {path} holds no audio.\nGive a WAV file with the caller's words in it.")
    return fmt, _samples(fmt, body)


def _chunks(data: bytes) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    offset = 12
    while offset + 8 <= len(data):
        name, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        found.setdefault(name, data[offset + 8: offset + 8 + size])  # a data chunk cut short is read as far as it goes
        offset += 8 + size + (size & 1)
    return found


def _format(path: Path, chunk: bytes) -> _Format:
    if len(chunk) < 16:
        raise WavProblem(f"--wav {path} is a damaged WAV file (its fmt chunk is {len(chunk)} bytes).\n"
                         f"{_convert_hint(path).capitalize()}.")
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == _EXTENSIBLE and len(chunk) >= 26:
        tag = struct.unpack_from("<H", chunk, 24)[0]  # the sub-format GUID starts with the format tag
    fmt = _Format(tag, channels, rate, bits)
    readable = ((tag == _PCM and bits in (8, 16, 24, 32)) or (tag == _FLOAT and bits in (32, 64))
                or (tag == _MULAW and bits == 8))
    if not readable:
        name = _NAMES.get(tag, f"WAV format {tag}") if tag not in (_PCM, _FLOAT, _MULAW) else fmt.describe()
        raise WavProblem(f"--wav {path}: make call cannot read its audio ({name}).\n"
                         f"{_convert_hint(path).capitalize()}.")
    if channels < 1 or not 1000 <= rate <= 384_000:
        raise WavProblem(f"--wav {path} says it has {channels} channels at {rate} Hz: a damaged header.\n"
                         f"{_convert_hint(path).capitalize()}.")
    return fmt


def _samples(fmt: _Format, body: bytes) -> list[float]:
    if fmt.tag == _MULAW:
        return [audio.DECODE[b] / 32768 for b in body]
    if fmt.tag == _FLOAT:
        values = array.array("f" if fmt.bits == 32 else "d", body)
        if sys.byteorder == "big":
            values.byteswap()
        return [max(-1.0, min(1.0, v)) for v in values]
    if fmt.bits == 8:  # unsigned, centred on 128
        return [(b - 128) / 128 for b in body]
    if fmt.bits == 24:
        scale = 1 / 8388608
        return [int.from_bytes(body[i:i + 3], "little", signed=True) * scale for i in range(0, len(body), 3)]
    ints = array.array("h" if fmt.bits == 16 else "i", body)
    if ints.itemsize * 8 != fmt.bits:
        raise WavProblem(f"this machine has no {fmt.bits}-bit integer array type")
    if sys.byteorder == "big":
        ints.byteswap()
    scale = 1 / (1 << (fmt.bits - 1))
    return [v * scale for v in ints]


def _mix_down(samples: list[float], channels: int) -> list[float]:
    if channels == 1:
        return samples
    lanes = [samples[c::channels] for c in range(channels)]
    return [sum(frame) / channels for frame in zip(*lanes, strict=False)]
