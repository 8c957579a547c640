"""The gateway with the real relay and webhook (in-process, on loopback) and the stand-in model:
a call from a scripted page arrives whole, both ways, without a browser."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from scripts import audio
from scripts.fakes.openai import StandinModel
from scripts.softphone.gateway import Gateway
from tests.conftest import RunningRelay
from tests.helpers import wait_until
from tests.softphone.conftest import ScriptedPage


def test_a_call_from_the_page_reaches_the_model_whole_and_the_greeting_comes_back(
        relay: RunningRelay, standin: StandinModel, start_webhook: Any,
        make_gateway: Callable[..., Gateway], pages: Callable[..., ScriptedPage]) -> None:
    gateway = make_gateway(start_webhook(relay.ws_url))
    page = pages(gateway.port)
    page.progress("connected")
    page.wait_for("first_audio")
    greeting = audio.read_wav_ulaw(audio.GREETING_WAV)
    assert wait_until(lambda: len(page.audio) >= len(greeting) // 2)  # the stand-in streams at 8x
    assert bytes(page.audio) == greeting[: len(page.audio)]  # untouched, in order
    page.played(len(page.audio))  # the page played it all: the relay's marks come back
    frames = audio.frames(audio.read_wav_ulaw(audio.CALLER_WAV))[:40]
    page.send_frames(frames)
    session = standin.sessions[0]
    assert wait_until(lambda: len(session.appended) >= 40)
    page.send_json(type="hangup")
    assert page.wait_for("ended")["by"] == "caller"
    assert [base64.b64decode(p) for p in session.appended] == frames  # every frame, once, in order
    assert wait_until(lambda: session.closed_at is not None)  # the hang-up closed the Realtime session
    call = gateway.ended[-1]
    assert call.figures["marks_echoed"] > 0 and call.figures["frames_held_back"] == 0
