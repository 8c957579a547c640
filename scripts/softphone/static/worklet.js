// The softphone's audio thread: two AudioWorklet processors.
//   capture:  microphone (the context's rate) -> 8 kHz -> mu-law, posted in 20 ms frames of 160 bytes
//   playback: mu-law from the line -> a jitter buffer at 8 kHz -> the context's rate -> speakers
import { LINE_RATE, MULAW_TO_FLOAT, Resampler, encodeMulaw } from "./dsp.js";

const FRAME = 160; // 20 ms at 8 kHz
const FADE = 40; // 5 ms at 8 kHz: the ramp that replaces every cut (a clear, a buffer run dry)
const STEP = 8; // line samples resampled at a time (1 ms)
const HISTORY = 512; // steps remembered to map "at the speaker now" back to a line position
const REPORT_EVERY = 8; // render quanta between played reports (about 20 ms)

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.resampler = new Resampler(sampleRate, LINE_RATE);
    this.mono = new Float32Array(128);
    this.frame = new Float32Array(FRAME);
    this.fill = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    const n = channels.length ? channels[0].length : 128;
    if (this.mono.length !== n) this.mono = new Float32Array(n);
    this.mono.fill(0); // no input connected: silence, as a phone line still carries
    for (const channel of channels) {
      for (let i = 0; i < n; i++) this.mono[i] += channel[i] / channels.length;
    }
    for (const sample of this.resampler.process(this.mono)) {
      this.frame[this.fill++] = sample;
      if (this.fill === FRAME) {
        const bytes = encodeMulaw(this.frame);
        this.port.postMessage(bytes.buffer, [bytes.buffer]);
        this.fill = 0;
      }
    }
    return true;
  }
}

class Playback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.prebuffer = o.prebufferSamples ?? 480; // wait for 60 ms of audio before starting...
    this.maxWait = o.maxWaitSamples ?? 480; // ...or for 60 ms, whichever comes first
    this.latency = Math.round((o.outputLatency ?? 0) * LINE_RATE); // device latency, in line samples
    this.maxBuffered = o.maxBufferedSamples ?? 10 * 60 * LINE_RATE; // Twilio keeps up to 10 minutes
    this.resampler = new Resampler(LINE_RATE, sampleRate);
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
    this.emitted = 0; // output samples written, at the context's rate
    this.fifo = new Float32Array(0);
    this.step = new Float32Array(STEP);
    this.history = { line: new Float64Array(HISTORY), consumed: new Float64Array(HISTORY), next: 0 };
    this.quanta = 0;
    this.reported = 0;
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(data) {
    if (data === "clear") {
      this.clear();
      return;
    }
    const bytes = new Uint8Array(data);
    this.received += bytes.length;
    if (this.buffered + bytes.length > this.maxBuffered) {
      this.consumed += bytes.length; // dropped, as Twilio drops past 10 minutes (31931)
      return;
    }
    this.chunks.push(bytes);
    this.buffered += bytes.length;
  }

  clear() {
    const dropped = this.buffered;
    const keep = Math.min(FADE, this.buffered);
    this.tail = [];
    for (let i = 0; i < keep; i++) this.tail.push(this.take() * this.gain * (1 - (i + 1) / keep));
    this.chunks = [];
    this.offset = 0;
    this.buffered = 0;
    this.consumed = this.received; // everything before the clear is behind us now
    this.playing = false;
    this.waited = 0;
    this.gain = 0;
    this.dryAt = -1;
    this.port.postMessage({ type: "cleared", samples: dropped });
  }

  take() {
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

  nextSample() {
    if (this.tail.length) return this.tail.shift();
    if (!this.playing && this.buffered > 0) {
      this.waited++;
      if (this.buffered >= this.prebuffer || this.waited >= this.maxWait) {
        this.playing = true;
        if (this.dryAt >= 0 && this.lineClock - this.dryAt < 2 * LINE_RATE / 10) this.underruns++;
      }
    }
    if (!this.playing) return 0;
    if (this.buffered === 0) {
      this.playing = false;
      this.waited = 0;
      this.dryAt = this.lineClock;
      return 0;
    }
    const sample = this.take();
    // Ramp down over the last FADE samples of what is buffered, back up (as fast) when more
    // arrives: a buffer that runs dry mid-word fades out instead of clicking.
    const target = Math.min(1, this.buffered / FADE);
    this.gain = target < this.gain ? target : Math.min(target, this.gain + 1 / FADE);
    return sample * this.gain;
  }

  feed() {
    for (let i = 0; i < STEP; i++) this.step[i] = this.nextSample();
    this.lineClock += STEP;
    const h = this.history;
    h.line[h.next % HISTORY] = this.lineClock;
    h.consumed[h.next % HISTORY] = this.consumed;
    h.next++;
    const out = this.resampler.process(this.step);
    const joined = new Float32Array(this.fifo.length + out.length);
    joined.set(this.fifo);
    joined.set(out, this.fifo.length);
    this.fifo = joined;
  }

  // Output sample m stands for line position m * 8000 / sampleRate: the line position at the
  // speaker now is what was emitted, less the device's latency. The audio heard is what had
  // been consumed when the line clock stood there.
  heard() {
    const atSpeaker = (this.emitted * LINE_RATE) / sampleRate - this.latency;
    const h = this.history;
    for (let k = h.next - 1; k >= Math.max(0, h.next - HISTORY); k--) {
      if (h.line[k % HISTORY] <= atSpeaker) return h.consumed[k % HISTORY];
    }
    return 0;
  }

  process(_inputs, outputs) {
    const output = outputs[0];
    const n = output[0].length;
    while (this.fifo.length < n) this.feed();
    for (const channel of output) channel.set(this.fifo.subarray(0, n));
    this.fifo = this.fifo.slice(n);
    this.emitted += n;
    if (++this.quanta % REPORT_EVERY === 0) {
      const heard = this.heard();
      if (heard > this.reported) {
        this.reported = heard;
        this.port.postMessage({ type: "played", samples: heard, buffered: this.buffered, underruns: this.underruns });
      }
    }
    return true;
  }
}

registerProcessor("capture", Capture);
registerProcessor("playback", Playback);
