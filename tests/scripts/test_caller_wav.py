"""``make call --wav``: a laptop's recording (another rate, stereo, 24-bit, float) reaches the line
properly converted, measured in the spectrum; files it cannot use get two plain lines, not a traceback."""

from __future__ import annotations

import array
import math
import struct
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import pytest

from scripts import audio, wav_input
from scripts.resample import resample
from tests.conftest import ROOT


def tone(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> list[float]:
    return [amplitude * math.sin(2 * math.pi * freq * i / rate) for i in range(int(rate * seconds))]


def amplitude_at(samples: list[float], freq: float, rate: int) -> float:
    """The amplitude of ``freq`` in the middle half of ``samples`` (one DFT bin, no edge effects)."""
    middle = samples[len(samples) // 4: 3 * len(samples) // 4]
    re = sum(v * math.cos(2 * math.pi * freq * i / rate) for i, v in enumerate(middle))
    im = sum(v * math.sin(2 * math.pi * freq * i / rate) for i, v in enumerate(middle))
    return 2 * math.hypot(re, im) / len(middle)


def db(ratio: float) -> float:
    return 20 * math.log10(max(ratio, 1e-12))


# -- the resampler, measured -----------------------------------------------------------------------


@pytest.mark.parametrize("rate", [48000, 44100, 22050, 16000, 11025])
def test_the_voice_band_passes_unchanged(rate: int) -> None:
    for freq in (300, 1000, 3000):
        samples = tone(freq, rate, 0.5)
        out = resample(samples, rate, 8000)
        assert len(out) == len(samples) * 8000 // rate
        assert abs(db(amplitude_at(out, freq, 8000) / 0.5)) < 0.1, (rate, freq)
    assert db(amplitude_at(resample(tone(3400, rate, 0.5), rate, 8000), 3400, 8000) / 0.5) > -1.0


@pytest.mark.parametrize("rate", [48000, 44100, 16000])
def test_what_the_line_cannot_carry_is_filtered_out_not_folded_back(rate: int) -> None:
    # Keeping every n-th sample would turn these into loud tones at 8000 - f Hz (6 kHz -> 2 kHz).
    for freq in (4100, 5000, 6000, 7000):
        out = resample(tone(freq, rate, 0.5), rate, 8000)
        alias = 8000 - freq
        assert db(amplitude_at(out, alias, 8000) / 0.5) < -70, (rate, freq)
    dropped = tone(6000, 48000, 0.5)[::6]  # what naive decimation would give: the alias at full level
    assert db(amplitude_at(dropped, 2000, 8000) / 0.5) > -1


def test_dc_keeps_its_level_and_upsampling_works_too() -> None:
    out = resample([0.25] * 4800, 48000, 8000)
    assert all(abs(v - 0.25) < 1e-9 for v in out[100:-100])
    up = resample(tone(1000, 6000, 0.5), 6000, 8000)
    assert len(up) == 4000 and abs(db(amplitude_at(up, 1000, 8000) / 0.5)) < 0.1


# -- reading WAV files --------------------------------------------------------------------------------


def decoded(ulaw: bytes) -> list[float]:
    return [audio.DECODE[b] / 32768 for b in ulaw]


def riff(fmt_tag: int, channels: int, rate: int, bits: int, body: bytes, extensible: bool = False) -> bytes:
    """A WAV file's bytes, written by hand (the wave module writes 8/16/24/32-bit PCM only)."""
    block = channels * bits // 8
    if extensible:  # WAVE_FORMAT_EXTENSIBLE: the real tag is the first two bytes of the sub-format GUID
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 3)
        fmt += struct.pack("<H", fmt_tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    else:
        fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 4) + b"INFO"
    chunks += b"data" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def stereo(left: list[float], right: list[float], encode: Callable[[float], bytes]) -> bytes:
    return b"".join(encode(a) + encode(b) for a, b in zip(left, right, strict=True))


def test_a_44k_stereo_recording_is_mixed_down_and_resampled(tmp_path: Path) -> None:
    left, right = tone(1000, 44100, 1.0, 0.6), [0.0] * 44100
    path = tmp_path / "laptop.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(stereo(left, right, lambda v: round(v * 32767).to_bytes(2, "little", signed=True)))
    loaded = wav_input.load(path)
    assert loaded.note == ("laptop.wav: 44.1 kHz stereo 16-bit PCM, converted to 8 kHz mono mu-law "
                           "(channels mixed down)")
    samples = decoded(loaded.ulaw)
    assert len(samples) == 8000
    assert abs(db(amplitude_at(samples, 1000, 8000) / 0.3)) < 0.3  # the mean of the two channels, mu-law's error


@pytest.mark.parametrize("tag,bits,encode", [
    (1, 24, lambda v: round(v * 8388607).to_bytes(3, "little", signed=True)),
    (1, 32, lambda v: round(v * 2147483647).to_bytes(4, "little", signed=True)),
    (1, 8, lambda v: bytes([round(v * 127) + 128])),
    (3, 32, lambda v: struct.pack("<f", v)),
    (3, 64, lambda v: struct.pack("<d", v)),
])
@pytest.mark.parametrize("extensible", [False, True])
def test_other_sample_formats(tmp_path: Path, tag: int, bits: int, encode: Callable[[float], bytes],
                              extensible: bool) -> None:
    samples = tone(440, 48000, 0.5, 0.5)
    path = tmp_path / "take.wav"
    path.write_bytes(riff(tag, 1, 48000, bits, b"".join(map(encode, samples)), extensible))
    loaded = wav_input.load(path)
    assert loaded.note is not None and f"48 kHz mono {bits}-bit" in loaded.note
    out = decoded(loaded.ulaw)
    assert len(out) == 4000 and abs(db(amplitude_at(out, 440, 8000) / 0.5)) < 0.5


def test_the_phone_format_itself_is_used_as_it_is(tmp_path: Path) -> None:
    loaded = wav_input.load(audio.CALLER_WAV)
    assert loaded.note is None and loaded.ulaw == audio.read_wav_ulaw(audio.CALLER_WAV)
    mulaw = tmp_path / "line.wav"
    mulaw.write_bytes(riff(7, 1, 8000, 8, loaded.ulaw))
    again = wav_input.load(mulaw)
    assert decoded(again.ulaw) == decoded(loaded.ulaw) and again.note is not None  # (-0 comes back as +0)


def test_a_long_recording_is_cut_to_what_a_call_uses(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(array.array("h", [0]) * (8000 * (wav_input.MAX_SECONDS + 5)))
    loaded = wav_input.load(path)
    assert len(loaded.ulaw) == 8000 * wav_input.MAX_SECONDS
    assert loaded.note is not None and f"only its first {wav_input.MAX_SECONDS} s are used" in loaded.note


# -- files make call cannot use: two plain lines, exit 2, before any network -------------------------


def call_with(wav: Path, tmp_path: Path) -> list[str]:
    completed = subprocess.run([sys.executable, "-m", "scripts.call", "--wav", str(wav),
                                "--env-file", str(tmp_path / "no-stack.env")],
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert completed.stdout == "" and "Traceback" not in completed.stderr, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 2, completed.stderr
    return lines


def test_a_missing_file(tmp_path: Path) -> None:
    assert call_with(tmp_path / "nope.wav", tmp_path) == [
        f"make call: --wav {tmp_path / 'nope.wav'}: no such file.",
        "Give a WAV file (any sample rate, mono or stereo), for example --wav scripts/assets/caller_utterance.wav."]


def test_a_file_that_is_not_a_wav(tmp_path: Path) -> None:
    mp3 = tmp_path / "voice.mp3"
    mp3.write_bytes(b"ID3\x04\x00\x00" + bytes(200))
    first, second = call_with(mp3, tmp_path)
    assert first == f"make call: --wav {mp3} is not a WAV file (it does not start with a RIFF/WAVE header)."
    assert second.startswith(f"If it is audio, convert it first: ffmpeg -i {mp3} -ac 1 -ar 8000 -c:a pcm_s16le "
                             f"caller.wav (or: sox {mp3} -c 1 -r 8000 -b 16 caller.wav)")


@pytest.mark.parametrize("make_file,first", [
    (lambda p: p.write_bytes(b""), "is empty."),
    (lambda p: p.mkdir(), "is a folder, not a WAV file."),
    (lambda p: p.write_bytes(riff(6, 1, 8000, 8, bytes(800))), ": make call cannot read its audio (A-law)."),
    (lambda p: p.write_bytes(riff(1, 1, 8000, 16, b"")), "holds no audio."),
    (lambda p: p.write_bytes(riff(1, 1, 8000, 16, bytes(800))[:36]), "is a damaged WAV file (no data chunk)."),
])
def test_other_files_it_cannot_use(tmp_path: Path, make_file: Callable[[Path], object], first: str) -> None:
    path = tmp_path / "odd.wav"
    make_file(path)
    assert call_with(path, tmp_path)[0] == f"make call: --wav {path}{'' if first[0] == ':' else ' '}{first}"
