// The softphone page's main thread: the buttons, the timeline, and the wiring between the
// microphone, the two worklets and the gateway's WebSocket (/phone: one socket, one call).
const $ = (selector) => document.querySelector(selector);
let call = null; // the call in progress: { ws, context, nodes, stream, t0, ... }

function note(event, text, fields = {}) {
  const ms = call ? performance.now() - call.t0 : 0;
  const item = document.createElement("li");
  item.dataset.event = event;
  item.dataset.ms = ms.toFixed(0);
  for (const [key, value] of Object.entries(fields)) item.dataset[key] = value;
  item.textContent = `+${ms.toFixed(0).padStart(6)} ms  ${text}`;
  $("#timeline").append(item);
}

function setStatus(text) {
  $("#status").textContent = text;
}

function setInCall(inCall) {
  $("#call").disabled = inCall;
  $("#hangup").disabled = !inCall;
  for (const key of document.querySelectorAll("#keypad button")) key.disabled = !inCall;
}

async function startCall() {
  $("#timeline").replaceChildren();
  setInCall(true);
  call = { t0: performance.now(), firstHeard: false, barges: 0 };
  try {
    const context = new AudioContext({ latencyHint: "interactive" });
    await context.audioWorklet.addModule("worklet.js");
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const capture = new AudioWorkletNode(context, "capture", { numberOfOutputs: 0 });
    const playback = new AudioWorkletNode(context, "playback", {
      numberOfInputs: 0,
      processorOptions: { outputLatency: context.outputLatency || context.baseLatency || 0 },
    });
    context.createMediaStreamSource(stream).connect(capture);
    playback.connect(context.destination);
    Object.assign(call, { context, stream, capture, playback });
    note("audio", `audio ready: ${context.sampleRate} Hz, line 8000 Hz`, { rate: context.sampleRate });
  } catch (error) {
    finish("you", `no audio: ${error.message} (allow the microphone and try again)`);
    return;
  }
  const ws = new WebSocket(`ws://${location.host}/phone`);
  ws.binaryType = "arraybuffer";
  call.ws = ws;
  ws.onclose = () => {
    if (call && call.ws === ws) finish("gateway", "the gateway closed the connection");
  };
  const current = call; // messages that arrive after this call has ended are dropped
  call.capture.port.onmessage = (event) => {
    // The caller's voice goes on the line once the stream is up, as Twilio's does after `start`.
    if (current.streaming && ws.readyState === WebSocket.OPEN) ws.send(event.data);
  };
  call.playback.port.onmessage = (event) => call === current && onPlayback(event.data);
  ws.onmessage = (event) => call === current && onGatewayMessage(event.data);
  setStatus("Calling…");
}

function onGatewayMessage(data) {
  if (data instanceof ArrayBuffer) {
    call.playback.port.postMessage(data, [data]);
    return;
  }
  const message = JSON.parse(data);
  switch (message.type) {
    case "progress":
      note(message.step, message.detail);
      if (message.step === "connected") {
        call.streaming = true;
        setStatus("Connected: talk to the assistant.");
      }
      break;
    case "first_audio":
      note("relay_first_audio", `the relay's first audio, ${message.ms} ms after the stream started`, {
        relayMs: message.ms,
      });
      break;
    case "clear":
      call.barges++;
      call.playback.port.postMessage("clear");
      break;
    case "notice":
      note("notice", message.text);
      break;
    case "ended":
      finish(message.by, message.reason, message.afterwards);
      break;
  }
}

function onPlayback(message) {
  if (message.type === "played") {
    if (!call.firstHeard) {
      call.firstHeard = true;
      note("first_audio", `first audio heard, ${(performance.now() - call.t0).toFixed(0)} ms after Call`);
    }
    $("#meter").textContent = `jitter buffer ${(message.buffered / 8).toFixed(0)} ms · underruns ${message.underruns}`;
    call.underruns = message.underruns;
    if (call.ws.readyState === WebSocket.OPEN) {
      call.ws.send(JSON.stringify({ type: "played", samples: message.samples }));
    }
  } else if (message.type === "cleared") {
    note("barge_in", `barge-in: the assistant was cut off (${(message.samples / 8).toFixed(0)} ms of its audio dropped)`, {
      droppedMs: (message.samples / 8).toFixed(0),
    });
  }
}

function press(digit) {
  if (call && call.ws && call.ws.readyState === WebSocket.OPEN) {
    call.ws.send(JSON.stringify({ type: "dtmf", digit }));
    note("digit", `you pressed ${digit}`, { digit });
  }
}

function hangUp() {
  if (call && call.ws && call.ws.readyState === WebSocket.OPEN) {
    call.ws.send(JSON.stringify({ type: "hangup" }));
    setStatus("Hanging up…");
  } else {
    finish("you", "you hung up");
  }
}

const WHO = { caller: "you", assistant: "the assistant's side", gateway: "the softphone", api: "the REST API" };

function finish(by, reason, afterwards = []) {
  if (!call) return;
  const ending = call;
  const who = WHO[by] || by;
  note("ended", `call ended by ${who}: ${reason}`, { by });
  for (const step of afterwards) note("afterwards", `Twilio would now ${step}`);
  call = null;
  ending.ws?.close();
  ending.stream?.getTracks().forEach((track) => track.stop());
  ending.context?.close();
  setInCall(false);
  setStatus(`Call ended by ${who}: ${reason}`);
}

$("#call").addEventListener("click", startCall);
$("#hangup").addEventListener("click", hangUp);
for (const key of document.querySelectorAll("#keypad button")) {
  key.addEventListener("click", () => press(key.dataset.digit));
}
setInCall(false);
