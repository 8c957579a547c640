"""Hang-up, transfer and keypad digits end to end: the assistant's goodbye plays out, then the relay
completes or redirects the call through Twilio's REST API (its stand-in checks the credentials),
and Twilio's side ends the stream; when the REST API cannot be reached or refuses, the stream is
closed so Twilio plays the fallback, and a failed transfer is told to the model instead."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from scripts.fakes.openai import Scenario, Script
from scripts.fakes.twilio_call_updates import CallUpdate
from scripts.fakes.twilio_messages import TEST_ACCOUNT_SID
from tests.e2e.conftest import (
    DESTINATIONS,
    KEY_SID,
    LINES,
    Stack,
    greeted,
    heard_in_order,
    output_document,
    speak_then_hold,
)
from tests.helpers import wait_until

E2E = Callable[..., Stack]


@pytest.mark.parametrize("api_key", [False, True], ids=["auth_token", "api_key"])
def test_end_call_plays_the_goodbye_then_completes_the_call_and_no_fallback_plays(e2e: E2E, api_key: bool) -> None:
    stack = e2e(Script(tool=None, lines=LINES), api_key=api_key)
    caller = stack.call()
    greeted(caller)
    speak_then_hold(caller)
    assert caller.closed.wait(8), "the call never ended"
    result = caller.finish()
    [request] = stack.rest.requests
    call_sid = caller.target.call_sid
    assert request.path == f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Calls/{call_sid}.json"
    assert (request.method, request.form, request.status) == ("POST", {"Status": "completed"}, 200)
    assert request.user == (KEY_SID if api_key else TEST_ACCOUNT_SID)  # the stand-in checked the password too
    # The goodbye was heard in full, and the relay asked Twilio only once its last mark came back.
    assert result.received_audio.endswith(LINES.goodbye.audio)
    assert len(result.heard) == len(result.received_audio), "the caller did not hear all of it"
    last_mark_at = result.connected_at + result.marks_echoed_ms[-1] / 1000
    assert request.at >= last_mark_at, "the call was completed before the goodbye had played"
    # Twilio ended the stream (stop) on the REST request: the relay never closed it, so no fallback.
    assert result.rest_updates == [CallUpdate("hang_up", "Status=completed")]
    assert result.ended_by == "assistant" and not result.relay_hung_up
    assert stack.report(caller)["end_reason"] == "assistant_hangup"


@pytest.mark.parametrize("destination", list(DESTINATIONS))
def test_transfer_call_redirects_the_call_to_dial_the_destination(e2e: E2E, destination: str) -> None:
    stack = e2e(Script(tool=None, then="transfer_call", destination=destination, lines=LINES))
    caller = stack.call()
    greeted(caller)
    speak_then_hold(caller)
    assert caller.closed.wait(8)
    result = caller.finish()
    target = DESTINATIONS[destination]
    dial = f"<Sip>{target}</Sip>" if target.startswith("sip:") else target
    [request] = stack.rest.requests
    assert request.form == {"Twiml": f"<Response><Dial>{dial}</Dial></Response>"} and request.status == 200
    assert result.received_audio.endswith(LINES.handover.audio)
    assert result.rest_updates == [CallUpdate("transfer", target)] and result.ended_by == "assistant"
    report = stack.report(caller)
    assert report["end_reason"] == "transferred"
    transfer = report["transfer"]
    assert (transfer["destination"], transfer["ok"]) == (destination, True)
    caller_turn = next(t for t in report["transcript"] if t["role"] == "caller")
    assert transfer["at_ms"] > caller_turn["at_ms"], "the transfer is placed after the words that led to it"


@pytest.mark.parametrize("fault", ["refuse", "fail", "wrong_credentials"])
def test_a_hang_up_twilio_does_not_take_closes_the_stream_so_the_fallback_plays(e2e: E2E, fault: str) -> None:
    env = {"TWILIO_API_KEY_SID": "SK" + "d" * 32, "TWILIO_API_KEY_SECRET": "not-the-right-secret-0123"} \
        if fault == "wrong_credentials" else {}
    stack = e2e(Script(tool=None, lines=LINES), rest_mode="normal" if fault == "wrong_credentials" else fault,
                **env)
    caller = stack.call()
    greeted(caller)
    speak_then_hold(caller)
    assert caller.closed.wait(8), "the caller was left in silence"
    result = caller.finish()
    assert result.relay_hung_up and result.close_code == 1000  # Twilio then runs the TwiML after <Connect>
    assert result.rest_updates == [] and result.received_audio.endswith(LINES.goodbye.audio)
    expected = {"refuse": [], "fail": [500], "wrong_credentials": [401]}[fault]
    assert [r.status for r in stack.rest.requests] == expected
    assert stack.report(caller)["end_reason"] == "assistant_hangup_failed"


def test_a_transfer_twilio_refuses_is_told_to_the_model_and_the_call_goes_on(e2e: E2E) -> None:
    stack = e2e(Script(tool=None, then="transfer_call", lines=LINES), rest_mode="fail")
    caller = stack.call()
    greeted(caller)
    speak_then_hold(caller)
    session = stack.session(caller)
    told = output_document(session)
    assert told == {"error": "the transfer could not be placed; apologise and offer to help otherwise"}
    [transfer] = session.sent_of("response.function_call_arguments.done")
    [item] = [e["item"] for e in session.events if e.get("type") == "conversation.item.create"]
    assert item["call_id"] == transfer["call_id"]
    assert wait_until(lambda: heard_in_order(caller, LINES.handover, LINES.transfer_failed), 5)
    assert not caller.closed.is_set(), "the call ended although the caller is still there"
    result = caller.finish()
    assert result.ended_by == "caller"
    report = stack.report(caller)
    assert report["end_reason"] == "caller_hangup"
    assert (report["transfer"]["destination"], report["transfer"]["ok"]) == ("sales", False)


def test_keypad_digits_reach_the_model_as_one_message(e2e: E2E) -> None:
    stack = e2e(Scenario())
    caller = stack.call()
    greeted(caller)
    [session] = stack.standin.sessions
    caller.press("42#", gap_s=0.05)
    caller.press("7", gap_s=0)  # no "#": sent after the pause (0.3 s here)

    def messages() -> list[str]:
        return [e["item"]["content"][0]["text"] for e in session.events
                if e.get("type") == "conversation.item.create" and e["item"].get("type") == "message"]

    assert wait_until(lambda: len(messages()) == 2, 3), messages()
    assert messages() == ["The caller pressed 4 2 # on the phone's keypad.",
                          "The caller pressed 7 on the phone's keypad."]
    kinds = session.types()
    first = kinds.index("conversation.item.create")
    assert wait_until(lambda: session.types()[first:].count("response.create") == 2, 3), "each is answered"
    caller.finish()
    turns = stack.report(caller)["transcript"]
    assert [(t["role"], t["text"]) for t in turns if t.get("keypad")] == [("caller", "4 2 #"), ("caller", "7")]
