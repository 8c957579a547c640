"""Secrets and audio stay out of every log and every answer.

The whole stack as deployed (the webhook and the relay each under gunicorn, the
stand-in model), configured with distinctive secret values, takes a full call: a
signed incoming-call webhook, the TwiML's stream, the greeting, the caller speaking,
the assistant answering, barge-in, a hang-up. Then ``/healthz`` and
``/diagnostic/openai`` (passing and failing) are read. Not one secret, stream token,
caller number or audio payload may appear in any of it, at the default log level.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay import stream_token
from scripts import audio
from scripts.fakes.openai import StandinModel
from scripts.fakes.twilio_caller import SimulatedCaller
from scripts.fakes.twilio_webhook import target_from_webhook
from tests.conftest import launch_gunicorn, launch_webhook_gunicorn, stop_gunicorn, stop_process
from tests.hardening.support import FIGURES, Teardown
from tests.helpers import get

SECRETS = {
    "OPENAI_API_KEY": "sk-proj-LIVELINEsecretOPENAIkey7Qx3",
    "TWILIO_AUTH_TOKEN": "LIVELINEsecretTWILIOtoken9Kd2",
    "STREAM_TOKEN_SECRET": "LIVELINEsecretSTREAMsecret-4Wp8-0123456789",
    "DIAGNOSTIC_TOKEN": "LIVELINEsecretDIAGNOSTICtoken5Zr1",
}
WEBHOOK_PUBLIC_URL = "https://webhook.example.com"  # what Twilio signs; served on a loopback port


@pytest.fixture
def standin() -> Iterator[StandinModel]:
    model = StandinModel(api_key=SECRETS["OPENAI_API_KEY"], speed=4.0).start()
    yield model
    model.stop()


def _text(url: str, headers: dict[str, str] | None = None) -> str:
    return get(url, headers)[2].decode()


def test_a_full_call_leaks_no_secret_token_number_or_audio(
    standin: StandinModel, tmp_path: Path, teardown: Teardown
) -> None:
    relay = launch_gunicorn(standin.url, tmp_path, **SECRETS)
    teardown(lambda: stop_gunicorn(relay))
    webhook_log = tmp_path / "webhook.log"
    webhook, webhook_url = launch_webhook_gunicorn(
        {"PATH": "/usr/bin:/bin", "RELAY_PUBLIC_URL": relay.ws_url, "WEBHOOK_PUBLIC_URL": WEBHOOK_PUBLIC_URL,
         "TWILIO_AUTH_TOKEN": SECRETS["TWILIO_AUTH_TOKEN"], "STREAM_TOKEN_SECRET": SECRETS["STREAM_TOKEN_SECRET"]},
        webhook_log)
    teardown(lambda: stop_process(webhook))

    # The call, placed the way Twilio places it: webhook first, then the TwiML's stream.
    target = target_from_webhook(webhook_url, auth_token=SECRETS["TWILIO_AUTH_TOKEN"], public_url=WEBHOOK_PUBLIC_URL)
    token = target.parameters[stream_token.PARAMETER_NAME]
    speech = audio.read_wav_ulaw(audio.CALLER_WAV)
    result = SimulatedCaller(target, auth_token=SECRETS["TWILIO_AUTH_TOKEN"], caller_audio=speech,
                             hold_s=1.5, barge_in_after_s=0.3).run()
    assert result.close_code == 1000 and result.first_audio_ms is not None, result.errors
    (session,) = standin.sessions
    assert session.appended and session.deltas_sent, "the call did not carry audio both ways"

    # Every answer an operator can read.
    answers = {
        "healthz": _text(relay.http_url + "/healthz"),
        "diagnostic_ok": _text(relay.http_url + "/diagnostic/openai",
                              {"Authorization": f"Bearer {SECRETS['DIAGNOSTIC_TOKEN']}"}),
        "diagnostic_refused": _text(relay.http_url + "/diagnostic/openai",
                                   {"Authorization": "Bearer not-the-diagnostic-token"}),
    }
    assert json.loads(answers["diagnostic_ok"])["ok"] is True
    # A relay whose key OpenAI refuses: its diagnostic says why, without the key.
    wrong_key = "sk-proj-LIVELINEsecretWRONGkey2Hn6"
    refused_relay = launch_gunicorn(standin.url, tmp_path, **{**SECRETS, "OPENAI_API_KEY": wrong_key})
    teardown(lambda: stop_gunicorn(refused_relay))
    answers["diagnostic_401"] = _text(refused_relay.http_url + "/diagnostic/openai",
                                     {"Authorization": f"Bearer {SECRETS['DIAGNOSTIC_TOKEN']}"})
    failed = json.loads(answers["diagnostic_401"])
    assert failed["ok"] is False and failed["http_status"] == 401 and failed["error_code"] == "invalid_api_key"

    stop_gunicorn(relay)
    stop_gunicorn(refused_relay)
    stop_process(webhook)  # its log is complete once it has exited
    logs = {"relay": relay.log(), "relay_401": refused_relay.log(), "webhook": webhook_log.read_text()}
    assert "call.barge_in" in logs["relay"] and "reason=caller_hangup" in logs["relay"]
    assert f"twilio.voice call_sid={target.call_sid}" in logs["webhook"]

    forbidden = {**SECRETS, "WRONG_OPENAI_API_KEY": wrong_key, "stream token": token,
                 "stream token MAC": token.rsplit(".", 1)[-1],
                 # the From and To the webhook passed on as <Parameter>s (callers' numbers are PII)
                 "caller number": target.parameters["callerNumber"],
                 "called number": target.parameters["calledNumber"]}
    payloads = set(result.sent_payloads) | set(result.media_payloads)
    assert len(payloads) > 20
    texts = {**logs, **answers}
    for where, text in texts.items():
        for name, value in forbidden.items():
            assert value not in text, f"{name} appears in {where}"
            if name in SECRETS:  # nor a telling fragment of it (e.g. the key's tail)
                assert value[-12:] not in text and value[:16] not in text, f"part of {name} in {where}"
        leaked = [p for p in payloads if len(p) >= 16 and p in text]
        assert not leaked, f"{len(leaked)} audio payloads appear in {where}"
        # No long base64 run at all: an audio frame is 216 characters of it.
        assert not re.search(r"[A-Za-z0-9+/]{120,}={0,2}", text), f"a base64 blob appears in {where}"
    FIGURES["secrets"] = (f"{len(forbidden)} secret values, {len(payloads)} audio payloads checked in "
                          f"{len(logs)} logs ({sum(len(t.splitlines()) for t in logs.values())} lines) "
                          f"and {len(answers)} answers: none found")

