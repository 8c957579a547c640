"""Hang-up and transfer through Twilio's REST API, on loopback against the stand-in
(scripts/fakes/twilio_rest_api.py): the request Twilio receives, both ways of authenticating,
the TwiML, and every failure reported without credentials in the log."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator

import pytest

from relay.config import RelayConfig
from relay.twilio_rest import TwilioRest, dial_twiml
from scripts.fakes.twilio_rest_api import RestRequest, TwilioRestApi

ACCOUNT = "AC" + "a" * 32
CALL = "CA" + "b" * 32
AUTH_TOKEN = "twilio-auth-token-0123456789"
KEY_SID, KEY_SECRET = "SK" + "c" * 32, "api-key-secret-0123456789"


@pytest.fixture
def twilio() -> Iterator[TwilioRestApi]:
    api = TwilioRestApi(credentials={ACCOUNT: AUTH_TOKEN, KEY_SID: KEY_SECRET}, delay_s=3).start()
    yield api
    api.stop()


def rest(api: TwilioRestApi, **kwargs: object) -> TwilioRest:
    return TwilioRest(api.base_url, auth_token=AUTH_TOKEN, **kwargs)  # type: ignore[arg-type]


# -- the TwiML ---------------------------------------------------------------------------------------


def test_dial_twiml() -> None:
    assert dial_twiml("+15550100001") == "<Response><Dial>+15550100001</Dial></Response>"
    assert dial_twiml("sip:desk@pbx.example.com") == (
        "<Response><Dial><Sip>sip:desk@pbx.example.com</Sip></Dial></Response>")


def test_a_destination_is_escaped_as_xml() -> None:
    twiml = dial_twiml("sip:a&b<c>@pbx.example.com")
    assert ElementTree.fromstring(twiml).find("Dial/Sip").text == "sip:a&b<c>@pbx.example.com"  # type: ignore[union-attr]


# -- what Twilio receives ---------------------------------------------------------------------------


def test_hang_up_with_the_account_and_auth_token(twilio: TwilioRestApi) -> None:
    result = rest(twilio).complete(ACCOUNT, CALL)
    assert (result.ok, result.status, result.error, result.action) == (True, 200, "", "complete")
    [request] = twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert (request.method, request.user, request.form) == ("POST", ACCOUNT, {"Status": "completed"})


def test_transfer_with_an_api_key(twilio: TwilioRestApi) -> None:
    client = rest(twilio, api_key_sid=KEY_SID, api_key_secret=KEY_SECRET)
    assert client.transfer(ACCOUNT, CALL, "sip:desk@pbx.example.com").ok
    [request] = twilio.requests
    assert request.user == KEY_SID
    assert request.form == {"Twiml": "<Response><Dial><Sip>sip:desk@pbx.example.com</Sip></Dial></Response>"}


def test_the_client_the_configuration_describes(twilio: TwilioRestApi) -> None:
    config = RelayConfig.from_env({
        "OPENAI_API_KEY": "sk-x", "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "STREAM_TOKEN_SECRET": "x" * 32,
        "RELAY_PUBLIC_URL": "wss://relay.example.com", "TWILIO_API_BASE_URL": twilio.base_url,
        "TWILIO_API_KEY_SID": KEY_SID, "TWILIO_API_KEY_SECRET": KEY_SECRET})
    assert TwilioRest.from_config(config).complete(ACCOUNT, CALL).ok
    assert twilio.requests[0].user == KEY_SID


def test_a_gateway_hears_of_each_accepted_update(twilio: TwilioRestApi) -> None:
    heard: list[RestRequest] = []
    twilio.on_update = heard.append
    rest(twilio).transfer(ACCOUNT, CALL, "+15550100001")
    assert [request.form for request in heard] == [{"Twiml": "<Response><Dial>+15550100001</Dial></Response>"}]


# -- failures -----------------------------------------------------------------------------------------


def test_wrong_credentials(twilio: TwilioRestApi) -> None:
    result = TwilioRest(twilio.base_url, auth_token="not-the-token-0123456789").complete(ACCOUNT, CALL)
    assert (result.ok, result.status, result.error, result.twilio_code) == (False, 401, "status", 20003)


def test_a_call_already_over(twilio: TwilioRestApi) -> None:
    client = rest(twilio)
    assert client.complete(ACCOUNT, CALL).ok
    again = client.transfer(ACCOUNT, CALL, "+15550100001")
    assert (again.ok, again.status, again.twilio_code) == (False, 400, 21220)


def test_twilio_failing_slow_or_unreachable(twilio: TwilioRestApi) -> None:
    twilio.mode = "fail"
    failed = rest(twilio).complete(ACCOUNT, CALL)
    assert (failed.ok, failed.status, failed.error, failed.twilio_code) == (False, 500, "status", 20500)
    twilio.mode = "slow"
    slow = rest(twilio, timeout_s=0.3).complete(ACCOUNT, CALL)
    assert (slow.ok, slow.status, slow.error) == (False, None, "timeout")
    twilio.refuse()
    down = rest(twilio).complete(ACCOUNT, CALL)
    assert (down.ok, down.error) == (False, "connect")


@pytest.mark.parametrize(("account", "call"), [("", CALL), (ACCOUNT, ""), (ACCOUNT, "CA../../x"),
                                               ("AC1/Calls/CA2", CALL)])
def test_sids_that_are_not_sids_send_nothing(twilio: TwilioRestApi, account: str, call: str) -> None:
    result = rest(twilio).complete(account, call)
    assert (result.ok, result.error) == (False, "bad_sid")
    assert twilio.requests == []


def test_the_log_says_how_it_went_and_never_the_credentials(twilio: TwilioRestApi,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="relay.twilio_rest")
    rest(twilio, api_key_sid=KEY_SID, api_key_secret=KEY_SECRET).transfer(ACCOUNT, CALL, "+15550100001")
    rest(twilio).complete(ACCOUNT, CALL)
    TwilioRest(twilio.base_url, auth_token="wrong-token-0123456789").complete(ACCOUNT, "CA" + "d" * 32)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith("twilio.rest action=redirect ok=True status=200 duration_ms=")
    assert lines[1].startswith("twilio.rest action=complete ok=True status=200 duration_ms=")
    assert lines[2].startswith("twilio.rest action=complete ok=False status=401 twilio_code=20003 error=status")
    for secret in (AUTH_TOKEN, KEY_SECRET, "wrong-token", "Basic "):
        assert secret not in caplog.text
