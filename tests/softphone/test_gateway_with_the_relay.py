"""The gateway with the real relay and webhook (in-process, on loopback) and the stand-in model:
a call from a scripted page arrives whole, both ways, without a browser."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import pytest
import websocket

from relay.limits import Limits
from scripts import audio
from scripts.fakes.openai import Script, StandinModel
from scripts.softphone.gateway import Gateway
from scripts.softphone.incoming_call import Webhook
from scripts.softphone.phone_call import Line
from tests.conftest import API_KEY, AUTH_TOKEN, RunningRelay
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


ASSISTANT = """
greeting = "Hello."
[end_call]
enabled = true
[transfer.destinations]
sales = "+15550100001"
"""


@pytest.mark.parametrize(("then", "said"), [
    ("end_call", "the assistant hung up (Twilio's REST API got Status=completed)"),
    ("transfer_call", "transferred to +15550100001 (Twilio would now dial it)"),
])
def test_the_assistant_hanging_up_or_transferring_ends_the_pages_call_through_the_gateways_rest_api(
        make_relay: Any, start_webhook: Any, make_gateway: Callable[..., Gateway],
        pages: Callable[..., ScriptedPage], tmp_path: Path, then: str, said: str) -> None:
    standin = StandinModel(api_key=API_KEY, speed=8.0, greeting_audio=bytes(range(1, 256)) * 10,
                           scenario=Script(tool=None, then=then)).start()
    try:
        gateway = make_gateway("http://127.0.0.1:9")  # the webhook's address is known only once the relay runs
        config = tmp_path / "assistant.toml"
        config.write_text(ASSISTANT)
        relay = make_relay(standin.url, limits=Limits(tick_s=0.05), ASSISTANT_CONFIG=str(config),
                           TWILIO_API_BASE_URL=gateway.rest_api_url)
        webhook = start_webhook(relay.ws_url)
        gateway.line = Line(Webhook(webhook, webhook, AUTH_TOKEN))
        page = pages(gateway.port)
        page.wait_for("first_audio")
        playing = gevent.spawn(play_along, page)  # the page plays what it gets: the goodbye's marks come back
        words = audio.read_wav_ulaw(audio.CALLER_WAV)[:9600]  # the caller's first 1.2 s, then a pause
        page.send_frames(audio.frames(words + audio.silence(700)))
        ended = page.wait_for("ended", timeout_s=10)
        playing.kill()
        assert (ended["by"], ended["reason"]) == ("api", said)
        [request] = gateway.rest_api.requests
        assert request.status == 200 and request.call_sid == gateway.ended[-1].call_sid
        assert wait_until(lambda: not relay.app.registry.calls, 3)
    finally:
        standin.stop()


def play_along(page: ScriptedPage) -> None:
    """Report everything received as played, as a page that keeps up does."""
    while not page.closed.is_set():
        try:
            page.played(len(page.audio))
        except (OSError, websocket.WebSocketException):
            return  # the call ended meanwhile
        gevent.sleep(0.05)
