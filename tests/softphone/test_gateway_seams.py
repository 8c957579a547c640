"""The gateway's seams under attack: garbage from a page, pages that vanish or freeze, two
pages at once, a page of another site, a page that floods; and what it serves over HTTP.

A bad page ends its own call (the relay gets ``stop``) and nothing else: a good call
placed alongside keeps streaming.
"""

from __future__ import annotations

import base64
import dataclasses
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import websocket

from scripts.softphone.gateway import Gateway
from tests.helpers import QUIET, get, wait_until
from tests.softphone.conftest import FAST, ScriptedPage, ScriptedRelay

MakeGateway = Callable[..., Gateway]
Pages = Callable[..., ScriptedPage]


@pytest.fixture
def gateway(start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway) -> Gateway:
    return make_gateway(start_webhook(scripted_relay.url))


def connected_page(gateway: Gateway, pages: Pages) -> ScriptedPage:
    page = pages(gateway.port)
    page.progress("connected")
    return page


def assert_still_streaming(page: ScriptedPage, relay: ScriptedRelay, index: int) -> None:
    """The page's frames keep reaching its stream."""
    stream = relay.stream(index)
    before = len(stream.events("media"))
    page.send_frames([QUIET] * 3)
    stream.wait_for("media", before + 3)
    assert not page.of("ended")


LONG = '{"type": "hangup", "pad": "' + "x" * 300 + '"}'
GARBAGE = [
    (b"\x00" * 7, "an audio frame of 7 bytes (a frame is 160)"),
    ("hello", "a text message that is not JSON"),
    ("[1, 2]", "a JSON message that is not an object"),
    ('{"type": "dance"}', "a message of unknown type"),
    ('{"type": "played", "samples": -1}', "a 'played' message without a whole, non-negative 'samples'"),
    ('{"type": "played", "samples": true}', "a 'played' message without a whole, non-negative 'samples'"),
    ('{"type": "dtmf", "digit": "A"}', "a 'dtmf' message whose digit is not one of 0-9 * #"),
    (LONG, f"a text message of {len(LONG)} characters (at most 256)"),
]


@pytest.mark.parametrize("garbage,named", GARBAGE, ids=[named.split(" (")[0] for _, named in GARBAGE])
def test_garbage_from_a_page_ends_only_that_call(
        gateway: Gateway, scripted_relay: ScriptedRelay, pages: Pages, garbage: str | bytes, named: str) -> None:
    good = connected_page(gateway, pages)
    bad = connected_page(gateway, pages)
    bad_stream = scripted_relay.stream(1)
    if isinstance(garbage, bytes):
        bad.ws.send_binary(garbage)
    else:
        bad.ws.send(garbage)
    ended = bad.wait_for("ended")
    assert ended["by"] == "gateway"
    assert ended["reason"] == f"the page sent {named}, so the gateway ended the call"
    assert bad_stream.closed.wait(2) and bad_stream.events()[-1]["event"] == "stop"
    assert_still_streaming(good, scripted_relay, 0)
    assert len(gateway.calls) == 1


def test_text_that_is_not_utf8_ends_the_call(gateway: Gateway, scripted_relay: ScriptedRelay, pages: Pages) -> None:
    page = connected_page(gateway, pages)
    page.ws.send(b"\xff\xfe{}", opcode=websocket.ABNF.OPCODE_TEXT)
    assert "not UTF-8" in page.wait_for("ended")["reason"]
    assert scripted_relay.stream().events()[-1]["event"] == "stop"


def test_a_page_that_vanishes_mid_call_hangs_up_its_call(
        gateway: Gateway, scripted_relay: ScriptedRelay, pages: Pages) -> None:
    good = connected_page(gateway, pages)
    gone = connected_page(gateway, pages)
    gone.send_frames([QUIET] * 5)
    stream = scripted_relay.stream(1)
    stream.wait_for("media", 5)
    gone.vanish()
    assert stream.closed.wait(2), "the relay's stream outlived the page"
    assert stream.events()[-1]["event"] == "stop"
    assert wait_until(lambda: gateway.ended) and gateway.ended[-1].ended_by == "caller"
    assert_still_streaming(good, scripted_relay, 0)


def test_a_frozen_page_is_hung_up_after_the_idle_limit(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    gateway = make_gateway(start_webhook(scripted_relay.url), limits=dataclasses.replace(FAST, page_idle_s=0.3))
    page = connected_page(gateway, pages)
    page.send_frames([QUIET] * 3)
    ended = page.wait_for("ended", 3)  # nothing more: the connection stays open, the page says nothing
    assert ended["by"] == "caller" and ended["reason"].startswith("the page stopped sending")
    stream = scripted_relay.stream()
    assert stream.closed.wait(2) and stream.events()[-1]["event"] == "stop"


def test_two_pages_at_once_are_two_independent_calls(
        gateway: Gateway, scripted_relay: ScriptedRelay, pages: Pages) -> None:
    first, second = connected_page(gateway, pages), connected_page(gateway, pages)
    sids = [page.progress("dialing")["callSid"] for page in (first, second)]
    streams = [scripted_relay.stream(0), scripted_relay.stream(1)]
    assert [s.events("start")[0]["start"]["callSid"] for s in streams] == sids
    first.send_frames([b"\x11" * 160] * 2)
    second.send_frames([b"\x22" * 160] * 3)
    assert len(streams[0].wait_for("media", 2)) == 2 and len(streams[1].wait_for("media", 3)) == 3
    assert {base64.b64decode(m["media"]["payload"]) for m in streams[0].events("media")} == {b"\x11" * 160}
    assert {base64.b64decode(m["media"]["payload"]) for m in streams[1].events("media")} == {b"\x22" * 160}
    first.send_json(type="hangup")
    assert streams[0].closed.wait(2)
    assert_still_streaming(second, scripted_relay, 1)


def test_past_the_call_limit_a_page_is_refused_before_the_upgrade(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    gateway = make_gateway(start_webhook(scripted_relay.url), limits=dataclasses.replace(FAST, max_calls=1))
    connected_page(gateway, pages)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        pages(gateway.port)
    assert refused.value.status_code == 403
    assert b"hang one up first" in (refused.value.resp_body or b"")
    assert len(scripted_relay.streams) == 1


@pytest.mark.parametrize("options", [{"origin": "https://evil.example"}, {"origin": "null"},
                                     {"host": "evil.example"}], ids=["other-site", "opaque-origin", "rebinding"])
def test_only_the_softphones_own_page_may_place_calls(
        gateway: Gateway, scripted_relay: ScriptedRelay, pages: Pages, options: dict[str, str]) -> None:
    if "host" in options:
        options = {**options, "origin": f"http://{options['host']}"}
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        pages(gateway.port, **options)
    assert refused.value.status_code == 403
    assert not scripted_relay.streams and not gateway.calls


def test_a_page_running_ahead_of_real_time_is_held_to_a_budget(
        start_webhook: Any, scripted_relay: ScriptedRelay, make_gateway: MakeGateway, pages: Pages) -> None:
    gateway = make_gateway(start_webhook(scripted_relay.url), limits=dataclasses.replace(FAST, burst_frames=10))
    page = connected_page(gateway, pages)
    page.send_frames([QUIET] * 200, realtime=False)
    assert "faster than real time" in page.wait_for("notice")["text"]
    stream = scripted_relay.stream()
    call = gateway.calls[page.progress("dialing")["callSid"]]
    assert wait_until(lambda: call.figures["frames_to_relay"] + call.figures["frames_held_back"] == 200)
    # 10 frames of burst, plus one for each 20 ms since the stream started: far fewer than 200.
    assert call.figures["frames_to_relay"] < 60
    assert len(stream.wait_for("media", call.figures["frames_to_relay"])) == call.figures["frames_to_relay"]
    assert not page.of("ended")


# -- HTTP ---------------------------------------------------------------------------------------


def http(gateway: Gateway, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    return get(f"http://127.0.0.1:{gateway.port}{path}", headers=headers, method=method,
               data=b"" if method == "POST" else None)


def test_it_serves_the_page_and_its_modules(gateway: Gateway) -> None:
    status, headers, body = http(gateway, "/")
    assert status == 200 and b'id="call"' in body and headers["Content-Type"].startswith("text/html")
    for name in ("softphone.js", "worklet.js", "line.js", "dsp.js"):
        status, headers, _ = http(gateway, f"/{name}")
        assert (status, headers["Content-Type"]) == (200, "text/javascript; charset=utf-8"), name
    assert http(gateway, "/healthz")[2] == b'{"status": "ok", "calls": 0}'


@pytest.mark.parametrize("path", ["/../gateway.py", "/%2e%2e/gateway.py", "/static/../gateway.py", "/.secret",
                                  "/nothing.js"])
def test_nothing_outside_the_pages_files_is_served(gateway: Gateway, path: str) -> None:
    assert http(gateway, path)[0] == 404


def test_plain_requests_get_plain_answers(gateway: Gateway) -> None:
    assert http(gateway, "/", method="POST")[0] == 405
    assert http(gateway, "/phone")[0] == 426
    status, _, body = http(gateway, "/", headers={"Host": "evil.example"})
    assert status == 403 and b"answers only http://127.0.0.1:" in body


def test_a_mounted_app_can_end_a_live_call_the_way_a_rest_api_would(
        gateway: Gateway, scripted_relay: ScriptedRelay, pages: Pages) -> None:
    """What a Twilio REST API stand-in mounted on the gateway does with ``Calls(sid).update(...)``."""

    def rest(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        call_sid = environ["PATH_INFO"].rsplit("/", 1)[-1].removesuffix(".json")
        form = urllib.parse.parse_qs(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode())
        call = gateway.calls.get(call_sid)
        if call is None:
            start_response("404 Not Found", [])
            return [b""]
        call.end(f"transferred to {form['Twiml'][0]}")
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    gateway.mount("/2010-04-01/", rest)
    page = connected_page(gateway, pages)
    sid = page.progress("dialing")["callSid"]
    status, _, _ = get(f"http://127.0.0.1:{gateway.port}/2010-04-01/Accounts/AC0/Calls/{sid}.json",
                       method="POST", data=b"Twiml=%2B15550100001")
    assert status == 200
    assert page.wait_for("ended")["reason"] == "transferred to +15550100001"
    assert scripted_relay.stream().events()[-1]["event"] == "stop"
