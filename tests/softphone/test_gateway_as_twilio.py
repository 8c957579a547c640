"""The gateway does what Twilio does, as the relay sees it (a scripted relay behind the real webhook).

Each test places a call from a scripted page through the real webhook app, and asserts on
what the relay's end observes (signature, ``connected``/``start``, media, marks, ``stop``)
and on what the page is told.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from scripts import audio
from scripts.softphone.gateway import Gateway
from tests.conftest import AUTH_TOKEN
from tests.helpers import QUIET, wait_until
from tests.softphone.conftest import STREAM_PATH, ScriptedPage, ScriptedRelay

MakeGateway = Callable[..., Gateway]
Pages = Callable[..., ScriptedPage]


def place_call(start_webhook: Any, relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages,
               **options: Any) -> tuple[Gateway, ScriptedPage]:
    gateway = make_gateway(start_webhook(relay.url), **options)
    page = pages(gateway.port)
    page.progress("connected")
    return gateway, page


def test_the_stream_is_signed_and_started_with_the_twimls_parameters(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    gateway, page = place_call(start_webhook, scripted_relay, make_gateway, pages)
    stream = scripted_relay.stream()
    assert scripted_relay.refused == 0  # the upgrade's X-Twilio-Signature checked out
    assert stream.headers["x-twilio-signature"]
    connected, start = stream.received[:2]
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    body = start["start"]
    assert body["callSid"] == page.progress("dialing")["callSid"] in gateway.calls
    assert body["tracks"] == ["inbound"]
    assert body["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    # Used as the webhook gave them: the stream token, the numbers from the signed POST.
    assert set(body["customParameters"]) == {"streamToken", "callerNumber", "calledNumber"}
    assert body["customParameters"]["streamToken"].startswith("v2.")
    assert page.progress("answered")["detail"].endswith(f'{scripted_relay.url}{STREAM_PATH}">')


def test_a_signature_the_relay_rejects_ends_the_call_with_the_fallback(
        start_webhook: Any, make_gateway: MakeGateway, pages: Pages) -> None:
    relay = ScriptedRelay(auth_token="another-account-token").start()
    try:
        gateway = make_gateway(start_webhook(relay.url))
        page = pages(gateway.port)
        ended = page.wait_for("ended")
    finally:
        relay.stop()
    assert relay.refused == 1 and not relay.streams
    assert ended["by"] == "gateway"
    assert "the relay refused the stream: HTTP 403" in ended["reason"]
    # Twilio would go on to the verbs after </Connect>: the webhook's spoken fallback.
    assert ended["afterwards"][0].startswith('say "Sorry') and ended["afterwards"][-1] == "hang up"


def test_caller_frames_go_out_as_media_in_order(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    _gateway, page = place_call(start_webhook, scripted_relay, make_gateway, pages)
    frames = audio.frames(audio.read_wav_ulaw(audio.CALLER_WAV))[:10]
    page.send_frames(frames)
    media = scripted_relay.stream().wait_for("media", 10)
    assert [base64.b64decode(m["media"]["payload"]) for m in media] == frames
    assert [m["media"]["chunk"] for m in media] == [str(i) for i in range(1, 11)]
    assert [m["media"]["timestamp"] for m in media] == [str(20 * i) for i in range(10)]
    assert [m["sequenceNumber"] for m in media] == [str(i) for i in range(2, 12)]
    assert {m["media"]["track"] for m in media} == {"inbound"}


def test_a_mark_is_echoed_only_once_the_page_has_played_the_audio_before_it(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    _gateway, page = place_call(start_webhook, scripted_relay, make_gateway, pages)
    stream = scripted_relay.stream()
    stream.media(bytes(range(200)) * 4)  # 800 samples: 100 ms
    stream.send("mark", mark={"name": "m1"})
    assert wait_until(lambda: len(page.audio) == 800)
    assert page.wait_for("first_audio")["ms"] >= 0
    page.played(400)
    page.send_frames([QUIET])  # a later message: the played report has been handled by then
    stream.wait_for("media")
    assert stream.events("mark") == []
    page.played(800)
    echoed = stream.wait_for("mark")
    assert echoed[0]["mark"] == {"name": "m1"}
    assert page.audio == bytes(range(200)) * 4  # passed on untouched


def test_a_mark_with_nothing_buffered_comes_back_at_once(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    place_call(start_webhook, scripted_relay, make_gateway, pages)
    stream = scripted_relay.stream()
    stream.send("mark", mark={"name": "nothing-before-me"})
    assert stream.wait_for("mark")[0]["mark"]["name"] == "nothing-before-me"


def test_clear_reaches_the_page_and_every_pending_mark_comes_back_at_once(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    gateway, page = place_call(start_webhook, scripted_relay, make_gateway, pages)
    stream = scripted_relay.stream()
    for name in ("a", "b", "c"):
        stream.media(audio.silence(100))
        stream.send("mark", mark={"name": name})
    assert wait_until(lambda: len(page.audio) == 2400)
    page.played(800)
    assert [m["mark"]["name"] for m in stream.wait_for("mark")] == ["a"]
    stream.send("clear")
    assert page.wait_for("clear")["buffered"] == 1600  # what the page still had to play
    assert [m["mark"]["name"] for m in stream.wait_for("mark", 3)] == ["a", "b", "c"]
    # The page's later reports of what it played before the clear change nothing.
    page.played(1000)
    stream.media(audio.silence(100))
    stream.send("mark", mark={"name": "d"})
    assert wait_until(lambda: len(page.audio) == 3200)
    page.send_frames([QUIET])
    stream.wait_for("media")
    assert len(stream.events("mark")) == 3
    page.played(3200)  # the dropped audio counts as played, then "d"'s 800 samples
    assert stream.wait_for("mark", 4)[-1]["mark"]["name"] == "d"
    assert gateway.calls[page.progress("dialing")["callSid"]].figures["clears"] == 1


def test_digits_from_the_keypad_reach_the_relay(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    _gateway, page = place_call(start_webhook, scripted_relay, make_gateway, pages)
    for digit in "1#":
        page.send_json(type="dtmf", digit=digit)
    dtmf = scripted_relay.stream().wait_for("dtmf", 2)
    assert [m["dtmf"] for m in dtmf] == [{"track": "inbound_track", "digit": "1"},
                                         {"track": "inbound_track", "digit": "#"}]


def test_hanging_up_sends_stop_then_closes(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    gateway, page = place_call(start_webhook, scripted_relay, make_gateway, pages)
    stream = scripted_relay.stream()
    page.send_json(type="hangup")
    ended = page.wait_for("ended")
    assert ended == {"type": "ended", "by": "caller", "reason": "you hung up", "afterwards": []}
    assert stream.closed.wait(2)
    assert stream.events()[-1]["event"] == "stop"
    assert stream.events("stop")[0]["stop"]["callSid"] == page.progress("dialing")["callSid"]
    assert page.closed.wait(2)
    assert wait_until(lambda: not gateway.calls)


def test_the_relay_closing_ends_the_call_and_twilio_would_play_the_fallback(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    gateway, page = place_call(start_webhook, scripted_relay, make_gateway, pages)
    stream = scripted_relay.stream()
    stream.close(1011, "upstream_failed")
    ended = page.wait_for("ended")
    assert ended["by"] == "assistant"
    assert ended["reason"] == "the relay closed the stream (code 1011, upstream_failed)"
    assert ended["afterwards"][-1] == "hang up"
    assert stream.events("stop") == []  # nobody hung up: Twilio moves on to the next verb
    assert wait_until(lambda: not gateway.calls)


def test_a_call_ended_from_outside_stops_the_stream_and_tells_the_page_why(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    """The hook for a REST API stand-in: ``Calls(sid).update(Twiml=<Dial>…)`` ends the stream."""
    gateway, page = place_call(start_webhook, scripted_relay, make_gateway, pages)
    stream = scripted_relay.stream()
    call = gateway.calls[page.progress("dialing")["callSid"]]
    assert call.end("transferred to +15550100001") is True
    assert call.end("again") is False  # once only
    assert stream.closed.wait(2) and stream.events()[-1]["event"] == "stop"
    assert page.wait_for("ended") == {"type": "ended", "by": "api", "reason": "transferred to +15550100001",
                                      "afterwards": []}
    assert call.call_sid not in gateway.calls and gateway.ended[-1] is call


def test_what_twilio_would_only_warn_about_is_shown_once_and_the_call_goes_on(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    _gateway, page = place_call(start_webhook, scripted_relay, make_gateway, pages)
    stream = scripted_relay.stream()
    for _ in range(3):
        stream.ws.send(b"\x00binary")
        stream.ws.send("not json")
        stream.ws.send('{"event": "media", "streamSid": "MZ-someone-else", "media": {"payload": "AAAA"}}')
    stream.media(audio.silence(20))
    assert wait_until(lambda: len(page.audio) == 160)
    notices = [e["text"] for e in page.of("notice")]
    assert len(notices) == 3, notices
    assert any("31950" in text for text in notices) and any("another streamSid" in text for text in notices)
    assert not page.of("ended")


def test_the_page_sees_its_call_refused_when_the_webhook_refuses_the_signature(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    gateway = make_gateway(start_webhook(scripted_relay.url), auth_token="not-" + AUTH_TOKEN)
    page = pages(gateway.port)
    ended = page.wait_for("ended")
    assert ended["by"] == "gateway"
    assert ended["reason"].startswith("the webhook refused the call: HTTP 403")
    assert "TWILIO_AUTH_TOKEN" in ended["reason"]
    assert not scripted_relay.streams


def test_a_webhook_that_is_not_running_is_named_with_the_fix(make_gateway: MakeGateway, pages: Pages) -> None:
    from tests.conftest import free_port

    gateway = make_gateway(f"http://127.0.0.1:{free_port()}")
    ended = pages(gateway.port).wait_for("ended")
    assert ended["by"] == "gateway"
    assert "could not reach the webhook" in ended["reason"] and "make run" in ended["reason"]
