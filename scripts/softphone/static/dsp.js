// The softphone's signal processing: G.711 mu-law and a band-limited resampler.
// An ES module with no dependencies and no DOM: worklet.js imports it on the audio thread,
// and the tests import it in Chromium to check it against known signals.

export const LINE_RATE = 8000; // a phone line: 8 kHz, one mu-law byte a sample

// -- G.711 mu-law (ITU-T G.711; the same tables as scripts/audio.py) ----------------------
const BIAS = 0x84;
const CLIP = 32635;

/** The 16-bit sample a mu-law byte stands for. */
export function mulawToInt16(byte) {
  const u = ~byte & 0xff;
  const exponent = (u >> 4) & 0x07;
  const magnitude = ((((u & 0x0f) << 3) + BIAS) << exponent) - BIAS;
  return u & 0x80 ? -magnitude : magnitude;
}

/** The mu-law byte for a 16-bit sample. */
export function int16ToMulaw(sample) {
  let sign = 0;
  if (sample < 0) {
    sign = 0x80;
    sample = -sample;
  }
  sample = Math.min(sample, CLIP) + BIAS;
  const exponent = 31 - Math.clz32(sample >> 7); // the position of the top bit, 0..7
  const mantissa = (sample >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

/** A float sample (-1..1, Web Audio's) as a 16-bit one, rounded and clipped. */
export function floatToInt16(x) {
  return Math.max(-32768, Math.min(32767, Math.round(x * 32768)));
}

export const MULAW_TO_FLOAT = Float32Array.from({ length: 256 }, (_, u) => mulawToInt16(u) / 32768);
const INT16_TO_MULAW = Uint8Array.from({ length: 65536 }, (_, i) => int16ToMulaw(i < 32768 ? i : i - 65536));

/** Float samples to mu-law bytes, written into `out` (same length). */
export function encodeMulaw(samples, out = new Uint8Array(samples.length)) {
  for (let i = 0; i < samples.length; i++) out[i] = INT16_TO_MULAW[floatToInt16(samples[i]) & 0xffff];
  return out;
}

/** Mu-law bytes to float samples. */
export function decodeMulaw(bytes, out = new Float32Array(bytes.length)) {
  for (let i = 0; i < bytes.length; i++) out[i] = MULAW_TO_FLOAT[bytes[i]];
  return out;
}

// -- Resampling ----------------------------------------------------------------------------
// Band-limited interpolation (J. O. Smith, https://ccrma.stanford.edu/~jos/resample/): each
// output sample is the input convolved with a Kaiser-windowed sinc centred on the output's
// position. The sinc's cutoff is `rolloff` of the lower rate's Nyquist frequency, so going
// down to 8 kHz nothing above 4 kHz folds back (aliasing), and going up from 8 kHz the
// spectral images above 4 kHz are removed. Positions are kept as exact fractions
// (whole + num / outRate), so a long call never drifts by even a sample.

const STEPS = 512; // table entries per zero crossing of the sinc (linearly interpolated)

function besselI0(x) {
  let sum = 1;
  let term = 1;
  for (let k = 1; term > sum * 1e-12; k++) {
    term *= (x * x) / (4 * k * k);
    sum += term;
  }
  return sum;
}

function kernelTable(zeros, beta) {
  const n = zeros * STEPS;
  const table = new Float32Array(n + 2); // one guard entry for the interpolation at the edge
  const norm = besselI0(beta);
  for (let i = 0; i <= n; i++) {
    const u = i / STEPS;
    const sinc = i === 0 ? 1 : Math.sin(Math.PI * u) / (Math.PI * u);
    const x = u / zeros;
    table[i] = (sinc * besselI0(beta * Math.sqrt(Math.max(0, 1 - x * x)))) / norm;
  }
  return table;
}

export class Resampler {
  /**
   * A streaming resampler from `inRate` to `outRate` (whole numbers of Hz).
   * zeros: sinc zero crossings on each side (sharper cut, more work and delay);
   * rolloff: the cutoff as a fraction of the lower Nyquist frequency; beta: Kaiser's.
   */
  constructor(inRate, outRate, { zeros = 16, rolloff = 0.9, beta = 8 } = {}) {
    this.inRate = Math.round(inRate);
    this.outRate = Math.round(outRate);
    this.cut = rolloff * Math.min(1, this.outRate / this.inRate); // cycles per input sample, x2
    this.half = zeros / this.cut; // the kernel's half width, in input samples
    this.table = kernelTable(zeros, beta);
    this.tableEnd = zeros * STEPS;
    // buf[i] holds input sample number base + i; it starts with the zeros before the signal.
    const lead = Math.ceil(this.half) + 1;
    this.buf = new Float32Array(Math.max(4096, 4 * lead));
    this.base = -lead;
    this.len = lead;
    this.whole = 0; // the next output's position in the input: whole + num / outRate
    this.num = 0;
    this.out = new Float32Array(1024);
  }

  /** Seconds between an input sample going in and its output coming out. */
  get delaySeconds() {
    return this.half / this.inRate;
  }

  /** Resample the next block; the returned array is reused by the next call. */
  process(input) {
    this._append(input);
    const maxOut = Math.ceil(((this.len + 1) * this.outRate) / this.inRate) + 2;
    if (this.out.length < maxOut) this.out = new Float32Array(maxOut * 2);
    const { table, buf, half, cut, tableEnd } = this;
    const scale = cut * STEPS;
    let count = 0;
    for (;;) {
      const t = this.whole + this.num / this.outRate;
      const last = Math.floor(t + half);
      if (last - this.base >= this.len) break;
      let acc = 0;
      for (let k = Math.ceil(t - half); k <= last; k++) {
        const u = Math.abs(t - k) * scale;
        const i = u | 0;
        if (i >= tableEnd) continue;
        acc += buf[k - this.base] * (table[i] + (table[i + 1] - table[i]) * (u - i));
      }
      this.out[count++] = acc * cut;
      this.num += this.inRate;
      const carry = Math.floor(this.num / this.outRate);
      this.whole += carry;
      this.num -= carry * this.outRate;
    }
    this._forget(Math.ceil(this.whole - half) - 1);
    return this.out.subarray(0, count);
  }

  _append(input) {
    if (this.len + input.length > this.buf.length) {
      const bigger = new Float32Array(2 * (this.len + input.length));
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    this.buf.set(input, this.len);
    this.len += input.length;
  }

  _forget(firstNeeded) {
    const drop = firstNeeded - this.base;
    if (drop <= 0) return;
    this.buf.copyWithin(0, drop, this.len);
    this.len -= drop;
    this.base += drop;
  }
}
