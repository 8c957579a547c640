"""Property-based tests (hypothesis): the Twilio parser, the frame decoder and the per-call
state machine, on inputs nobody thought to write down.

- ``twilio_protocol.parse`` turns any text into a Twilio event or a TwilioProtocolError,
  never another exception (the same for ``openai_protocol.parse``), and valid messages
  round-trip; the outbound builders round-trip any text.
- ``FrameDecoder`` turns any bytes into messages or a FrameError, however they are cut.
- ``CallBridge``, driven by random sequences of Twilio messages (as text, through its one
  parsing path), OpenAI events and clock ticks (only in orders LiveCall can produce),
  keeps its promises: nothing goes upstream before a verified start, no caller audio
  before the session is ready and then all of it held so far, in order (the latest
  ``Limits.early_audio_frames``), nothing that is not base64 audio, exactly one EndCall and
  silence after it, a mark after each delta (only the comfort tone goes without, and only
  before the assistant's first audio), truncation never beyond what was heard.

Bounded: at most 200 examples a property, no example database; no per-example deadline
(a slow CI runner is not a failure).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from relay import comfort_tone, stream_token
from relay import openai_protocol as oai
from relay import twilio_protocol as tw
from relay.actions import Actions, EndCall, OpenUpstream, UpdateCall
from relay.assistant import Assistant
from relay.bridge import CallBridge, CallState
from relay.call_settings import BridgeSettings, persona
from relay.errors import FrameError, OpenAIProtocolError, TwilioProtocolError, UpstreamError
from relay.limits import Limits
from relay.log import CallLog
from relay.replay_guard import ReplayGuard
from relay.ws_frames import OP_BINARY, OP_TEXT, FrameDecoder, encode_frame
from scripts.fakes.twilio_messages import InboundStream
from tests.hardening.support import FIGURES
from tests.helpers import Clock

BOUNDED = settings(max_examples=200, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])

# -- strategies -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
event_names = st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "clear"]) | st.text(max_size=12)
stream_sids = st.from_regex(r"MZ[0-9a-fA-F]{32}", fullmatch=True)
call_sids = st.from_regex(r"CA[0-9a-fA-F]{32}", fullmatch=True)


@st.composite
def twilio_shaped(draw: st.DrawFn) -> str:
    """A JSON object that looks like a Twilio message: a (maybe known) event and random fields."""
    message = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4))
    message["event"] = draw(event_names | json_values)
    for key in ("start", "media", "mark", "dtmf", "stop"):
        if draw(st.booleans()):
            message[key] = draw(st.dictionaries(
                st.sampled_from(["streamSid", "callSid", "payload", "name", "digit", "customParameters",
                                 "mediaFormat", "tracks"]) | st.text(max_size=8), json_values, max_size=4))
    return json.dumps(message)


@st.composite
def mangled(draw: st.DrawFn) -> str:
    """A real Twilio message, cut short, with a character slipped in, or repeated."""
    twilio = InboundStream("CA1", stream_sid=draw(stream_sids))
    text = draw(st.sampled_from([
        twilio.media_b64("AAAA"), twilio.start({}), twilio.stop(), twilio.mark("1"),
    ]))
    cut = draw(st.integers(0, len(text)))
    kind = draw(st.sampled_from(["truncate", "insert", "double"]))
    if kind == "truncate":
        return text[:cut]
    if kind == "insert":
        return text[:cut] + draw(st.characters()) + text[cut:]
    return text + text[:cut]


any_text = st.text() | twilio_shaped() | mangled() | json_values.map(json.dumps)


# -- the parsers -------------------------------------------------------------------------------


@BOUNDED
@given(any_text)
@example("[1, 2")
@example('{"event": "media", "x": ' + "[" * 5000 + "]" * 5000 + "}")
@example('{"event": "dance"} trailing')
def test_twilio_parse_returns_an_event_or_a_protocol_error(text: str) -> None:
    try:
        event = tw.parse(text)
    except TwilioProtocolError as exc:
        assert 1000 <= exc.close_code < 5000
        return
    assert isinstance(event, tw.Connected | tw.Start | tw.Media | tw.Mark | tw.Dtmf | tw.Stop | tw.Unknown)


@BOUNDED
@given(st.text() | json_values.map(json.dumps) | twilio_shaped())
@example("[1, 2")
@example('{"type": "response.done", "x": ' + "[" * 5000 + "]" * 5000 + "}")
def test_openai_parse_returns_an_event_or_a_protocol_error(text: str) -> None:
    try:
        event = oai.parse(text)
    except OpenAIProtocolError:
        return
    assert isinstance(event, oai.OpenAIEvent)


@BOUNDED
@given(stream=stream_sids, call=call_sids, account=st.text(max_size=40),
       params=st.dictionaries(st.text(max_size=20), st.text(max_size=80), max_size=5),
       payload=st.binary(min_size=1, max_size=300).map(lambda b: base64.b64encode(b).decode()),
       name=st.text(max_size=40), digit=st.text(max_size=2))
def test_valid_twilio_messages_round_trip(stream: str, call: str, account: str, params: dict[str, str],
                                          payload: str, name: str, digit: str) -> None:
    twilio = InboundStream(call, stream_sid=stream, account_sid=account)  # what every test caller sends
    start = tw.parse(twilio.start(params))
    assert isinstance(start, tw.Start)
    assert (start.stream_sid, start.call_sid, start.account_sid, start.custom_parameters) == (
        stream, call, account, params)
    media = tw.parse(twilio.media_b64(payload, 160))
    assert isinstance(media, tw.Media) and (media.stream_sid, media.payload) == (stream, payload)
    mark = tw.parse(twilio.mark(name))
    assert isinstance(mark, tw.Mark) and (mark.stream_sid, mark.name) == (stream, name)
    dtmf = tw.parse(twilio.dtmf(digit))
    assert isinstance(dtmf, tw.Dtmf) and dtmf.digit == digit
    stop = tw.parse(twilio.stop())
    assert isinstance(stop, tw.Stop) and (stop.stream_sid, stop.call_sid) == (stream, call)


@BOUNDED
@given(stream=stream_sids, payload=st.text(max_size=400))
def test_media_carries_only_base64_audio(stream: str, payload: str) -> None:
    """Any payload parses as the exact string sent if it is base64, and is refused otherwise."""
    text = json.dumps({"event": "media", "streamSid": stream, "media": {"payload": payload}})
    try:
        valid = bool(payload) and base64.b64decode(payload, validate=True) is not None and len(payload) % 4 == 0
    except ValueError:
        valid = False
    try:
        media = tw.parse(text)
    except TwilioProtocolError as exc:
        assert not valid and exc.event == tw.EVENT_MEDIA
        return
    assert valid and isinstance(media, tw.Media) and media.payload == payload


@BOUNDED
@given(stream=stream_sids, payload=st.text(), name=st.text())
def test_outbound_builders_round_trip_any_text(stream: str, payload: str, name: str) -> None:
    out = tw.Outbound(stream)
    # strict=False: a raw control character passes the fast path unescaped (documented in
    # relay/json_text.py: base64 never holds one); everything else must survive exactly.
    assert json.loads(out.media(payload), strict=False) == {
        "event": "media", "streamSid": stream, "media": {"payload": payload}}
    assert json.loads(out.mark(name), strict=False) == {"event": "mark", "streamSid": stream, "mark": {"name": name}}
    assert json.loads(out.clear) == {"event": "clear", "streamSid": stream}
    assert json.loads(oai.append_audio(payload), strict=False) == {
        "type": "input_audio_buffer.append", "audio": payload}


# -- the frame decoder -----------------------------------------------------------------------------


@BOUNDED
@given(st.binary(max_size=2000), st.lists(st.integers(1, 300), max_size=20))
def test_frame_decoder_takes_any_bytes_in_any_cuts(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(expect_masked=True, max_message_bytes=1024)
    try:
        for chunk in _cut(data, cuts):
            for message in decoder.feed(chunk):
                assert isinstance(message, str | bytes)
    except FrameError as exc:
        assert 1000 <= exc.close_code < 5000


@BOUNDED
@given(st.lists(st.one_of(st.text(max_size=300).map(lambda t: (OP_TEXT, t.encode())),
                          st.binary(max_size=300).map(lambda b: (OP_BINARY, b))), max_size=10),
       st.lists(st.integers(1, 200), max_size=30))
def test_frame_decoder_output_does_not_depend_on_how_bytes_arrive(
    messages: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    wire = b"".join(encode_frame(opcode, payload, os.urandom(4)) for opcode, payload in messages)
    expected = [payload.decode() if opcode == OP_TEXT else payload for opcode, payload in messages]
    decoder = FrameDecoder(expect_masked=True, max_message_bytes=1024)
    got: list[str | bytes] = []
    for chunk in _cut(wire, cuts):
        got += decoder.feed(chunk)
    assert got == expected and decoder.buffered == 0


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    chunks, pos = [], 0
    for size in cuts:
        chunks.append(data[pos:pos + size])
        pos += size
    chunks.append(data[pos:])
    return chunks


# -- the per-call state machine -----------------------------------------------------------------------

SECRET = "p" * 40
CALL = "CA" + "7" * 32
STREAM = "MZ" + "8" * 32
START_TIMEOUT_S, SESSION_TIMEOUT_S, MAX_CALL_S = 5.0, 8.0, 60.0
ASSISTANT = Assistant(instructions="Be brief.", greeting="Hi.", voice="marin")
GREETING = oai.greeting("Hi.")
# Thousands of examples, each logging its warnings: keep them out of pytest's capture.
QUIET_LOG = logging.getLogger("test.properties.quiet")
QUIET_LOG.propagate = False
QUIET_LOG.addHandler(logging.NullHandler())
SESSION_UPDATE = persona(ASSISTANT).session_update
# Small enough that scripts overflow the held audio and run into the bad-message limit.
LIMITS = Limits(early_audio_s=0.1, max_bad_messages=6)

Step = tuple[Any, ...]
steps = st.one_of(
    st.tuples(st.just("start"), st.sampled_from(["valid", "missing", "forged", "expired", "other_call",
                                                 "malformed"]), st.booleans()),
    st.tuples(st.just("media"), st.booleans(), st.integers(0, 400)),
    st.tuples(st.just("mark"), st.booleans(), st.integers(-1, 50)),
    st.tuples(st.sampled_from(["stop", "dtmf", "connected", "unknown", "invalid_start", "twilio_closed"])),
    st.tuples(st.just("upstream_open")),
    st.tuples(st.just("upstream_failed"), st.sampled_from(["dns", "tcp", "tls", "handshake"])),
    st.tuples(st.just("upstream_closed")),
    st.tuples(st.just("session_updated"), st.booleans()),
    st.tuples(st.just("delta"), st.sampled_from(["item_a", "item_b", "item_c"]), st.integers(0, 800)),
    st.tuples(st.sampled_from(["speech_started", "session_created", "response_done", "response_failed",
                               "truncated", "openai_unknown"])),
    st.tuples(st.just("error"), st.sampled_from(["session_expired", "insufficient_quota",
                                                 "response_cancel_not_active", "invalid_value"])),
    st.tuples(st.just("tick"), st.floats(0, 6)),
)
# What a live call mostly consists of: audio both ways, marks coming back in order, the
# caller talking over the assistant, time passing a little.
talk = st.one_of(
    st.tuples(st.just("media"), st.just(True), st.integers(0, 400)),
    st.tuples(st.just("media"), st.just(True), st.integers(0, 400)),
    st.tuples(st.just("mark"), st.just(True), st.just(-2)),
    st.tuples(st.just("mark"), st.just(True), st.just(-2)),
    st.tuples(st.just("mark"), st.booleans(), st.integers(-1, 50)),
    st.tuples(st.just("delta"), st.sampled_from(["item_a", "item_b", "item_c"]), st.integers(0, 800)),
    st.tuples(st.just("delta"), st.sampled_from(["item_a", "item_b", "item_c"]), st.integers(0, 800)),
    st.tuples(st.just("speech_started")),
    st.tuples(st.just("tick"), st.floats(0, 0.5)),
)
in_call = st.one_of(talk, steps)



@st.composite
def barge_in(draw: st.DrawFn) -> list[Step]:
    """The assistant speaks an item, part of it plays, the caller talks over the rest."""
    item = draw(st.sampled_from(["item_a", "item_b", "item_c", "item_d", "item_e"]))
    played = draw(st.sampled_from([1, 2, 3, 0]))
    script: list[Step] = [("delta", item, draw(st.integers(1, 800))) for _ in range(played + 1)]
    script += [("mark", True, -2)] * played
    return [*script, ("speech_started",), *[("mark", True, draw(st.integers(-1, 9))) for _ in range(played)]]


@st.composite
def call_scripts(draw: st.DrawFn) -> list[Step]:
    """Anything at all (one in four), or a call that gets going, with anything in between."""
    if not draw(st.integers(0, 3)):
        return draw(st.lists(steps, max_size=60))
    script: list[Step] = draw(st.lists(steps, max_size=3))
    for happy in [("start", "valid", False), ("upstream_open",), ("session_updated", True)]:
        script.append(happy)
        script += draw(st.lists(talk, max_size=3))
    chunks = st.one_of(barge_in(), in_call.map(lambda step: [step]))
    for chunk in draw(st.lists(chunks, min_size=1, max_size=30)):
        script += chunk
    return script


@dataclass
class Model:
    """What LiveCall would know about one call, and what the caller side has heard."""

    clock: Clock
    bridge: CallBridge
    accepted_at: float
    stream_sid: str = STREAM  # the verified start's (until then, the one a start would carry)
    verified: bool = False  # OpenUpstream was emitted: the stream token checked out
    opened: bool = False  # the Realtime socket is open (and session.update was sent)
    upstream_gone: bool = False  # it failed, or closed
    twilio_gone: bool = False
    ready: bool = False  # session.updated accepted: caller audio may flow
    early: list[str] = field(default_factory=list)  # caller audio held until the session is ready
    bad: int = 0  # messages no Twilio sends
    tone: bool = False  # the comfort tone is queued at Twilio
    spoke: bool = False  # the assistant's first audio went out
    ends: list[EndCall] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # every mark name sent to Twilio
    pending: list[tuple[str, str, int]] = field(default_factory=list)  # (mark, item, bytes) not yet played
    heard_item: str = ""
    heard_bytes: int = 0
    sent_bytes: dict[str, int] = field(default_factory=dict)  # per item, to Twilio

    @property
    def ended(self) -> bool:
        return bool(self.ends)


def _token(kind: str, clock: Clock) -> dict[str, str]:
    now = clock.wall()
    tokens = {
        "valid": stream_token.mint(SECRET, CALL, now, 300),
        "forged": stream_token.mint("q" * 40, CALL, now, 300),
        "expired": stream_token.mint(SECRET, CALL, now - 900, 300),
        "other_call": stream_token.mint(SECRET, "CA" + "9" * 32, now, 300),
        "malformed": "v1.not-a-token",
    }
    return {} if kind == "missing" else {stream_token.PARAMETER_NAME: tokens[kind]}


def _b64(size: int) -> str:
    return base64.b64encode(bytes(range(256)) * (size // 256) + bytes(size % 256)).decode()


def _start_sid(step: Step) -> str:
    return "MZ" + "5" * 32 if step[2] else STREAM


def _wire(event: str, stream_sid: str, body: dict[str, Any]) -> str:
    return json.dumps({"event": event, "streamSid": stream_sid, event: body})


def _deliver(m: Model, step: Step) -> Actions | None:
    """Feed one step, as LiveCall would (or None: LiveCall could not produce it now)."""
    b = m.bridge
    kind = step[0]
    twilio_side = kind in ("start", "media", "mark", "stop", "dtmf", "connected", "unknown", "invalid_start",
                           "twilio_closed")
    if twilio_side and m.twilio_gone:
        return None
    if kind == "start":
        sid = _start_sid(step)
        return b.twilio_messages([json.dumps({"event": "start", "streamSid": sid, "start": {
            "streamSid": sid, "callSid": CALL, "accountSid": "AC1", "customParameters": _token(step[1], m.clock)}})])
    if kind == "media":
        return b.twilio_messages([_wire("media", m.stream_sid if step[1] else "MZ" + "6" * 32,
                                        {"payload": _b64(step[2])})])
    if kind == "mark":
        name = _mark_name(m, step[2])
        return b.twilio_messages([_wire("mark", m.stream_sid if step[1] else "MZ" + "6" * 32, {"name": name})])
    if kind == "stop":
        return b.twilio_messages([_wire("stop", STREAM, {"callSid": CALL})])
    if kind == "dtmf":
        return b.twilio_messages([_wire("dtmf", m.stream_sid, {"digit": "5"})])
    if kind == "connected":
        return b.twilio_messages(['{"event": "connected", "protocol": "Call", "version": "1.0.0"}'])
    if kind == "unknown":
        return b.twilio_messages(['{"event": "novel"}'])
    if kind == "invalid_start":  # a start that fails validation
        return b.twilio_messages(['{"event": "start", "start": {"streamSid": "' + STREAM + '", "callSid": null}}'])
    if kind == "twilio_closed":
        m.twilio_gone = True
        return b.twilio_closed()
    if kind == "tick":
        m.clock.now += step[1]
        return b.tick(m.clock.now)
    # The OpenAI side: the socket opens only after the token checked out, at most once.
    if kind == "upstream_open":
        if not m.verified or m.opened or m.upstream_gone:
            return None
        m.opened = True
        return b.upstream_open()
    if kind == "upstream_failed":
        if m.opened or m.upstream_gone:
            return None
        m.upstream_gone = True
        return b.upstream_failed(UpstreamError(step[1], "refused", status=401 if step[1] == "handshake" else None))
    if not m.opened or m.upstream_gone:
        return None
    if kind == "upstream_closed":
        m.upstream_gone = True
        return b.upstream_closed(1011, "gone")
    events: dict[str, oai.OpenAIEvent] = {
        "speech_started": oai.SpeechStarted(),
        "session_created": oai.SessionCreated(),
        "response_done": oai.parse('{"type": "response.done", "response": {"id": "r", "status": "completed"}}'),
        "response_failed": oai.parse('{"type": "response.done", "response": {"id": "r", "status": "failed", '
                                     '"status_details": {"error": {"code": "insufficient_quota"}}}}'),
        "truncated": oai.ItemTruncated(),
        "openai_unknown": oai.Unknown("rate_limits.updated"),
    }
    if kind == "session_updated":
        fmt = oai.AUDIO_FORMAT if step[1] else "audio/pcm"
        return b.on_openai(oai.SessionUpdated.of(fmt, fmt))
    if kind == "delta":
        return b.on_openai(oai.AudioDelta(item_id=step[1], delta=_b64(step[2]), response_id="r"))
    if kind == "error":
        return b.on_openai(oai.ErrorEvent.of("invalid_request_error", step[1], "msg"))
    return b.on_openai(events[kind])


def _expect_input(m: Model, step: Step, was_active: bool) -> None:
    """What a Twilio step should do to the model before its actions are checked."""
    if step[0] == "media":
        if step[2] == 0:  # an empty payload is not audio: a bad message, whatever the state
            m.bad += 1
        elif step[1] and m.verified and not was_active and not m.ended:
            m.early = [*m.early, _b64(step[2])][-LIMITS.early_audio_frames:]
    elif step[0] == "invalid_start" and m.verified:
        m.bad += 1


def _check(m: Model, step: Step, actions: Actions, was_active: bool) -> None:
    """The bridge's promises, for one step's actions."""
    if m.ended:
        assert not actions, f"actions after EndCall: {actions}"
    kind = step[0]
    heard_item, heard_bytes = m.heard_item, m.heard_bytes  # before this step's clear, if any
    for effect in actions.effects:
        if isinstance(effect, UpdateCall):  # the time limit's hang-up, once its goodbye is over
            assert m.ready and effect.destination is None and m.clock.now - m.accepted_at > MAX_CALL_S
            hypothesis_event("time limit: call completed through the REST API")
            continue
        assert isinstance(effect, OpenUpstream)
        assert kind == "start" and step[1] == "valid" and not m.verified
        m.verified = True
        m.stream_sid = _start_sid(step)
    appends = []
    for text in actions.to_openai:
        assert m.verified and m.opened, "something went upstream before a verified start and an open socket"
        event = json.loads(text)
        if event["type"] == oai.TYPE_APPEND:
            assert m.ready or kind == "session_updated", "caller audio upstream before the session was ready"
            appends.append(event["audio"])
        elif event["type"] == oai.TYPE_SESSION_UPDATE:
            assert kind == "upstream_open"
        elif event["type"] == oai.TYPE_TRUNCATE:
            item, end_ms = event["item_id"], event["audio_end_ms"]
            hypothesis_event("truncated after hearing audio" if end_ms else "truncated before any was heard")
            heard = heard_bytes if heard_item == item else 0
            assert 0 <= end_ms == heard // tw.BYTES_PER_MS <= m.sent_bytes.get(item, 0) // tw.BYTES_PER_MS
        elif event["type"] == oai.TYPE_ITEM_CREATE:  # the keys the caller pressed, after "#" or a pause
            assert m.ready and kind in ("dtmf", "tick") and event["item"]["role"] == "user"
            hypothesis_event("digits given to the model")
        elif event["type"] == oai.TYPE_RESPONSE_CANCEL:  # the time limit cuts a response short
            assert kind == "tick" and m.clock.now - m.accepted_at > MAX_CALL_S
        else:
            assert event["type"] == oai.TYPE_RESPONSE_CREATE
            if kind == "session_updated":
                assert actions.to_openai[-1] == text, "the greeting comes after the caller's held audio"
            else:  # answering digits, or the time limit's goodbye
                assert m.ready and kind in ("dtmf", "tick", "response_done", "response_failed")
    if kind == "session_updated" and appends:
        hypothesis_event("held caller audio sent once the session was ready")
        assert appends == m.early, "held caller audio lost, reordered or invented"
    elif kind == "media" and appends:
        assert was_active and step[1] and appends == [_b64(step[2])]
    else:
        assert not appends, "caller audio upstream outside a media step or the session's opening"
    twilio = actions.to_twilio
    for index, text in enumerate(twilio):
        message = json.loads(text)
        assert m.verified and message["streamSid"] == m.stream_sid
        if message["event"] == "media":
            follow = json.loads(twilio[index + 1]) if index + 1 < len(twilio) else {}
            if follow.get("event") != "mark":  # only the comfort tone goes without a mark
                assert message["media"]["payload"] in comfort_tone.CHUNKS and not m.spoke
                hypothesis_event("comfort tone")
                m.tone = True
                continue
            assert m.ready and follow["mark"]["name"] not in m.names
            size = len(base64.b64decode(message["media"]["payload"]))
            m.names.append(follow["mark"]["name"])
            m.pending.append((follow["mark"]["name"], step[1], size))
            m.sent_bytes[step[1]] = m.sent_bytes.get(step[1], 0) + size
            m.spoke = True
        elif message["event"] == "clear":
            assert kind == "speech_started" or m.tone, "a clear with nothing to clear"
            if kind == "speech_started":
                m.pending.clear()  # Twilio echoes them all, but none of them played
                m.heard_item, m.heard_bytes = "", 0
            m.tone = False
    if actions.end is not None:
        assert not m.ended, "a second EndCall"
        m.ends.append(actions.end)
        _check_ending(m, step, actions.end)
    if kind == "session_updated" and step[1] and m.verified and m.opened and not m.ended and not m.ready:
        m.ready = True
        m.early = []


def _check_ending(m: Model, step: Step, end: EndCall) -> None:
    age = m.clock.now - m.accepted_at
    if end.reason == "start_timeout":
        assert step[0] == "tick" and age > START_TIMEOUT_S
    elif end.reason == "session_timeout":
        assert step[0] == "tick" and age > SESSION_TIMEOUT_S and not m.ready
    elif end.reason.startswith("max_call_length"):
        assert age > MAX_CALL_S
    elif end.reason == "openai_error":
        assert step[0] in ("error", "response_failed")
    elif end.reason == "invalid_start":
        assert step[0] == "invalid_start" and not m.verified and end.close_code == 1008
    elif end.reason == "twilio_protocol_error":
        assert m.bad >= LIMITS.max_bad_messages and end.close_code == 1008
    elif end.reason.startswith("token_"):
        assert step[0] == "start" and (step[1] != "valid") != (end.reason == "token_replayed")
        assert end.close_code == 1008


def _mark_name(m: Model, pick: int) -> str:
    """-2: the oldest mark still playing (Twilio's order); -1: a name never sent; else any sent."""
    if pick == -2 and m.pending:
        return m.pending[0][0]
    if pick >= 0 and m.names:
        return m.names[pick % len(m.names)]
    return "stray"


def _echo(m: Model, step: Step, name: str) -> None:
    """A mark came back: count it as played if it is the oldest one still pending."""
    if step[0] == "mark" and step[1] and m.pending:
        if name == m.pending[0][0]:
            _, item, size = m.pending.pop(0)
            if item != m.heard_item:
                m.heard_item, m.heard_bytes = item, 0
            m.heard_bytes += size


@settings(BOUNDED, max_examples=200)
@given(call_scripts(), st.sampled_from([False] * 7 + [True]))
@example([("start", "valid", False), ("upstream_open",), ("session_updated", True), ("dtmf",), ("tick", 2.0)], False)
@example([("start", "valid", False), ("upstream_open",), ("session_updated", True), ("response_done",),
          *[("tick", 5.0)] * 13], False)
def test_call_bridge_keeps_its_promises_whatever_the_peers_do(sequence: list[Step], replayed: bool) -> None:
    clock = Clock()
    guard = ReplayGuard()
    if replayed:  # this CallSid already had its stream: a valid token is a replay now
        guard.claim(CALL, clock.wall() + 300, clock.wall())
    bridge = CallBridge(
        BridgeSettings(stream_token_secret=SECRET, personas={"": persona(ASSISTANT)},
                       start_timeout_s=START_TIMEOUT_S, session_timeout_s=SESSION_TIMEOUT_S, max_call_s=MAX_CALL_S),
        LIMITS, monotonic=clock.monotonic, wall=clock.wall, replay_guard=guard,
        log=CallLog(QUIET_LOG, "p"),
    )
    m = Model(clock, bridge, clock.now)
    for step in [*sequence, ("twilio_closed",)]:
        was_active = bridge.state is CallState.ACTIVE
        mark_name = _mark_name(m, step[2]) if step[0] == "mark" else ""
        actions = _deliver(m, step)
        if actions is None:
            continue
        _echo(m, step, mark_name)
        _expect_input(m, step, was_active)
        if step[0] == "start" and step[1] == "valid" and replayed and not m.verified and not m.ended:
            assert actions.end == EndCall("token_replayed", 1008) and not actions.effects
        _check(m, step, actions, was_active)
        if step[0] == "invalid_start" and not m.verified:  # before a verified start it ends the call
            assert m.ended
        # Liveness: a call past a deadline it has not met is over.
        if step[0] == "tick" and not m.ended:
            age = clock.now - m.accepted_at
            assert not (not m.verified and age > START_TIMEOUT_S), "start timeout missed"
            assert not (not m.ready and age > SESSION_TIMEOUT_S), "session timeout missed"
    assert len(m.ends) == 1, "a call must end exactly once"
    hypothesis_event(f"ended: {m.ends[0].reason}" + (" after the session was ready" if m.ready else ""))
    assert bridge.state is CallState.ENDED
    FIGURES["bridge_property_examples"] = int(str(FIGURES.get("bridge_property_examples", 0))) + 1
