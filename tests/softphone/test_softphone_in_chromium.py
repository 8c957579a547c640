"""A person's call from the softphone page, in Chromium, through the real local stack.

``python -m scripts.local_stack`` (what ``make run`` runs) starts the relay, the webhook, the
stand-in model and the softphone gateway on free loopback ports; Chromium opens the page
its banner names, with a fake microphone that says ``caller_utterance.wav``; the test
clicks Call, lets the caller talk over the greeting, presses a key and hangs up. The
relay's own ``call.ended`` line says what it saw.
"""

from __future__ import annotations

import array
import os
import re
import signal
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scripts import audio
from tests.conftest import ROOT, free_port

SECRET_PREFIXES = ("OPENAI_", "RELAY_", "WEBHOOK_", "TWILIO_", "STREAM_TOKEN", "DIAGNOSTIC_")


@dataclass
class Stack:
    """The local stack as make run starts it: where the page is, and everything it logged."""

    page_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout_s: float = 5.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while (found := re.search(pattern, self.log())) is None:
            assert time.monotonic() < deadline, f"{pattern!r} never appeared in the stack's log:\n{self.log()}"
            time.sleep(0.05)
        return found


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[Stack]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}  # the stand-in model
    log_path = tmp_path / "stack.log"
    ports = [str(free_port()) for _ in range(7)]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.local_stack", "--relay-port", ports[0], "--webhook-port", ports[1],
             "--standin-port", ports[2], "--softphone-port", ports[3], "--tool-port", ports[4],
             "--reports-port", ports[5], "--twilio-api-port", ports[6], "--env-file", str(tmp_path / "stack.env")],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    stack = Stack("", log_path)
    try:
        deadline = time.monotonic() + 30
        while "Liveline is running" not in stack.log():
            assert process.poll() is None and time.monotonic() < deadline, f"make run failed:\n{stack.log()}"
            time.sleep(0.05)
        stack.page_url = stack.wait_for(r"softphone +(http://127\.0\.0\.1:\d+/)").group(1)
        yield stack
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C, as a person stops make run
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def caller_wav(tmp_path: Path) -> Path:
    """The fake microphone: half a second of silence, the caller's sentence, then silence.

    Chromium's fake capture reads a PCM WAV (16-bit here) and converts its rate itself;
    ``%noloop`` on the flag plays it once.
    """
    pcm = array.array("h", bytes(8000)).tobytes()  # 0.5 s at 8 kHz, 16-bit
    spoken = audio.ulaw_decode(audio.read_wav_ulaw(audio.CALLER_WAV))
    path = tmp_path / "caller.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(audio.SAMPLE_RATE)
        wav.writeframes(pcm + spoken + pcm * 2)
    return path


def field(line: str, name: str) -> str:
    found = re.search(rf"\b{name}=(\S+)", line)
    assert found, f"no {name} in {line}"
    return found.group(1)


def test_a_person_calls_talks_over_the_greeting_presses_a_key_and_hangs_up(
        local_stack: Stack, caller_wav: Path, chromium: Callable[..., Any]) -> None:
    browser = chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                       f"--use-file-for-fake-audio-capture={caller_wav}%noloop",
                       "--autoplay-policy=no-user-gesture-required")
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.goto(local_stack.page_url)
    timeline = "#timeline li"

    page.click("#call")
    heard = page.wait_for_selector(f'{timeline}[data-event="first_audio"]', timeout=10_000)
    relay_first = page.wait_for_selector(f'{timeline}[data-event="relay_first_audio"]')
    barge_in = page.wait_for_selector(f'{timeline}[data-event="barge_in"]', timeout=10_000)
    page.click('#keypad button[data-digit="5"]')
    page.wait_for_selector(f'{timeline}[data-event="digit"][data-digit="5"]')
    page.wait_for_timeout(500)  # the caller's line stays open a moment: frames keep flowing
    page.click("#hangup")
    ended = page.wait_for_selector(f'{timeline}[data-event="ended"]', timeout=5_000)

    assert ended.get_attribute("data-by") == "caller"
    assert "you hung up" in ended.inner_text()
    assert page.inner_text("#status").startswith("Call ended by you")
    relay_line = local_stack.wait_for(r"call\.ended .*").group(0)
    assert field(relay_line, "reason") == "caller_hangup"
    assert int(field(relay_line, "frames_from_caller")) > 25  # half a second of the caller's voice, at least
    assert int(field(relay_line, "frames_to_caller")) > 0
    assert int(field(relay_line, "barge_ins")) >= 1
    assert "twilio.dtmf" in local_stack.log()
    gateway_line = local_stack.wait_for(r"softphone\.call_ended .*").group(0)
    assert field(gateway_line, "by") == "caller" and int(field(gateway_line, "marks_echoed")) > 0
    assert int(barge_in.get_attribute("data-dropped-ms") or 0) > 0  # the page dropped what it had buffered
    assert problems == []
    print(f"\nsoftphone in Chromium: first audio heard {heard.get_attribute('data-ms')} ms after Call "
          f"(the relay's first audio {relay_first.get_attribute('data-relay-ms')} ms after start); "
          f"barge-in dropped {barge_in.get_attribute('data-dropped-ms')} ms; {page.inner_text('#meter')}")
