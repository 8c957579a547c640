"""End to end, on loopback: the real relay with every peer a stand-in, as ``make run`` wires them.

- the relay: in process (``make_relay``) or under gunicorn, configured through its environment
  only: ASSISTANT_CONFIG (a file written per test), RELAY_SIGNING_SECRET, TWILIO_API_BASE_URL,
  CALL_REPORT_URL;
- the model: the stand-in (scripts/fakes/openai) acting a ``Script`` out, with short distinct
  clips so a test can tell, byte for byte, which line the caller heard;
- the tool: the example tool (scripts/fakes/example_tool.py), checking every signature;
- Twilio's REST API: its stand-in (scripts/fakes/twilio_rest_api.py), checking credentials;
- the report receiver (scripts/fakes/report_receiver.py), checking signatures;
- Twilio's Media Stream side: the simulated caller of ``make call``
  (scripts/fakes/twilio_caller.py), which echoes marks as the audio plays and ends its stream
  as Twilio does when the relay updates the call through the REST API.

Nothing of the relay is patched or mocked; tests read only what the peers saw, the relay's
``/metrics`` and (in process) its registry of live calls.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import pytest

from relay import stream_token
from relay.limits import Limits
from relay.report_delivery import DeliveryLimits
from scripts import audio
from scripts.fakes.example_tool import ExampleTool
from scripts.fakes.openai import Lines, Scenario, SessionRecord, Speech, StandinModel
from scripts.fakes.report_receiver import ReportReceiver
from scripts.fakes.twilio_caller import SimulatedCaller
from scripts.fakes.twilio_messages import TEST_ACCOUNT_SID, new_sid
from scripts.fakes.twilio_rest_api import TwilioRestApi
from scripts.fakes.twilio_webhook import StreamTarget
from tests.conftest import API_KEY, AUTH_TOKEN, DIAGNOSTIC_TOKEN, STREAM_SECRET
from tests.helpers import get, wait_until

SIGNING = "e2e-signing-secret-0123456789abcdefgh"
KEY_SID, KEY_SECRET = "SK" + "c" * 32, "e2e-api-key-secret-0123456789"
CALLER, CALLED, SLOW_LINE = "+15550001111", "+15550002222", "+15550003333"
DESTINATIONS = {"sales": "+15550100001", "desk": "sip:desk@pbx.example.com"}
LIMITS = Limits(tick_s=0.05, dtmf_pause_s=0.3, goodbye_s=4.0, rest_timeout_s=6.0, hangup_confirm_s=2.0,
                close_timeout_s=0.5)
QUICK = DeliveryLimits(attempts=3, total_s=5.0, first_backoff_s=0.05, max_backoff_s=0.2, attempt_timeout_s=1.0)
UTTERANCE = audio.read_wav_ulaw(audio.CALLER_WAV)
WORDS = audio.words_of(audio.CALLER_WAV)  # what the stand-in transcribes the utterance as


def clip(seed: int, ms: int) -> bytes:
    """Distinct audio of ``ms`` milliseconds (what a line sounds like does not matter here)."""
    return random.Random(seed).randbytes(ms * audio.BYTES_PER_MS)


GREETING = Speech(clip(1, 400), "Hello, this is the test line.")
LINES = Lines(preamble=Speech(clip(2, 1500), "One moment please, let me look that up for you right now."),
              answer=Speech(clip(3, 300), "Thanks for waiting, I found it."),
              sorry=Speech(clip(4, 300), "Sorry, I could not look that up."),
              goodbye=Speech(clip(5, 400), "Thank you for calling. Goodbye!"),
              handover=Speech(clip(6, 300), "Let me put you through."),
              transfer_failed=Speech(clip(7, 300), "Sorry, I could not put you through."))


def assistant_toml(tool_url: str, *, timeout_s: float = 2.0, slow_url: str | None = None) -> str:
    """An assistant file: lookup_order at ``tool_url``, end_call, two transfer destinations;
    calls to SLOW_LINE use ``slow_url`` for the same tool."""
    tool = """
name = "lookup_order"
description = "Look up an order by its number."
url = "{url}"
timeout_seconds = {timeout_s}
[{prefix}tools.parameters]
type = "object"
required = ["order_id"]
additionalProperties = false
[{prefix}tools.parameters.properties.order_id]
type = "string"
pattern = "^[0-9]{{1,12}}$"
"""
    text = 'instructions = "Help with orders."\ngreeting = "Hello."\nvoice = "marin"\n'
    text += "[[tools]]" + tool.format(url=tool_url, timeout_s=timeout_s, prefix="")
    text += "[end_call]\nenabled = true\n[transfer.destinations]\n"
    text += "".join(f'{name} = "{target}"\n' for name, target in DESTINATIONS.items())
    if slow_url is not None:
        text += f'[[numbers."{SLOW_LINE}".tools]]' + tool.format(url=slow_url, timeout_s=timeout_s,
                                                                  prefix=f'numbers."{SLOW_LINE}".')
    return text


@dataclass
class Stack:
    """One relay and its peers."""

    relay: Any  # RunningRelay, or GunicornRelay
    standin: StandinModel
    tool: ExampleTool
    rest: TwilioRestApi
    receiver: ReportReceiver
    callers: list[SimulatedCaller] = field(default_factory=list)

    def call(self, called: str = CALLED) -> SimulatedCaller:
        """A call to ``called``, connected and started (with the stream token the webhook would mint)."""
        call_sid = new_sid("CA")
        params = stream_token.mint_parameters(STREAM_SECRET, call_sid, time.time(), 300,
                                              caller_number=CALLER, called_number=called)
        url = self.relay.ws_url + "/twilio/realtime"
        caller = SimulatedCaller(StreamTarget(url, url, params, call_sid), auth_token=AUTH_TOKEN, timeout_s=5,
                                 rest_api_url=self.rest.base_url)
        self.callers.append(caller)
        assert caller.begin(), f"the relay refused the stream: {caller.result.handshake_status}"
        return caller

    def session(self, caller: SimulatedCaller) -> SessionRecord:
        """The stand-in session of ``caller``'s call (the one its first words reached)."""
        first = caller.result.sent_payloads[0]
        assert wait_until(lambda: any(first in s.appended for s in self.standin.sessions), 5)
        return next(s for s in self.standin.sessions if first in s.appended)

    def report(self, caller: SimulatedCaller, timeout_s: float = 5.0) -> dict[str, Any]:
        """The signed report the receiver accepted for ``caller``'s call."""
        call_sid = caller.target.call_sid

        def found() -> list[dict[str, Any]]:
            return [r for r in self.receiver.reports if r.get("call_sid") == call_sid]

        assert wait_until(found, timeout_s), f"no report for {call_sid}"
        [delivery] = [d for d in self.receiver.deliveries if call_sid.encode() in d.body]
        assert delivery.signature_ok
        return found()[0]

    def metrics(self) -> dict[str, float]:
        """Every sample of the relay's /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        status, _, body = get(self.relay.http_url + "/metrics", {"Authorization": f"Bearer {DIAGNOSTIC_TOKEN}"})
        assert status == 200
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples


def greeted(caller: SimulatedCaller, timeout_s: float = 5.0) -> None:
    """Wait until the greeting has arrived and played out."""
    assert caller.first_audio.wait(timeout_s), "no greeting"
    assert wait_until(lambda: time.monotonic() > caller.playback.cursor + 0.05, timeout_s)


def speak_then_hold(caller: SimulatedCaller) -> gevent.Greenlet:
    """Say the utterance (at once), then keep the line open with silence in real time, as a phone does."""
    caller.say(UTTERANCE + audio.silence(700), realtime=False)
    return gevent.spawn(caller.say, audio.silence(60_000), realtime=True)


def heard_in_order(caller: SimulatedCaller, *lines: Speech) -> bool:
    """True once the relay has sent these lines' audio, one after the other."""
    return b"".join(line.audio for line in lines) in caller.result.received_audio


def outputs(session: SessionRecord) -> list[dict[str, Any]]:
    """The function_call_output items the relay gave the model."""
    return [e["item"] for e in session.events
            if e.get("type") == "conversation.item.create" and e["item"].get("type") == "function_call_output"]


def output_document(session: SessionRecord, index: int = 0) -> Any:
    assert wait_until(lambda: len(outputs(session)) > index, 8), f"the model got {len(outputs(session))} outputs"
    return json.loads(outputs(session)[index]["output"])


@pytest.fixture
def e2e(make_relay: Any, gunicorn_relay: Any, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Factory: ``e2e(scenario, tool_mode=..., tool_timeout_s=..., rest_mode=..., api_key=False,
    gunicorn=False, slow_line=False, **relay_env)`` -> a Stack (everything stopped afterwards)."""
    stacks: list[Stack] = []
    others: list[Any] = []

    def start(scenario: Scenario, *, tool_mode: str = "normal", tool_delay_s: float = 3.0,
              tool_timeout_s: float = 2.0, rest_mode: str = "normal", api_key: bool = False, gunicorn: bool = False,
              slow_line: bool = False, **env: str) -> Stack:
        standin = StandinModel(api_key=API_KEY, speed=8.0, greeting_audio=GREETING.audio,
                               greeting_text=GREETING.text, scenario=scenario).start()
        tool = ExampleTool(SIGNING, mode=tool_mode, delay_s=tool_delay_s).start()
        rest = TwilioRestApi(credentials={TEST_ACCOUNT_SID: AUTH_TOKEN, KEY_SID: KEY_SECRET}, mode=rest_mode,
                             delay_s=10).start()
        receiver = ReportReceiver(SIGNING).start()
        slow_url = None
        if slow_line:
            slow = ExampleTool(SIGNING, mode="slow", delay_s=tool_delay_s).start()
            others.append(slow)
            slow_url = slow.url
        config = tmp_path / f"assistant-{len(stacks)}.toml"
        config.write_text(assistant_toml(tool.url, timeout_s=tool_timeout_s, slow_url=slow_url))
        settings = {"ASSISTANT_CONFIG": str(config), "RELAY_SIGNING_SECRET": SIGNING,
                    "TWILIO_API_BASE_URL": rest.base_url, "CALL_REPORT_URL": receiver.url, **env}
        if api_key:
            settings.update(TWILIO_API_KEY_SID=KEY_SID, TWILIO_API_KEY_SECRET=KEY_SECRET)
        relay = (gunicorn_relay(standin.url, **settings) if gunicorn
                 else make_relay(standin.url, limits=LIMITS, delivery_limits=QUICK, **settings))
        stack = Stack(relay, standin, tool, rest, receiver)
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        for caller in stack.callers:
            caller.finish()
        for peer in (stack.standin, stack.tool, stack.rest, stack.receiver):
            peer.stop()
    for other in others:
        other.stop()
