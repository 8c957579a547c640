"""A slow Realtime handshake, as the caller lives it: nothing lost, and no dead air.

A fault proxy in front of the stand-in holds the handshake's answer, the way a slow
OpenAI would. The caller talks from the instant of ``start``: every frame must reach the
model, byte for byte and in order, once the session can read it. And while the session is
not ready, after ``Limits.comfort_tone_after_s``, the caller hears the comfort tone (media
with no mark: it is not the assistant), cleared the moment the greeting begins.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import websocket

from relay import comfort_tone
from relay.limits import Limits
from scripts.fakes.openai import StandinModel
from scripts.fakes.twilio_messages import InboundStream
from tests.conftest import RunningRelay
from tests.fault_proxy import FaultProxy
from tests.hardening.support import (
    FIGURES,
    Teardown,
    await_close,
    b64,
    new_stream,
    quiet_frame,
    signature_for,
    start_with_token,
    wait_until,
)

STREAM_PATH = "/twilio/realtime"


def open_stream(relay: RunningRelay, teardown: Teardown) -> tuple[websocket.WebSocket, InboundStream]:
    stream = new_stream()
    ws = websocket.create_connection(relay.ws_url + STREAM_PATH, timeout=5, suppress_origin=True,
                                     header=[f"X-Twilio-Signature: {signature_for(relay.ws_url)}"])
    teardown(ws.shutdown)
    ws.send(stream.connected())
    ws.send(start_with_token(stream))
    return ws, stream


def test_every_frame_from_the_instant_of_start_reaches_the_model(
        make_relay: Any, standin: StandinModel, teardown: Teardown, caplog: pytest.LogCaptureFixture) -> None:
    """A 300 ms Realtime handshake: the caller's first words are held, then sent in order, byte for byte."""
    caplog.set_level(logging.INFO, logger="relay")
    slow = FaultProxy(standin.port, first_reply_delay_s=0.3).start()
    teardown(slow.stop)
    relay = make_relay(slow.url())
    ws, stream = open_stream(relay, teardown)
    sent = []
    for _ in range(40):  # 800 ms of audio from the instant of start, at Twilio's pace
        frame = quiet_frame()
        ws.send(stream.media(frame))
        sent.append(b64(frame))
        wait_until(lambda: False, 0.02)
    assert wait_until(lambda: standin.sessions and len(standin.sessions[0].appended) >= len(sent), 5)
    ws.send(stream.stop())
    assert await_close(ws, 5).code == 1000
    assert standin.sessions[0].appended == sent
    def ended_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("call.ended")]

    assert wait_until(ended_lines, 3)
    (ended,) = ended_lines()
    held = int(ended.split("early_frames=")[1].split()[0])
    assert held >= 10, f"only {held} frames arrived before the session was ready: the handshake was not slow"
    assert "dropped_before_ready=0" in ended
    FIGURES["first_words"] = f"{held} of {len(sent)} frames arrived before the session was ready; all reached the model"


def test_a_slow_session_is_heard_as_a_comfort_tone_then_the_greeting(
        make_relay: Any, standin: StandinModel, teardown: Teardown) -> None:
    slow = FaultProxy(standin.port, first_reply_delay_s=0.8).start()
    teardown(slow.stop)
    relay = make_relay(slow.url(), Limits(comfort_tone_after_s=0.2, tick_s=0.05))
    ws, stream = open_stream(relay, teardown)
    heard: list[dict[str, Any]] = []
    while not any(m["event"] == "mark" for m in heard):  # until the assistant's first audio
        heard.append(json.loads(ws.recv()))
    tone = [m for m in heard if m["event"] == "media"][:-1]
    assert tone, "0.8 s of handshake and no comfort tone"
    assert [m["media"]["payload"] for m in tone] == [
        comfort_tone.CHUNKS[i % len(comfort_tone.CHUNKS)] for i in range(len(tone))]
    kinds = [m["event"] for m in heard]
    assert kinds[-3:] == ["clear", "media", "mark"], "the tone must be cleared before the greeting plays"
    assert kinds.count("clear") == 1 and all(m["streamSid"] == stream.stream_sid for m in heard)
    ws.send(stream.stop())
    assert await_close(ws, 5).code == 1000
    FIGURES["comfort_tone"] = f"{len(tone) * comfort_tone.CHUNK_MS} ms of tone queued during a 0.8 s handshake"
