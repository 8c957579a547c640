// The softphone's audio thread: two AudioWorklet processors around line.js.
//   capture:  posts each 20 ms frame of mu-law (160 bytes) to the page
//   playback: plays what the page passes on; reports how much has been heard, and clears
import { LINE_RATE } from "./dsp.js";
import { LineCapture, LinePlayer } from "./line.js";

const REPORT_EVERY = 8; // render quanta between "played" reports (about 20 ms)

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.line = new LineCapture(sampleRate);
    this.mono = new Float32Array(128);
  }

  process(inputs) {
    const channels = inputs[0];
    const n = channels.length ? channels[0].length : 128;
    if (this.mono.length !== n) this.mono = new Float32Array(n);
    this.mono.fill(0); // no input connected: silence, as a phone line still carries
    for (const channel of channels) {
      for (let i = 0; i < n; i++) this.mono[i] += channel[i] / channels.length;
    }
    for (const frame of this.line.push(this.mono)) this.port.postMessage(frame.buffer, [frame.buffer]);
    return true;
  }
}

class Playback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const latency = (options.processorOptions || {}).outputLatency || 0;
    this.line = new LinePlayer(sampleRate, { latencySamples: Math.round(latency * LINE_RATE) });
    this.quanta = 0;
    this.reported = 0;
    this.port.onmessage = ({ data }) => {
      if (data === "clear") this.port.postMessage({ type: "cleared", samples: this.line.clear() });
      else this.line.push(new Uint8Array(data));
    };
  }

  process(_inputs, outputs) {
    const output = outputs[0];
    this.line.render(output[0]);
    for (let c = 1; c < output.length; c++) output[c].set(output[0]);
    if (++this.quanta % REPORT_EVERY === 0) {
      const heard = this.line.heard();
      if (heard > this.reported) {
        this.reported = heard;
        const { buffered, underruns } = this.line;
        this.port.postMessage({ type: "played", samples: heard, buffered, underruns });
      }
    }
    return true;
  }
}

registerProcessor("capture", Capture);
registerProcessor("playback", Playback);
