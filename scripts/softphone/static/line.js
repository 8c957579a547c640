// The two ends of the phone line inside the page, free of Web Audio so they can be tested
// anywhere (worklet.js wraps them in AudioWorklet processors).
//   LineCapture: the microphone at the context's rate -> 8 kHz -> mu-law frames of 20 ms
//   LinePlayer:  mu-law from the line -> a jitter buffer at 8 kHz -> the context's rate
import { LINE_RATE, MULAW_TO_FLOAT, Resampler, encodeMulaw } from "./dsp.js";

export const FRAME = 160; // 20 ms at 8 kHz: one Twilio media message
const FADE = 40; // 5 ms at 8 kHz: the ramp that replaces every cut (a clear, a buffer run dry)
const STEP = 8; // line samples resampled at a time (1 ms)
const HISTORY = 1024; // steps remembered to map "at the speaker now" back to a line position

export class LineCapture {
  constructor(rate) {
    this.resampler = new Resampler(rate, LINE_RATE);
    this.frame = new Float32Array(FRAME);
    this.fill = 0;
  }

  /** Mono samples at the context's rate in; the 160-byte mu-law frames completed by them out. */
  push(samples) {
    const frames = [];
    for (const sample of this.resampler.process(samples)) {
      this.frame[this.fill++] = sample;
      if (this.fill === FRAME) {
        frames.push(encodeMulaw(this.frame));
        this.fill = 0;
      }
    }
    return frames;
  }
}

export class LinePlayer {
  /**
   * rate: the context's; prebufferSamples: line audio to gather before starting to play,
   * unless maxWaitSamples of line time pass first; latencySamples: the device's output
   * latency in line samples (what "heard" subtracts); maxBufferedSamples: Twilio keeps 10 minutes.
   */
  constructor(rate, { prebufferSamples = 480, maxWaitSamples = 480, latencySamples = 0,
    maxBufferedSamples = 10 * 60 * LINE_RATE } = {}) {
    Object.assign(this, { rate, prebufferSamples, maxWaitSamples, latencySamples, maxBufferedSamples });
    this.resampler = new Resampler(LINE_RATE, rate);
    this.chunks = []; // the jitter buffer: mu-law chunks, oldest first
    this.offset = 0; // read position in chunks[0]
    this.buffered = 0;
    this.received = 0; // line samples received (dropped ones included)
    this.consumed = 0; // line samples taken from the buffer; a clear counts what it dropped
    this.lineClock = 0; // line samples fed to the resampler: audio or silence
    this.playing = false;
    this.waited = 0;
    this.gain = 0;
    this.tail = []; // the faded-out samples that finish the audio a clear cut short
    this.dryAt = -1;
    this.underruns = 0;
    this.emitted = 0; // output samples rendered, at the context's rate
    this.fifo = new Float32Array(4096);
    this.fifoLength = 0;
    this.step = new Float32Array(STEP);
    this.history = { line: new Float64Array(HISTORY), consumed: new Float64Array(HISTORY), next: 0 };
  }

  /** Audio from the line (a Uint8Array of mu-law). */
  push(bytes) {
    this.received += bytes.length;
    if (this.buffered + bytes.length > this.maxBufferedSamples) {
      this.consumed += bytes.length; // dropped, as Twilio drops past 10 minutes (31931)
      return;
    }
    this.chunks.push(bytes);
    this.buffered += bytes.length;
  }

  /** Drop what is buffered (a barge-in), fading out over 5 ms; how many samples were dropped. */
  clear() {
    const dropped = this.buffered;
    const keep = Math.min(FADE, this.buffered);
    const from = this.gain;
    this.tail = [];
    for (let i = 0; i < keep; i++) this.tail.push(this._take() * from * (1 - (i + 1) / keep));
    this.chunks = [];
    this.offset = 0;
    this.buffered = 0;
    this.consumed = this.received; // everything before the clear is behind us now
    this.playing = false;
    this.waited = 0;
    this.gain = 0;
    this.dryAt = -1;
    return dropped;
  }

  /** Fill `out` (one render quantum at the context's rate). */
  render(out) {
    while (this.fifoLength < out.length) this._feed();
    out.set(this.fifo.subarray(0, out.length));
    this.fifo.copyWithin(0, out.length, this.fifoLength);
    this.fifoLength -= out.length;
    this.emitted += out.length;
  }

  /**
   * How much of the line's audio has been heard. Output sample m stands for line position
   * m * 8000 / rate, so the line position at the speaker now is what was rendered, less the
   * device's latency; what was heard is what had been consumed when the line clock stood there.
   */
  heard() {
    const atSpeaker = (this.emitted * LINE_RATE) / this.rate - this.latencySamples;
    const h = this.history;
    for (let k = h.next - 1; k >= Math.max(0, h.next - HISTORY); k--) {
      if (h.line[k % HISTORY] <= atSpeaker) return h.consumed[k % HISTORY];
    }
    return 0;
  }

  _take() {
    const chunk = this.chunks[0];
    const u = chunk[this.offset++];
    if (this.offset === chunk.length) {
      this.chunks.shift();
      this.offset = 0;
    }
    this.buffered--;
    this.consumed++;
    return MULAW_TO_FLOAT[u];
  }

  _next() {
    if (this.tail.length) return this.tail.shift();
    if (!this.playing && this.buffered > 0) {
      this.waited++;
      if (this.buffered >= this.prebufferSamples || this.waited >= this.maxWaitSamples) {
        this.playing = true;
        // Audio again within 200 ms of running dry: the buffer ran out mid-speech.
        if (this.dryAt >= 0 && this.lineClock - this.dryAt < LINE_RATE / 5) this.underruns++;
      }
    }
    if (!this.playing) return 0;
    if (this.buffered === 0) {
      this.playing = false;
      this.waited = 0;
      this.dryAt = this.lineClock;
      return 0;
    }
    const sample = this._take();
    // Ramp down over the last FADE samples buffered, back up (as fast) when more arrives:
    // a buffer that runs dry mid-word fades out instead of clicking.
    const target = Math.min(1, this.buffered / FADE);
    this.gain = target < this.gain ? target : Math.min(target, this.gain + 1 / FADE);
    return sample * this.gain;
  }

  _feed() {
    for (let i = 0; i < STEP; i++) this.step[i] = this._next();
    this.lineClock += STEP;
    const h = this.history;
    h.line[h.next % HISTORY] = this.lineClock;
    h.consumed[h.next % HISTORY] = this.consumed;
    h.next++;
    const out = this.resampler.process(this.step);
    if (this.fifoLength + out.length > this.fifo.length) {
      const bigger = new Float32Array(2 * (this.fifoLength + out.length));
      bigger.set(this.fifo.subarray(0, this.fifoLength));
      this.fifo = bigger;
    }
    this.fifo.set(out, this.fifoLength);
    this.fifoLength += out.length;
  }
}
