"""Bad input from the Twilio side, against the relay under real gunicorn.

Each case sends one kind of bad input on its own stream while a good call is streaming
(started before, hung up after) and another good call is placed once the bad input has
been dealt with. For every case:

- the offending stream alone is ended (with the close code a peer sees) or the input is
  ignored and that call carries on;
- the relay says so in one clear log line, and nothing is logged as our own bug;
- the good calls lose nothing: every frame they sent reached the model and every delta
  came back, byte for byte, in order;
- the worker survives: same pid, ``/healthz`` 200, no call left behind.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent
import pytest
import websocket

from relay.limits import Limits
from relay.ws_frames import OP_CONTINUATION, OP_TEXT, encode_frame
from scripts.fakes.openai import SessionRecord, StandinModel
from scripts.fakes.twilio_messages import InboundStream
from tests.conftest import DIAGNOSTIC_AUTH, GunicornRelay
from tests.hardening.support import (
    FIGURES,
    Closed,
    GoodCall,
    LogWatch,
    Teardown,
    await_close,
    b64,
    connect,
    new_stream,
    quiet_frame,
    start_with_token,
    wait_until,
)
from tests.helpers import get_json

OFFENDER_CLOSE_S = 5.0
FLOOD_WINDOW_S = Limits().flood_window_s  # the gunicorn relay runs with the production limits


def _mask() -> bytes:
    return os.urandom(4)


def _fragment(opcode: int, payload: bytes, *, final: bool) -> bytes:
    frame = bytearray(encode_frame(opcode, payload, _mask()))
    if not final:
        frame[0] &= 0x7F  # FIN clear: more of this message follows
    return bytes(frame)


class Offender:
    """One stream that misbehaves. ``start()`` makes it a real call (valid token) first."""

    def __init__(self, relay: GunicornRelay, teardown: Teardown) -> None:
        self.relay = relay
        self.stream = new_stream()
        self.call_sid = self.stream.call_sid
        self.stream_sid = self.stream.stream_sid
        self.ws = connect(relay.ws_url)
        teardown(self.ws.shutdown)

    def send(self, text: str) -> None:
        self.ws.send(text)

    def raw(self, data: bytes) -> None:
        """Bytes straight onto the socket: frames websocket-client would not build."""
        assert self.ws.sock is not None
        self.ws.sock.sendall(data)

    def start(self, *, wait_ready: bool = True) -> None:
        """``connected`` + ``start``; then wait for the greeting (the session is ready)."""
        self.send(self.stream.connected())
        self.send(start_with_token(self.stream))
        if wait_ready:
            self.ws.settimeout(5)
            while True:  # the greeting's first delta: the call is up and listening
                message = json.loads(self.ws.recv())
                if message.get("event") == "media":
                    return

    def media(self, payload: str | None = None, stream: InboundStream | None = None) -> str:
        """Send one media frame (a fresh quiet one unless ``payload``), on this stream or ``stream``."""
        payload = payload if payload is not None else b64(quiet_frame())
        self.send((stream or self.stream).media_b64(payload))
        return payload

    def assert_carries_on(self, model: StandinModel) -> SessionRecord:
        """The call still works: a good frame goes up, then a hang-up gets a normal close."""
        payload = self.media()
        assert wait_until(lambda: any(payload in s.appended for s in model.sessions), 3), (
            "the offending call stopped relaying audio")
        record = next(s for s in model.sessions if payload in s.appended)
        self.send(self.stream.stop())
        closed = await_close(self.ws, OFFENDER_CLOSE_S)
        assert closed.code == 1000, closed
        return record

    def assert_ended(self, code: int, reason: str, timeout_s: float = OFFENDER_CLOSE_S) -> Closed:
        """The relay ended this stream with ``code`` and ``reason``."""
        closed = await_close(self.ws, timeout_s)
        assert (closed.code, closed.reason) == (code, reason), closed
        return closed


@dataclass(frozen=True)
class Case:
    """One kind of bad input: what to do, and the log line that must say so."""

    name: str
    act: Callable[[Offender, StandinModel], None]
    log: str  # regex for the offender's log line; {call} and {conn} are filled in
    opens_session: bool = True


# -- the inputs -----------------------------------------------------------------------------


def ignored(*texts: str) -> Callable[[Offender, StandinModel], None]:
    """A case that sends ``texts`` during a real call (``<sid>`` stands for its streamSid):
    each is refused alone, and the call carries on."""

    def act(o: Offender, model: StandinModel) -> None:
        o.start()
        for text in texts:
            o.send(text.replace("<sid>", o.stream_sid))
        o.assert_carries_on(model)

    return act


DEPTH = 20_000  # 40 KB of brackets: under the frame cap, far over any recursion limit


def binary_frame(o: Offender, model: StandinModel) -> None:
    o.start()
    o.ws.send(quiet_frame(), opcode=websocket.ABNF.OPCODE_BINARY)
    o.assert_carries_on(model)


def oversized_frame(o: Offender, model: StandinModel) -> None:
    o.start()
    o.send(json.dumps({"event": "media", "streamSid": o.stream_sid,
                       "media": {"payload": "A" * (70 * 1024)}}))
    o.assert_ended(1009, "twilio_protocol_error")


def invalid_utf8(o: Offender, model: StandinModel) -> None:
    o.start()
    o.raw(encode_frame(OP_TEXT, b'{"event": "\xff\xfe"}', _mask()))
    o.assert_ended(1007, "twilio_protocol_error")


def unmasked_frame(o: Offender, model: StandinModel) -> None:
    o.start()
    o.raw(encode_frame(OP_TEXT, b'{"event": "connected"}'))  # RFC 6455 5.1: clients must mask
    o.assert_ended(1002, "twilio_protocol_error")


def fragmented_media(o: Offender, model: StandinModel) -> None:
    o.start()
    payload = b64(quiet_frame())
    data = o.stream.media_b64(payload).encode()
    o.raw(_fragment(OP_TEXT, data[:50], final=False))  # RFC 6455 5.4: one message, three frames
    o.raw(_fragment(OP_CONTINUATION, data[50:200], final=False))
    o.raw(_fragment(OP_CONTINUATION, data[200:], final=True))
    assert wait_until(lambda: any(payload in s.appended for s in model.sessions), 3)
    o.assert_carries_on(model)


def ping(o: Offender, model: StandinModel) -> None:
    o.start()
    o.ws.ping(b"are you there")
    o.ws.settimeout(3)
    while True:
        frame = o.ws.recv_frame()
        if frame.opcode == websocket.ABNF.OPCODE_PONG:
            assert frame.data == b"are you there"
            break
    o.assert_carries_on(model)


def unknown_event_spray(o: Offender, model: StandinModel) -> None:
    o.start()
    for n in range(300):  # a new event name each time: each is tolerated, not each logged
        o.send(json.dumps({"event": f"novel_event_{n}", "streamSid": o.stream_sid}))
    o.assert_carries_on(model)


def media_before_start(o: Offender, model: StandinModel) -> None:
    early = b64(quiet_frame())
    o.send(o.stream.connected())
    o.media(early)
    o.start()
    record = o.assert_carries_on(model)
    assert early not in record.appended


def second_start(o: Offender, model: StandinModel) -> None:
    o.start()
    handshakes = model.handshakes
    other = new_stream()
    o.send(start_with_token(other))  # even with a valid token of its own
    hijack = o.media(stream=other)
    record = o.assert_carries_on(model)
    assert hijack not in record.appended
    assert model.handshakes == handshakes, "a second start opened another Realtime session"


def invalid_base64(o: Offender, model: StandinModel) -> None:
    o.start()
    bad = "this is *not* base64 audio!"
    o.media(bad)  # a bad message of this call alone: counted, logged once, never sent upstream
    record = o.assert_carries_on(model)
    assert bad not in record.appended


def wrong_stream_sid(o: Offender, model: StandinModel) -> None:
    o.start()
    stray = o.media(stream=InboundStream(o.call_sid))  # the same call, another StreamSid
    record = o.assert_carries_on(model)
    assert stray not in record.appended


def too_many_bad_messages(o: Offender, model: StandinModel) -> None:
    o.start()
    for _ in range(25):
        o.ws.send(b"\x00" * 8, opcode=websocket.ABNF.OPCODE_BINARY)
    o.assert_ended(1008, "twilio_protocol_error")


def flood(o: Offender, model: StandinModel) -> None:
    """5,000 media frames a second, a hundred times Twilio's rate."""
    o.start()
    burst = b"".join(encode_frame(OP_TEXT, o.stream.media(quiet_frame()).encode(), _mask()) for _ in range(100))

    def pour() -> None:
        try:
            while True:
                o.raw(burst)
                gevent.sleep(0.02)
        except OSError:
            return

    started = time.monotonic()
    pourer = gevent.spawn(pour)
    try:
        # Wait well past the bound below, so that the bound is what decides.
        closed = o.assert_ended(1008, "twilio_flood", timeout_s=4 * FLOOD_WINDOW_S + 2)
    finally:
        pourer.kill()
    # The watchdog judges the rate over FLOOD_WINDOW_S: the flood ends within two windows.
    ran_s = closed.at - started
    assert ran_s < 2 * FLOOD_WINDOW_S + 1, f"the flood ran {ran_s:.1f} s before the watchdog ended it"


def invalid_start(o: Offender, model: StandinModel) -> None:
    """A start with a null callSid can never become a call: ended at once, not at the start timeout."""
    o.send(o.stream.connected())
    start = json.loads(start_with_token(o.stream))
    start["start"]["callSid"] = None
    sent = time.monotonic()
    o.send(json.dumps(start))
    closed = o.assert_ended(1008, "invalid_start")
    assert closed.at - sent < 0.5, f"ended {closed.at - sent:.2f} s after the start"


def no_start(o: Offender, model: StandinModel) -> None:
    o.send(o.stream.connected())  # ... and then nothing: not Twilio
    o.assert_ended(1008, "start_timeout")


CASES = [
    Case("not_json", ignored("this is not JSON at all"),
         r"twilio\.invalid_message {conn}.* detail=message is not JSON count=1"),
    Case("truncated_json", ignored('{"event": "media", "streamSid": "<sid>", "media": {"payl'),
         r"twilio\.invalid_message {conn}.* detail=message is not JSON"),
    Case("broken_json_array", ignored("[1, 2"),  # the typed decoder stops at "[", before the syntax error
         r"twilio\.invalid_message {conn}.* detail=message is not JSON"),
    Case("json_not_an_object", ignored('[{"event": "stop"}]'),
         r"twilio\.invalid_message {conn}.* detail=message is not a JSON object"),
    Case("deeply_nested_json", ignored('{"event": "media", "x": ' + "[" * DEPTH + "]" * DEPTH + "}"),
         r"twilio\.invalid_message {conn}.* detail=message nests too deeply"),
    Case("binary_frame", binary_frame, r"twilio\.binary_frame {conn}.* ignored=true count=1"),
    Case("oversized_frame", oversized_frame,
         r"twilio\.frame_error {conn}.* close_code=1009 detail=message larger than 65536 bytes"),
    Case("invalid_utf8", invalid_utf8, r"twilio\.frame_error {conn}.* close_code=1007 detail=text message is not"),
    Case("unmasked_frame", unmasked_frame, r"twilio\.frame_error {conn}.* close_code=1002 detail=client frame not"),
    Case("fragmented_media", fragmented_media, r"twilio\.stop {conn}"),
    Case("ping", ping, r"twilio\.stop {conn}"),
    Case("unknown_event", ignored('{"event": "dance", "streamSid": "<sid>", "dance": {"style": "tango"}}'),
         r"twilio\.unknown_event {conn}.* event='dance'"),
    Case("unknown_event_spray", unknown_event_spray, r"twilio\.unknown_events_suppressed {conn}"),
    Case("media_before_start", media_before_start, r"twilio\.media_before_start {conn}.* ignored=true"),
    Case("second_start", second_start, r"twilio\.second_start {conn}.* ignored=true"),
    Case("invalid_base64", invalid_base64,
         r"twilio\.invalid_message {conn}.* detail=invalid media message: the payload is not base64 audio count=1"),
    Case("wrong_stream_sid", wrong_stream_sid, r"twilio\.wrong_stream_sid {conn}.* event=media"),
    Case("missing_fields", ignored('{"event": "media", "streamSid": "<sid>"}',
                                   '{"event": "mark", "streamSid": "<sid>", "mark": {}}',
                                   '{"event": "start", "start": {"streamSid": "<sid>"}}',
                                   '{"streamSid": "<sid>", "media": {"payload": "AAAA"}}'),
         r"twilio\.invalid_message {conn}.* detail=invalid media message: Object missing required field `media`"),
    Case("wrong_types", ignored('{"event": "media", "streamSid": "<sid>", "media": {"payload": 12345}}',
                                '{"event": 7}'),
         r"twilio\.invalid_message {conn}.* detail=invalid media message: Expected `str`, got `int`"),
    Case("too_many_bad_messages", too_many_bad_messages, r"call\.too_many_bad_messages {conn}.* kind=binary"),
    Case("flood", flood, r"twilio\.flood {conn}.* messages_per_s=\d+"),
    Case("invalid_start", invalid_start,
         r"call\.rejected {conn} reason=invalid_start detail=invalid start message: Expected `str`, got `null`",
         opens_session=False),
    Case("no_start", no_start, r"call\.start_timeout {conn} waited_s=", opens_session=False),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_ends_or_is_ignored_for_that_call_alone(
    case: Case, gunicorn: GunicornRelay, normal_model: StandinModel, teardown: Teardown
) -> None:
    relay = gunicorn
    model = normal_model
    workers = relay.worker_pids()
    watch = LogWatch(relay.log)
    handshakes = model.handshakes

    during = GoodCall(relay.ws_url).begin()
    teardown(during.abort)
    during.stream_for(3)
    offender = Offender(relay, teardown)
    case.act(offender, model)
    after = GoodCall(relay.ws_url).begin()  # the next call, once the bad input is dealt with
    teardown(after.abort)
    after.stream_for(5)
    during.stream_for(len(during.sent) + 3)
    for call in (during, after):
        call.hang_up()
        call.assert_lossless(model)

    # The relay said what happened, about the offending stream (its connection id).
    accepted = [line for line in watch.text().splitlines() if "call.accepted" in line]
    assert len(accepted) == 3
    conns = [line.split("conn=")[1].split()[0] for line in accepted]
    offender_conn = next(c for c in conns if f"conn={c} call_sid={during.call_sid}" not in watch.text()
                         and f"conn={c} call_sid={after.call_sid}" not in watch.text())
    watch.wait_for(case.log.format(conn=f"conn={offender_conn}"))
    assert "call.internal_error" not in watch.text() and "Traceback" not in watch.text(), watch.text()
    for call in (during, after):  # the good calls' own lines say nothing went wrong
        for line in watch.text().splitlines():
            if call.call_sid in line:
                assert " INFO " in line, line

    # The worker survived, and every call has been let go.
    assert relay.process.poll() is None and relay.worker_pids() == workers
    health = relay.http_url + "/healthz"
    assert wait_until(lambda: get_json(health, DIAGNOSTIC_AUTH)[1]["active_calls"] == 0, 3), get_json(health)
    assert get_json(health)[0] == 200
    assert model.handshakes == handshakes + 2 + case.opens_session
    FIGURES.setdefault("twilio_inputs_tried", [])
    FIGURES["twilio_inputs_tried"].append(case.name)  # type: ignore[attr-defined]
