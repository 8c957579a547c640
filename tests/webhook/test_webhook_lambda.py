"""The Lambda entry point: Function URL events (payload 2.0) end to end, and secrets from SSM."""

from __future__ import annotations

import base64
import importlib
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import pytest

from relay import stream_token as relay_token
from tests.conftest import AUTH_TOKEN, STREAM_SECRET
from tests.webhook.conftest import CALLER, function_url_event, new_call_sid, sign, voice_form, webhook_env
from webhook_app.config import ConfigError

FUNCTION_URL = "https://abc123.lambda-url.eu-west-1.on.aws"
PREFIX = "/liveline/prod"


class LambdaContext:
    """The few attributes of the Lambda context object a handler may read."""

    function_name = "liveline-webhook"
    aws_request_id = "8b1e6f4c-1d2e-4f3a-9b8c-7d6e5f4a3b2c"
    memory_limit_in_mb = 256

    def get_remaining_time_in_millis(self) -> int:
        return 9_000


class FakeSSM:
    """boto3's SSM client as far as GetParameters goes (response shape of the AWS API)."""

    def __init__(self, parameters: Mapping[str, str]) -> None:
        self.parameters = dict(parameters)
        self.calls: list[dict[str, Any]] = []

    def get_parameters(self, *, Names: list[str], WithDecryption: bool) -> dict[str, Any]:  # noqa: N803
        self.calls.append({"Names": list(Names), "WithDecryption": WithDecryption})
        return {
            "Parameters": [
                {"Name": name, "Type": "SecureString", "Value": self.parameters[name], "Version": 1,
                 "ARN": f"arn:aws:ssm:eu-west-1:123456789012:parameter{name}", "DataType": "text"}
                for name in Names if name in self.parameters
            ],
            "InvalidParameters": [name for name in Names if name not in self.parameters],
        }


@pytest.fixture
def lambda_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """webhook_app.lambda_handler, imported (its cold start) with a Function URL environment."""
    for name, value in webhook_env(WEBHOOK_PUBLIC_URL=FUNCTION_URL).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SSM_PARAMETER_PREFIX", raising=False)
    return importlib.import_module("webhook_app.lambda_handler")


def twiml_of(result: dict[str, Any]) -> ET.Element:
    body = result["body"]
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return ET.fromstring(body)


# -- Function URL events ------------------------------------------------------------------


def test_a_signed_function_url_event_gets_twiml(lambda_module: ModuleType) -> None:
    call_sid = new_call_sid()
    form = voice_form(call_sid)
    event = function_url_event("POST", "/twilio/voice", form=form,
                               signature=sign(FUNCTION_URL + "/twilio/voice", form))

    result = lambda_module.handler(event, LambdaContext())

    assert result["statusCode"] == 200
    assert result["headers"]["content-type"].startswith("text/xml")
    assert result["isBase64Encoded"] is False
    root = twiml_of(result)
    assert [child.tag for child in root] == ["Connect", "Say", "Hangup"]
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert stream.attrib["url"] == "wss://relay.example.com/twilio/realtime"
    assert stream.attrib["statusCallback"] == FUNCTION_URL + "/twilio/status"
    params = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    assert params["callerNumber"] == CALLER
    now = time.time()  # minted by the handler with the real clock: valid now, for a few minutes
    assert relay_token.verify_parameters(STREAM_SECRET, params, call_sid, now=now).expires > now


def test_a_function_url_event_with_a_query_string(lambda_module: ModuleType) -> None:
    form = voice_form(new_call_sid())
    event = function_url_event("POST", "/twilio/voice", form=form, query="tenant=acme",
                               signature=sign(FUNCTION_URL + "/twilio/voice?tenant=acme", form))

    assert lambda_module.handler(event, LambdaContext())["statusCode"] == 200


def test_an_event_signed_for_another_url_is_403(lambda_module: ModuleType) -> None:
    form = voice_form(new_call_sid())
    event = function_url_event("POST", "/twilio/voice", form=form,
                               signature=sign("https://elsewhere.example.com/twilio/voice", form))

    result = lambda_module.handler(event, LambdaContext())

    assert result["statusCode"] == 403
    assert result["headers"]["content-type"].startswith("text/plain")


def test_a_status_callback_event_is_204(lambda_module: ModuleType) -> None:
    form = {"AccountSid": "AC" + "0" * 32, "CallSid": new_call_sid(), "StreamSid": "MZ" + "1" * 32,
            "StreamEvent": "stream-stopped", "Timestamp": "2026-11-25T13:45:00.000Z"}
    event = function_url_event("POST", "/twilio/status", form=form,
                               signature=sign(FUNCTION_URL + "/twilio/status", form))

    assert lambda_module.handler(event, LambdaContext())["statusCode"] == 204


def test_get_events(lambda_module: ModuleType) -> None:
    health = lambda_module.handler(function_url_event("GET", "/healthz"), LambdaContext())
    voice = lambda_module.handler(function_url_event("GET", "/twilio/voice"), LambdaContext())

    assert health["statusCode"] == 200
    assert health["headers"]["content-type"] == "application/json"
    assert voice["statusCode"] == 405


# -- secrets from SSM -----------------------------------------------------------------------


def ssm_parameters(prefix: str = PREFIX) -> dict[str, str]:
    return {f"{prefix}/TWILIO_AUTH_TOKEN": AUTH_TOKEN, f"{prefix}/STREAM_TOKEN_SECRET": STREAM_SECRET}


def env_without_secrets(**extra: str) -> dict[str, str]:
    env = webhook_env(WEBHOOK_PUBLIC_URL=FUNCTION_URL, **extra)
    del env["TWILIO_AUTH_TOKEN"], env["STREAM_TOKEN_SECRET"]
    return env


def test_ssm_secrets_are_read_in_one_decrypting_call(lambda_module: ModuleType) -> None:
    ssm = FakeSSM(ssm_parameters())

    merged = lambda_module.environ_with_ssm_parameters(env_without_secrets(), ssm, PREFIX)

    assert ssm.calls == [{"Names": [f"{PREFIX}/TWILIO_AUTH_TOKEN", f"{PREFIX}/STREAM_TOKEN_SECRET"],
                          "WithDecryption": True}]
    assert merged["TWILIO_AUTH_TOKEN"] == AUTH_TOKEN
    assert merged["STREAM_TOKEN_SECRET"] == STREAM_SECRET
    assert merged["RELAY_PUBLIC_URL"] == "wss://relay.example.com"


def infra_environment() -> dict[str, str]:
    """What infra/modules/webhook puts in the function's environment: no secrets, no own URL."""
    return {"RELAY_PUBLIC_URL": "wss://relay.example.com", "SSM_PARAMETER_PREFIX": PREFIX,
            "FALLBACK_MESSAGE": "Sorry, please call again later.", "LIVELINE_SECRETS_VERSION": "3"}


def test_the_public_url_comes_from_ssm_when_the_environment_lacks_it(lambda_module: ModuleType) -> None:
    """The Function URL cannot be in its own function's environment (a cycle): infra writes it to SSM."""
    ssm = FakeSSM({**ssm_parameters(), f"{PREFIX}/WEBHOOK_PUBLIC_URL": FUNCTION_URL})

    merged = lambda_module.environ_with_ssm_parameters(infra_environment(), ssm, PREFIX)

    assert ssm.calls == [{"Names": [f"{PREFIX}/TWILIO_AUTH_TOKEN", f"{PREFIX}/STREAM_TOKEN_SECRET",
                                    f"{PREFIX}/WEBHOOK_PUBLIC_URL"], "WithDecryption": True}]
    assert merged["WEBHOOK_PUBLIC_URL"] == FUNCTION_URL


def test_a_public_url_missing_everywhere_is_named(lambda_module: ModuleType) -> None:
    with pytest.raises(ConfigError) as caught:
        lambda_module.environ_with_ssm_parameters(infra_environment(), FakeSSM(ssm_parameters()), PREFIX)

    (problem,) = caught.value.problems
    assert f"{PREFIX}/WEBHOOK_PUBLIC_URL not found and WEBHOOK_PUBLIC_URL is not set" in problem


def test_infras_environment_builds_a_working_handler(lambda_module: ModuleType) -> None:
    ssm = FakeSSM({**ssm_parameters(), f"{PREFIX}/WEBHOOK_PUBLIC_URL": FUNCTION_URL})
    handler = lambda_module.build_handler(infra_environment(), lambda: ssm)
    form = voice_form(new_call_sid())
    event = function_url_event("POST", "/twilio/voice", form=form,
                               signature=sign(FUNCTION_URL + "/twilio/voice", form))

    result = handler(event, LambdaContext())

    assert result["statusCode"] == 200
    assert "<Say>Sorry, please call again later.</Say>" in result["body"]


def test_ssm_wins_over_a_stale_environment_value(lambda_module: ModuleType) -> None:
    env = {**env_without_secrets(), "TWILIO_AUTH_TOKEN": "stale-token-from-env-000"}

    merged = lambda_module.environ_with_ssm_parameters(env, FakeSSM(ssm_parameters()), PREFIX + "/")

    assert merged["TWILIO_AUTH_TOKEN"] == AUTH_TOKEN


def test_missing_ssm_parameters_are_named(lambda_module: ModuleType) -> None:
    ssm = FakeSSM({f"{PREFIX}/TWILIO_AUTH_TOKEN": AUTH_TOKEN})

    with pytest.raises(ConfigError) as caught:
        lambda_module.environ_with_ssm_parameters(env_without_secrets(), ssm, PREFIX)

    (problem,) = caught.value.problems
    assert f"SSM parameter {PREFIX}/STREAM_TOKEN_SECRET not found" in problem
    assert "SecureString" in problem


def test_no_ssm_parameters_at_all_names_both(lambda_module: ModuleType) -> None:
    with pytest.raises(ConfigError) as caught:
        lambda_module.environ_with_ssm_parameters(env_without_secrets(), FakeSSM({}), PREFIX)

    assert len(caught.value.problems) == 2


@pytest.mark.parametrize("prefix", ["liveline/prod", "/", " /liveline/prod"])
def test_a_bad_prefix_is_a_config_error(lambda_module: ModuleType, prefix: str) -> None:
    ssm = FakeSSM(ssm_parameters())

    with pytest.raises(ConfigError) as caught:
        lambda_module.environ_with_ssm_parameters(env_without_secrets(), ssm, prefix)

    assert "SSM_PARAMETER_PREFIX must be an SSM path" in str(caught.value)
    assert ssm.calls == []


def test_a_handler_built_with_ssm_secrets_answers_calls(lambda_module: ModuleType) -> None:
    ssm = FakeSSM(ssm_parameters())
    handler = lambda_module.build_handler(env_without_secrets(SSM_PARAMETER_PREFIX=PREFIX), lambda: ssm)
    form = voice_form(new_call_sid())
    event = function_url_event("POST", "/twilio/voice", form=form,
                               signature=sign(FUNCTION_URL + "/twilio/voice", form))

    assert handler(event, LambdaContext())["statusCode"] == 200
    assert len(ssm.calls) == 1  # read at the cold start only, not per request


def test_without_a_prefix_ssm_is_never_touched(lambda_module: ModuleType) -> None:
    def no_ssm() -> FakeSSM:
        raise AssertionError("SSM client created although SSM_PARAMETER_PREFIX is unset")

    handler = lambda_module.build_handler(webhook_env(WEBHOOK_PUBLIC_URL=FUNCTION_URL), no_ssm)

    assert handler(function_url_event("GET", "/healthz"), LambdaContext())["statusCode"] == 200


def test_secrets_missing_everywhere_fail_the_cold_start(lambda_module: ModuleType) -> None:
    with pytest.raises(ConfigError) as caught:
        lambda_module.build_handler(env_without_secrets())

    assert [p.split()[0] for p in caught.value.problems] == ["TWILIO_AUTH_TOKEN", "STREAM_TOKEN_SECRET"]
