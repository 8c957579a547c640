"""The page's audio code, run in Chromium against known signals: mu-law, the resampler, the
jitter buffer (line.js and dsp.js are plain ES modules; worklet.js only wraps them).

The signals are made and measured here in Python: a tone's amplitude is its projection
over a whole number of cycles, so a passband is checked to a tenth of a decibel and an
alias or an image to -60 dB. Dropping or repeating samples fails every one of these.
"""

from __future__ import annotations

import array
import cmath
import json
import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import pytest

from scripts import audio
from scripts.softphone.gateway import Gateway
from scripts.softphone.incoming_call import Webhook
from scripts.softphone.phone_call import Line

Run = Callable[..., Any]


@pytest.fixture(scope="module")
def run_js(chromium: Callable[..., Any]) -> Iterator[Run]:
    """``run_js(body, **args)``: run ``body`` in the page with ``dsp`` and ``line`` imported."""
    gateway = Gateway(Line(Webhook("http://127.0.0.1:9", "http://127.0.0.1:9", "unused"))).start()
    page = chromium().new_page()
    page.goto(gateway.url)

    def run(body: str, **args: Any) -> Any:
        script = ("async (args) => { const dsp = await import('/dsp.js'); const line = await import('/line.js');"
                  f"{body} }}")
        return page.evaluate(script, args)

    yield run
    page.close()
    gateway.stop()


def amplitude(samples: list[float], freq: float, rate: int) -> float:
    """The amplitude of the ``freq`` component (``samples`` span whole cycles of it)."""
    step = -2j * math.pi * freq / rate
    total = sum(x * cmath.exp(step * n) for n, x in enumerate(samples))
    return 2 * abs(total) / len(samples)


def db(ratio: float) -> float:
    return 20 * math.log10(max(ratio, 1e-12))


TONES_JS = """
  const x = new Float32Array(args.n);
  for (let i = 0; i < args.n; i++)
    for (const f of args.freqs) x[i] += args.level * Math.sin(2 * Math.PI * f * i / args.inRate);
"""


# -- mu-law ------------------------------------------------------------------------------------------


def test_decoding_matches_g711_for_all_256_codes(run_js: Run) -> None:
    decoded = run_js("return Array.from({length: 256}, (_, u) => dsp.mulawToInt16(u));")
    assert decoded == audio.DECODE


def test_encoding_matches_g711_for_every_16_bit_sample(run_js: Run) -> None:
    encoded = run_js("return Array.from({length: 65536}, (_, i) => dsp.int16ToMulaw(i - 32768));")
    everything = array.array("h", range(-32768, 32768)).tobytes()
    assert bytes(encoded) == audio.ulaw_encode(everything)


def test_float_samples_are_rounded_and_clipped_before_encoding(run_js: Run) -> None:
    floats = [0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 100.4 / 32768, 100.6 / 32768]
    encoded = run_js("return Array.from(dsp.encodeMulaw(Float32Array.from(args.x)));", x=floats)
    expected = [32767 if f >= 1 else -32768 if f <= -1 else round(f * 32768) for f in floats]
    assert bytes(encoded) == audio.ulaw_encode(array.array("h", expected).tobytes())
    decoded = run_js("return Array.from(dsp.decodeMulaw(Uint8Array.from(args.b)));", b=encoded)
    assert decoded == pytest.approx([audio.DECODE[b] / 32768 for b in encoded])


# -- resampling ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_rate", [48000, 44100, 16000])
def test_down_to_8k_keeps_the_voice_band_and_lets_nothing_fold_back(run_js: Run, in_rate: int) -> None:
    # 1 kHz and 3 kHz must pass; 5 kHz is above the line's 4 kHz Nyquist frequency and would
    # fold back onto 3 kHz: so measure 3 kHz twice, with and without the 5 kHz tone.
    body = TONES_JS + "return Array.from(new dsp.Resampler(args.inRate, 8000).process(x));"
    passband = run_js(body, n=in_rate, inRate=in_rate, freqs=[1000, 3000], level=0.4)[400:4400]
    aliased = run_js(body, n=in_rate, inRate=in_rate, freqs=[1000, 5000], level=0.4)[400:4400]
    assert abs(db(amplitude(passband, 1000, 8000) / 0.4)) < 0.1
    assert db(amplitude(passband, 3000, 8000) / 0.4) > -1.0
    assert abs(db(amplitude(aliased, 1000, 8000) / 0.4)) < 0.1
    assert db(amplitude(aliased, 3000, 8000) / 0.4) < -60  # dropping samples leaves it at 0 dB


@pytest.mark.parametrize("out_rate", [48000, 44100])
def test_up_from_8k_leaves_no_images_above_the_voice_band(run_js: Run, out_rate: int) -> None:
    body = TONES_JS + "return Array.from(new dsp.Resampler(8000, args.outRate).process(x));"
    out = run_js(body, n=8000, inRate=8000, outRate=out_rate, freqs=[1000], level=0.5)
    window = out[out_rate // 20: out_rate // 20 + out_rate // 2]  # 0.5 s, after the first 50 ms
    assert abs(db(amplitude(window, 1000, out_rate) / 0.5)) < 0.1
    # Repeating samples leaves images at 7 and 9 kHz near -17 dB; interpolating lines, near -35 dB.
    for image in (7000, 9000, 15000):
        assert db(amplitude(window, image, out_rate) / 0.5) < -60, image


@pytest.mark.parametrize("in_rate,out_rate", [(44100, 8000), (8000, 48000), (8000, 44100)])
def test_blocks_of_any_size_give_exactly_what_one_block_gives(run_js: Run, in_rate: int, out_rate: int) -> None:
    same = run_js(TONES_JS + """
        const whole = Array.from(new dsp.Resampler(args.inRate, args.outRate).process(x));
        const r = new dsp.Resampler(args.inRate, args.outRate);
        const parts = [];
        let seed = 7;
        for (let at = 0; at < x.length;) {
          seed = (seed * 1103515245 + 12345) % 2147483648;
          const size = 1 + (seed % 300);
          parts.push(...r.process(x.subarray(at, at + size)));
          at += size;
        }
        return JSON.stringify(parts) === JSON.stringify(whole) ? whole.length : -1;
    """, n=in_rate // 2, inRate=in_rate, outRate=out_rate, freqs=[440, 1700], level=0.3)
    assert same > 0


def test_ten_seconds_at_44_1k_give_exactly_the_right_number_of_8k_samples(run_js: Run) -> None:
    """No drift: positions are exact fractions, so the count is what arithmetic says it is."""
    got = run_js("""
        const r = new dsp.Resampler(44100, 8000);
        const block = new Float32Array(128);
        let count = 0;
        for (let fed = 0; fed < 441000; fed += 128) count += r.process(block).length;
        return [count, r.half];
    """)
    count, half = got
    fed = math.ceil(441000 / 128) * 128
    # Output n sits at input position n * 44100 / 8000 and needs the inputs up to that plus `half`.
    expected = next(n for n in range(fed * 8000 // 44100 + 2, 0, -1)
                    if math.floor(Fraction(n - 1) * 44100 / 8000 + Fraction(half)) <= fed - 1)
    assert count == expected
    assert abs(count - fed * 8000 / 44100) < half * 8000 / 44100 + 1


# -- the line's two ends -------------------------------------------------------------------------------


def test_capture_makes_20_ms_frames_of_the_microphone_at_8k(run_js: Run) -> None:
    frames = run_js(TONES_JS + """
        const capture = new line.LineCapture(48000);
        const frames = [];
        for (let at = 0; at < x.length; at += 128) frames.push(...capture.push(x.subarray(at, at + 128)));
        return frames.map((f) => Array.from(f));
    """, n=48000, inRate=48000, freqs=[1000], level=0.5)
    assert {len(frame) for frame in frames} == {160}
    assert len(frames) == 49  # one second, less the resampler's 2 ms: the 50th frame is not complete yet
    samples = [audio.DECODE[b] / 32768 for frame in frames[2:42] for b in frame]
    assert abs(db(amplitude(samples, 1000, 8000) / 0.5)) < 0.2  # mu-law's own noise is -38 dB


PLAYER_JS = """
  const player = new line.LinePlayer(args.rate, args.options || {});
  const out = [];
  const quantum = new Float32Array(128);
  const render = (ms) => {
    for (let i = 0; i < Math.round(ms * args.rate / 1000 / 128); i++) {
      player.render(quantum);
      out.push(...quantum);
    }
  };
  const tone = (n, freq, level, phase = 0) =>
    dsp.encodeMulaw(Float32Array.from({length: n}, (_, i) => level * Math.sin(2 * Math.PI * freq * i / 8000 + phase)));
"""


def first_sound_ms(out: list[float], rate: int) -> float:
    return next(i for i, x in enumerate(out) if abs(x) > 1e-4) * 1000 / rate


def test_playback_waits_for_60_ms_of_audio_or_60_ms_of_time_before_starting(run_js: Run) -> None:
    short = run_js(PLAYER_JS + "player.push(tone(100, 500, 0.5)); render(200); return out;", rate=48000)
    assert 59 <= first_sound_ms(short, 48000) <= 64  # 100 samples only: it waited the 60 ms out
    enough = run_js(PLAYER_JS + "player.push(tone(800, 500, 0.5)); render(200); return out;", rate=48000)
    assert first_sound_ms(enough, 48000) < 3  # 100 ms buffered: it starts at once


def max_jump(samples: list[float]) -> float:
    """The largest change in slope between neighbouring samples: a click's signature."""
    return max(abs(samples[i + 1] - 2 * samples[i] + samples[i - 1]) for i in range(1, len(samples) - 1))


def test_a_buffer_that_runs_dry_mid_word_fades_out_instead_of_clicking(run_js: Run) -> None:
    # 100 ms of a 500 Hz tone that stops at its peak (a cut mid-word), then nothing.
    out = run_js(PLAYER_JS + """
        player.push(tone(800, 500, 0.8, Math.PI / 2 - 2 * Math.PI * 500 * 799 / 8000));
        render(300);
        return out;
    """, rate=48000)
    sound = out[: int(0.25 * 48000)]
    tone_curvature = (2 * math.pi * 500 / 48000) ** 2 * 0.8
    assert max_jump(sound) < 3 * tone_curvature  # an abrupt stop is more than ten times this


def test_clear_drops_the_buffer_with_a_5_ms_fade_and_counts_it_as_heard(run_js: Run) -> None:
    result = run_js(PLAYER_JS + """
        // Where will the clear cut? Ask a twin player, then put a peak of the tone right there.
        const twin = new line.LinePlayer(args.rate);
        twin.push(tone(8000, 500, 0.8));
        for (let i = 0; i < Math.round(100 * args.rate / 1000 / 128); i++) twin.render(quantum);
        player.push(tone(8000, 500, 0.8, Math.PI / 2 - 2 * Math.PI * 500 * twin.consumed / 8000));
        render(100);
        const dropped = player.clear();
        render(100);
        return {out, dropped, heard: player.heard(), received: player.received};
    """, rate=44100)
    out = result["out"]
    cut = round(100 * 44100 / 1000 / 128) * 128
    assert 8000 - 800 - 100 < result["dropped"] < 8000 - 800 + 100
    assert max(abs(x) for x in out[cut + int(0.008 * 44100):]) < 1e-3  # silent 8 ms after the clear
    tone_curvature = (2 * math.pi * 500 / 44100) ** 2 * 0.8
    assert max_jump(out[cut - 200: cut + 800]) < 3 * tone_curvature  # a cut at the peak is ten times this
    assert result["heard"] == result["received"] == 8000


def test_heard_counts_only_audio_that_has_reached_the_speaker(run_js: Run) -> None:
    """What the gateway echoes marks on: never ahead of what was played, less the device's latency."""
    trace = run_js(PLAYER_JS + """
        player.push(tone(1600, 500, 0.5));
        const trace = [];
        for (let i = 0; i < 100; i++) { render(128 * 1000 / args.rate); trace.push([out.length, player.heard()]); }
        return {trace, out};
    """, rate=48000, options={"latencySamples": 80})  # 10 ms of device latency
    samples = trace["out"]
    start = next(i for i, x in enumerate(samples) if abs(x) > 1e-4)
    heard = [h for _, h in trace["trace"]]
    assert heard == sorted(heard) and heard[-1] == 1600
    for emitted, h in trace["trace"]:
        audible_ms = (emitted - start) / 48
        assert h <= max(0.0, audible_ms - 10) * 8 + 8, (emitted, h)  # one 1 ms step of slack
    assert json.dumps(heard).count("1600") > 1  # and it gets there
