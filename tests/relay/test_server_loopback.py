"""The relay end to end on loopback: real sockets, the stand-in model as OpenAI and the
simulated caller as Twilio. Assertions are on what the peers observed; the relay's own
state is only read where a peer cannot see it (the session.update it prepared)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from relay import __version__ as relay_version
from scripts import audio
from scripts.fakes.openai import Behaviour, StandinModel
from scripts.fakes.twilio_caller import SimulatedCaller
from scripts.fakes.twilio_webhook import target_from_relay
from tests.conftest import API_KEY, AUTH_TOKEN, DIAGNOSTIC_AUTH, DIAGNOSTIC_TOKEN, STREAM_SECRET, RunningRelay
from tests.helpers import QUIET, assert_ga_client_event, get, wait_until


def caller(relay: RunningRelay, **kwargs: Any) -> SimulatedCaller:
    target = target_from_relay(relay.ws_url, public_url=relay.ws_url, stream_secret=STREAM_SECRET)
    kwargs.setdefault("hold_s", 1.5)
    kwargs.setdefault("caller_audio", QUIET)
    return SimulatedCaller(target, auth_token=AUTH_TOKEN, **kwargs)


# -- plain HTTP ------------------------------------------------------------------------


def test_plain_get_on_the_stream_route_says_426_not_404(relay: RunningRelay) -> None:
    status, headers, body = get(relay.http_url + "/twilio/realtime")
    assert status == 426
    assert headers["Content-Type"].startswith("text/plain")
    assert body == b"WebSocket connection expected\n"


def test_unknown_paths_and_methods(relay: RunningRelay) -> None:
    status, _, body = get(relay.http_url + "/")
    assert status == 404 and b"/twilio/realtime" in body
    status, headers, _ = get(relay.http_url + "/twilio/realtime", method="POST", data=b"x")
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_healthz_tells_the_public_its_status_only(relay: RunningRelay) -> None:
    for headers in ({}, {"Authorization": "Bearer not-the-token-0123456789"}, {"Authorization": DIAGNOSTIC_TOKEN},
                    {"Authorization": f"Basic {DIAGNOSTIC_TOKEN}"}):
        status, answer_headers, body = get(relay.http_url + "/healthz", headers)
        assert status == 200 and answer_headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"status": "ok"}, headers
    status, _, body = get(relay.http_url + "/healthz", DIAGNOSTIC_AUTH)
    assert status == 200 and json.loads(body) == {"status": "ok", "version": relay_version, "active_calls": 0,
                                                  "max_calls": 150, "draining": False}


def test_healthz_without_a_diagnostic_token_is_status_only_for_everyone(make_relay: Any,
                                                                         standin: StandinModel) -> None:
    relay = make_relay(standin.url, DIAGNOSTIC_TOKEN="")
    for headers in ({}, {"Authorization": "Bearer "}, DIAGNOSTIC_AUTH):
        assert json.loads(get(relay.http_url + "/healthz", headers)[2]) == {"status": "ok"}


def test_a_draining_relay_says_so_in_public_with_503_and_livez_stays_200(relay: RunningRelay) -> None:
    relay.app.begin_drain()
    status, _, body = get(relay.http_url + "/healthz")
    assert (status, json.loads(body)) == (503, {"status": "draining"})
    status, headers, body = get(relay.http_url + "/livez")
    assert (status, body) == (200, b"ok\n") and headers["Content-Type"].startswith("text/plain")


# -- a call -------------------------------------------------------------------------------


def test_audio_passes_byte_for_byte_both_ways(relay: RunningRelay, standin: StandinModel) -> None:
    greeting = bytes((i * 7) % 256 for i in range(3200))  # 400 ms, 4 deltas of 100 ms
    standin.greeting_audio = greeting
    result = caller(relay, caller_audio=QUIET * 3).run()

    assert result.handshake_status == 101 and result.close_code == 1000
    (session,) = standin.sessions
    # model -> caller: every delta arrived as a media payload, unchanged and in order
    assert result.media_payloads == session.deltas_sent
    assert result.received_audio == greeting
    # caller -> model: every media payload was appended, unchanged and in order
    assert session.appended == result.sent_payloads and len(session.appended) >= 15
    # a mark followed each delta and came back once played
    assert result.marks_echoed == [str(n) for n in range(1, 5)]
    # the session was configured before the greeting was asked for; all GA-shaped
    assert session.types()[:2] == ["session.update", "response.create"]
    assert session.model == "gpt-realtime"
    assert "Openai-Beta" not in session.headers
    for event in session.events:
        assert_ga_client_event(event)


def test_barge_in_clears_twilio_and_truncates_at_what_was_heard(
    relay: RunningRelay, standin: StandinModel
) -> None:
    standin.greeting_audio = bytes([0xFF]) * 8000 * 3  # 3 s of greeting, sent 8x real time
    talk = audio.read_wav_ulaw(audio.CALLER_WAV)
    result = caller(relay, caller_audio=talk, barge_in_after_s=0.6, hold_s=2.5).run()

    assert len(result.clears_ms) >= 1, result.timeline
    (session,) = standin.sessions
    truncates = [e for e in session.events if e["type"] == "conversation.item.truncate"]
    assert truncates, session.types()
    played_marks = result.marks_played_before_clear[0]
    # Each delta is 100 ms; only marks echoed before the clear count as heard. One echo
    # may still have been on its way when the relay saw speech_started (it cannot count
    # what it has not received), never more, and never anything after the clear.
    assert 100 * (played_marks - 1) <= truncates[0]["audio_end_ms"] <= 100 * played_marks
    assert 0 < truncates[0]["audio_end_ms"] < 3000
    assert truncates[0]["item_id"].startswith("item_standin_")  # the greeting's item
    for event in session.events:
        assert_ga_client_event(event)


def test_caller_hangup_closes_openai_within_a_second(relay: RunningRelay, standin: StandinModel) -> None:
    for send_stop in (True, False):
        call = caller(relay, send_stop=send_stop)
        assert call.begin()
        assert wait_until(lambda: standin.sessions and standin.sessions[-1].events, 3)
        hung_up = time.monotonic()
        call.finish()
        session = standin.sessions[-1]
        assert wait_until(lambda s=session: s.closed_at is not None, 2)
        assert session.closed_at is not None and session.closed_at - hung_up < 1.0, (
            f"OpenAI socket still open {session.closed_at and session.closed_at - hung_up} s "
            f"after the caller hung up (stop={send_stop})")


# -- who gets in -------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "forged", "expired", "other_call"])
def test_bad_stream_token_opens_no_openai_session(relay: RunningRelay, standin: StandinModel,
                                                  case: str) -> None:
    from relay import stream_token

    call = caller(relay, hold_s=3)
    params = call.target.parameters
    if case == "missing":
        del params["streamToken"]
    elif case == "forged":
        params["streamToken"] = stream_token.mint("attacker-secret" * 3, call.target.call_sid, time.time(), 300)
    elif case == "expired":
        params["streamToken"] = stream_token.mint(STREAM_SECRET, call.target.call_sid, time.time() - 900, 300)
    else:
        params["streamToken"] = stream_token.mint(STREAM_SECRET, "CA" + "e" * 32, time.time(), 300)
    result = call.run()
    assert result.close_code == 1008
    # The relay hung up, well before the caller would have (hold_s=3).
    assert result.closed_at_ms is not None and result.closed_at_ms < 2000, result.closed_at_ms
    assert result.media_payloads == []
    assert standin.handshakes == 0 and standin.sessions == []


def test_a_replayed_stream_token_is_refused(relay: RunningRelay, standin: StandinModel) -> None:
    first = caller(relay, hold_s=0.5)
    assert first.run().close_code == 1000
    again = SimulatedCaller(first.target, auth_token=AUTH_TOKEN, hold_s=1, caller_audio=QUIET)
    assert again.run().close_code == 1008
    assert len(standin.sessions) == 1


@pytest.mark.parametrize("signature", [None, "forged", "wrong_url"])
def test_unsigned_or_forged_upgrade_is_refused_before_the_handshake(
    relay: RunningRelay, standin: StandinModel, signature: str | None
) -> None:
    from twilio.request_validator import RequestValidator

    call = caller(relay)
    call.auth_token = None
    if signature == "forged":
        call.extra_headers["X-Twilio-Signature"] = "bm90IGEgc2lnbmF0dXJl"
    elif signature == "wrong_url":
        call.extra_headers["X-Twilio-Signature"] = RequestValidator(AUTH_TOKEN).compute_signature(
            "wss://somewhere-else.example.com/twilio/realtime", {})
    result = call.run()
    assert result.handshake_status == 403
    assert "X-Twilio-Signature" in result.handshake_body
    assert standin.handshakes == 0


# -- upstream faults: tests/hardening/test_upstream_faults.py (every fault, timed from the
# fault itself, with leak checks, in-process and under gunicorn)


# -- capacity --------------------------------------------------------------------------------


def test_at_capacity_further_upgrades_get_503(make_relay: Any, standin: StandinModel) -> None:
    relay = make_relay(standin.url, RELAY_MAX_CALLS="1")
    first = caller(relay, hold_s=5)
    assert first.begin()
    assert wait_until(lambda: relay.app.counter.total() == 1)
    second = caller(relay).run()
    assert second.handshake_status == 503 and "capacity" in second.handshake_body
    status, _, body = get(relay.http_url + "/healthz")
    assert (status, json.loads(body)) == (503, {"status": "saturated"})
    status, _, body = get(relay.http_url + "/livez")
    assert (status, body) == (200, b"ok\n")  # saturated, but alive
    first.finish()
    assert wait_until(lambda: get(relay.http_url + "/healthz")[0] == 200)


# -- the diagnostic endpoint --------------------------------------------------------------


def test_diagnostic_requires_its_token(relay: RunningRelay) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": DIAGNOSTIC_TOKEN}):
        status, response_headers, body = get(relay.http_url + "/diagnostic/openai", headers)
        assert status == 401 and "Bearer" in response_headers["WWW-Authenticate"]


def test_diagnostic_against_a_healthy_model(relay: RunningRelay, standin: StandinModel) -> None:
    status, _, body = get(relay.http_url + "/diagnostic/openai",
                          {"Authorization": f"Bearer {DIAGNOSTIC_TOKEN}"})
    result = json.loads(body)
    assert status == 200 and result["ok"] is True and result["stage"] == "session"
    assert set(result["stages_ms"]) >= {"dns", "tcp", "handshake", "session"}
    assert result["http_status"] == 101 and result["model"] == "gpt-realtime"
    # The stand-in answers as OpenAI would: the relay says plainly that it is not OpenAI.
    assert result["upstream"] == "local"
    assert result["upstream_note"].startswith(f"NOT OpenAI: a model server on this machine (127.0.0.1:{standin.port})")
    assert "stand-in" in result["upstream_note"]
    assert API_KEY.encode() not in body
    (session,) = standin.sessions
    assert session.types() == ["session.update"]
    assert session.events[0] == json.loads(relay.app.session_update)  # exactly the bridge's


def test_diagnostic_against_a_model_that_refuses_the_key(relay: RunningRelay, standin: StandinModel) -> None:
    standin.behaviour = Behaviour.REJECT_401
    status, _, body = get(relay.http_url + "/diagnostic/openai",
                          {"Authorization": f"Bearer {DIAGNOSTIC_TOKEN}"})
    result = json.loads(body)
    assert status == 502 and result["ok"] is False
    assert result["stage"] == "handshake" and result["http_status"] == 401
    assert result["error_code"] == "invalid_api_key" and "Incorrect API key" in result["error_message"]
    assert API_KEY.encode() not in body


def test_diagnostic_names_a_rejected_session(relay: RunningRelay, standin: StandinModel) -> None:
    standin.behaviour = Behaviour.REJECT_SESSION
    _, _, body = get(relay.http_url + "/diagnostic/openai", {"Authorization": f"Bearer {DIAGNOSTIC_TOKEN}"})
    result = json.loads(body)
    assert result["ok"] is False and result["stage"] == "session"
    assert result["error_code"] == "invalid_value" and "audio/pcmu" in result["error_message"]


def test_diagnostic_disabled_without_a_token(make_relay: Any, standin: StandinModel) -> None:
    relay = make_relay(standin.url, DIAGNOSTIC_TOKEN="")
    status, _, body = get(relay.http_url + "/diagnostic/openai", {"Authorization": "Bearer x"})
    assert status == 404 and b"DIAGNOSTIC_TOKEN" in body
