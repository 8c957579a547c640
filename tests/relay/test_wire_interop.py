"""Wire-level interop: the relay against independent WebSocket peers, from both sides.

The simulated caller (Twilio's side) speaks websockets' client protocol and the stand-in model
(OpenAI's side) websockets' server protocol: neither shares a line of WebSocket code with the relay,
so a framing or close bug in relay/ws_frames.py or relay/transport.py shows here as a peer
that could not understand it. Each case is something RFC 6455 allows a peer to do and the
relay must take: fragmented messages (continuation frames), pings, a close with a code and a
reason, a large message, a client that offers permessage-deflate.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any

import pytest

from relay import stream_token
from scripts.fakes.openai import Behaviour, StandinModel, Wire
from scripts.fakes.twilio_caller import SimulatedCaller
from scripts.fakes.twilio_messages import InboundStream, new_sid
from scripts.fakes.twilio_webhook import target_from_relay
from scripts.fakes.websocket_client import ClientConnection
from tests.conftest import AUTH_TOKEN, STREAM_SECRET, RunningRelay
from tests.hardening.support import quiet_frame, signature_for
from tests.helpers import QUIET, wait_until

GREETING = bytes((i * 11 + 5) % 256 for i in range(2400))  # 300 ms: three 100 ms deltas


def caller(relay: RunningRelay, **kwargs: Any) -> SimulatedCaller:
    target = target_from_relay(relay.ws_url, public_url=relay.ws_url, stream_secret=STREAM_SECRET)
    kwargs.setdefault("hold_s", 1.0)
    kwargs.setdefault("caller_audio", QUIET)
    return SimulatedCaller(target, auth_token=AUTH_TOKEN, **kwargs)


def twilio_socket(relay: RunningRelay) -> tuple[ClientConnection, InboundStream]:
    """A bare WebSocket signed as Twilio's, and the stream whose messages it sends."""
    ws = ClientConnection.connect(relay.ws_url + "/twilio/realtime",
                                  headers={"X-Twilio-Signature": signature_for(relay.ws_url)}, timeout_s=3)
    return ws, InboundStream(new_sid("CA"))


def _first_media(ws: ClientConnection) -> None:
    """Read until the greeting's first audio: the call is up and forwarding."""
    while '"media"' not in ws.recv(timeout=5):
        pass


# -- from Twilio's side ------------------------------------------------------------------------


def test_twilio_sends_fragmented_messages(relay: RunningRelay, standin: StandinModel) -> None:
    """``start`` in three frames and every media message in two: the relay reassembles them."""
    standin.greeting_audio = GREETING
    ws, stream = twilio_socket(relay)
    try:
        ws.send(stream.connected())
        start = stream.start({stream_token.PARAMETER_NAME: stream_token.mint(STREAM_SECRET, stream.call_sid,
                                                                             time.time(), 300)})
        ws.send([start[:10], start[10:200], start[200:]])  # a text frame, then continuation frames
        _first_media(ws)
        sent = []
        for _ in range(5):
            payload = stream.media(quiet_frame())
            sent.append(payload)
            middle = len(payload) // 2
            ws.send([payload[:middle], payload[middle:]])
        (session,) = standin.sessions
        assert wait_until(lambda: len(session.appended) >= 5, 3), session.types()
        assert session.appended == [json.loads(message)["media"]["payload"] for message in sent]
        ws.send(stream.stop())
    finally:
        ws.close()


def test_twilio_pings_and_the_relay_answers(relay: RunningRelay, standin: StandinModel) -> None:
    ws, stream = twilio_socket(relay)
    try:
        ws.send(stream.connected())
        ws.send(stream.start({stream_token.PARAMETER_NAME: stream_token.mint(STREAM_SECRET, stream.call_sid,
                                                                            time.time(), 300)}))
        _first_media(ws)
        pongs = [ws.ping(f"twilio {n}".encode()) for n in range(3)]
        # websockets matches each pong to its ping by payload; the reader thread sees them arrive.
        assert all(isinstance(pong, threading.Event) and pong.wait(3) for pong in pongs)
        ws.send(stream.stop())
    finally:
        ws.close()


def test_twilio_closes_with_a_code_and_reason_and_the_relay_answers(
        relay: RunningRelay, standin: StandinModel) -> None:
    ws, stream = twilio_socket(relay)
    ws.send(stream.connected())
    ws.send(stream.start({stream_token.PARAMETER_NAME: stream_token.mint(STREAM_SECRET, stream.call_sid,
                                                                        time.time(), 300)}))
    _first_media(ws)
    ws.close(1001, "Twilio: call redirected")
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1001  # the code echoed back
    (session,) = standin.sessions
    assert wait_until(lambda: session.closed_at is not None, 3)
    assert session.close_code == 1000  # and the OpenAI side closed cleanly behind it


def test_the_relay_closes_twilio_with_its_code_and_reason(relay: RunningRelay, standin: StandinModel) -> None:
    call = caller(relay, hold_s=3)
    del call.target.parameters[stream_token.PARAMETER_NAME]
    result = call.run()
    assert (result.close_code, result.close_reason) == (1008, "token_missing")
    assert result.relay_hung_up


def test_a_twilio_peer_that_offers_permessage_deflate(relay: RunningRelay, standin: StandinModel) -> None:
    """The relay does not negotiate it: the call goes on uncompressed, byte for byte both ways."""
    standin.greeting_audio = GREETING
    result = caller(relay, offer_deflate=True, caller_audio=QUIET * 3).run()
    assert result.handshake_status == 101 and result.extensions == []
    (session,) = standin.sessions
    assert result.received_audio == GREETING and session.appended == result.sent_payloads
    assert result.close_code == 1000


# -- from OpenAI's side ------------------------------------------------------------------------


@pytest.fixture
def model(standin: StandinModel) -> StandinModel:
    standin.greeting_audio = GREETING
    return standin


def test_openai_sends_fragmented_messages(relay: RunningRelay, model: StandinModel) -> None:
    model.wire = Wire(fragments=4)  # every audio delta in four frames
    result = caller(relay).run()
    (session,) = model.sessions
    assert len(session.deltas_sent) == 3
    assert result.media_payloads == session.deltas_sent and result.received_audio == GREETING


def test_openai_pings_and_the_relay_answers(relay: RunningRelay, model: StandinModel) -> None:
    model.wire = Wire(ping_before_delta=True)
    result = caller(relay).run()
    (session,) = model.sessions
    assert wait_until(lambda: session.closed_at is not None, 3)
    assert session.pongs == len(session.deltas_sent) == 3  # one pong per ping, none lost
    assert result.received_audio == GREETING


def test_openai_sends_a_large_message(relay: RunningRelay, model: StandinModel) -> None:
    """One 200 KB audio delta (a 64-bit frame length, many reads): through to the caller unchanged."""
    model.greeting_audio = bytes((i * 13 + 1) % 256 for i in range(200_000))
    model.delta_ms = 25_000  # the whole clip in one delta
    result = caller(relay, hold_s=2.0).run()
    (session,) = model.sessions
    assert len(session.deltas_sent) == 1 and len(session.deltas_sent[0]) > 65_535
    assert result.media_payloads == session.deltas_sent


def test_openai_closes_with_a_code_and_reason(relay: RunningRelay, model: StandinModel,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="relay")
    model.behaviour = Behaviour.CLOSE_MIDCALL  # 1011 "stand-in: closing mid-call" at the fourth delta
    model.greeting_audio = GREETING * 2
    result = caller(relay, hold_s=3).run()
    assert (result.close_code, result.close_reason) == (1011, "openai_closed")
    assert any(re.search(r"openai\.closed .*code=1011 reason='stand-in: closing mid-call'", r.getMessage())
               for r in caplog.records)
    (session,) = model.sessions
    assert wait_until(lambda: session.closed_at is not None, 3)
    assert session.close_code == 1011  # the relay answered the close with its code (RFC 6455 5.5.1)
