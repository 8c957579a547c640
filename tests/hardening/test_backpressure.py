"""Backpressure, exercised: peers that stop reading, on both sides of a real relay.

A Twilio peer that stops reading (its receive buffer small, never drained) and a Realtime
peer that stops reading (a fault proxy in front of the stand-in stops taking the relay's
bytes) each fill the relay's kernel buffers and then its own send queue. Each of the two
guards must end the offending call on its own, with the close code that makes Twilio play
the fallback, while a good call on the same relay flows byte for byte:

- the byte cap (``Limits.max_queued_bytes``): the connection is cut as soon as more than
  that waits for the peer;
- the stall watchdog (``Limits.send_stall_s``): a peer that has taken nothing for that
  long is cut, however little waits.

The limits are injected small (a stall of 0.3 s, a cap of 64 KiB), so each case takes
well under a second instead of the production 5 s.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from relay.limits import Limits
from scripts.fakes.openai import StandinModel
from tests.conftest import API_KEY, RunningRelay
from tests.fault_proxy import FaultProxy
from tests.hardening.support import (
    FIGURES,
    SHORT_GREETING,
    GoodCall,
    Teardown,
    new_stream,
    quiet_frame,
    signature_for,
    start_with_token,
    wait_until,
)
from tests.helpers import get_json

STREAM_PATH = "/twilio/realtime"
LONG_GREETING = bytes((i * 13 + 5) % 256 for i in range(8000 * 20))  # 20 s of audio, streamed at 8x
# No flood verdicts here: the offenders pour audio on purpose, and only the send guards judge them.
CALM = dict(flood_messages_per_s=10**6, flood_audio_ratio=10.0**6, tick_s=0.05, close_timeout_s=0.2)
BYTE_CAP = Limits(max_queued_bytes=64 * 1024, send_stall_s=60.0, **CALM)  # type: ignore[arg-type]
STALL = Limits(max_queued_bytes=256 * 1024 * 1024, send_stall_s=0.3, **CALM)  # type: ignore[arg-type]


@pytest.fixture
def standin() -> Iterator[StandinModel]:
    model = StandinModel(api_key=API_KEY, speed=8.0, greeting_audio=SHORT_GREETING).start()
    yield model
    model.stop()


@pytest.fixture
def proxy(standin: StandinModel) -> Iterator[FaultProxy]:
    running = FaultProxy(standin.port).start()
    yield running
    running.stop()


def non_reader(relay: RunningRelay, teardown: Teardown) -> tuple[websocket.WebSocket, str]:
    """A signed stream whose caller never reads: a tiny receive buffer, never drained."""
    stream = new_stream()
    ws = websocket.create_connection(
        relay.ws_url + STREAM_PATH, timeout=5, suppress_origin=True,
        header=[f"X-Twilio-Signature: {signature_for(relay.ws_url)}"],
        sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    teardown(ws.shutdown)
    ws.send(stream.connected())
    ws.send(start_with_token(stream))
    return ws, stream.stream_sid


def ending(caplog: pytest.LogCaptureFixture, reason: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("call.ending") and f"reason={reason} " in r.getMessage()]


def active_calls(relay: RunningRelay) -> int:
    from tests.conftest import DIAGNOSTIC_TOKEN

    _status, doc = get_json(relay.http_url + "/healthz", {"Authorization": f"Bearer {DIAGNOSTIC_TOKEN}"})
    return int(doc["active_calls"])


@pytest.mark.parametrize(("limits", "guard"), [(BYTE_CAP, "twilio.send_overflow"), (STALL, "twilio.send_stalled")],
                         ids=["byte_cap", "stall_watchdog"])
def test_a_twilio_peer_that_stops_reading_is_cut_and_others_flow(
        make_relay: Any, standin: StandinModel, teardown: Teardown, caplog: pytest.LogCaptureFixture,
        limits: Limits, guard: str) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    relay = make_relay(standin.url, limits)
    # Small kernel buffers on the relay's accepted sockets (inherited from the listener), so
    # the relay's own queue fills in milliseconds instead of after the kernel's 4 MiB.
    relay.server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    standin.greeting_audio = LONG_GREETING
    _ws, _sid = non_reader(relay, teardown)
    assert wait_until(lambda: standin.sessions and standin.sessions[0].deltas_sent, 5), "the greeting never began"
    offender = standin.sessions[0]
    standin.greeting_audio = SHORT_GREETING
    good = GoodCall(relay.ws_url).begin()
    teardown(good.abort)

    assert wait_until(lambda: offender.closed_at is not None, 5), "the non-reading call was never ended"
    (line,) = ending(caplog, "twilio_stalled")
    assert "close_code=1011" in line
    assert any(r.getMessage().startswith(guard) for r in caplog.records), f"not ended by {guard}"
    good.stream_for(10)
    assert good.hang_up().code == 1000
    good.assert_lossless(standin)
    assert wait_until(lambda: active_calls(relay) == 0, 3)
    FIGURES.setdefault("backpressure", []).append(f"twilio peer not reading, cut by {guard}")  # type: ignore[union-attr]


@pytest.mark.parametrize(("limits", "guard"), [(BYTE_CAP, "openai.send_overflow"), (STALL, "openai.send_stalled")],
                         ids=["byte_cap", "stall_watchdog"])
def test_a_realtime_peer_that_stops_reading_ends_that_call_with_the_fallback(
        make_relay: Any, standin: StandinModel, proxy: FaultProxy, teardown: Teardown,
        caplog: pytest.LogCaptureFixture, limits: Limits, guard: str) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    relay = make_relay(proxy.url(), limits)
    offender = GoodCall(relay.ws_url).begin()
    teardown(offender.abort)
    assert offender.first_audio.wait(5), "the session never opened"
    (choked,) = proxy.connections
    choked.choke()  # the Realtime side stops reading
    good = GoodCall(relay.ws_url).begin()  # through the proxy too, on its own connection
    teardown(good.abort)

    # The offender pours caller audio, as fast as its socket takes it, at a peer that reads nothing.
    ws = offender._stop_sending()
    for _ in range(20_000):
        if offender.closed.is_set():
            break
        try:
            ws.send(offender.stream.media(quiet_frame()))
        except (websocket.WebSocketException, OSError):
            break
    assert offender.closed.wait(5), "the call whose Realtime peer stopped reading was never ended"
    assert offender.close is not None and (offender.close.code, offender.close.reason) == (1011, "openai_stalled"), (
        f"Twilio must see 1011 to play the fallback, saw {offender.close}")
    assert any(r.getMessage().startswith(guard) for r in caplog.records), f"not ended by {guard}"

    good.stream_for(10)
    assert good.hang_up().code == 1000
    good.assert_lossless(standin)
    assert wait_until(lambda: active_calls(relay) == 0, 3)
    FIGURES.setdefault("backpressure", []).append(f"realtime peer not reading, cut by {guard}")  # type: ignore[union-attr]
