"""A call as Twilio places it: signed webhook POST -> TwiML -> signed stream to the relay -> assistant audio.

Everything runs on real loopback sockets: the webhook app in-process (gevent's WSGIServer),
the relay in-process (tests/conftest.py ``make_relay``), the stand-in Realtime model, and
the simulated caller from scripts/call.py, which follows the TwiML exactly as Twilio does.
"""

from __future__ import annotations

from scripts.fakes.openai import StandinModel
from scripts.fakes.twilio_caller import SimulatedCaller
from scripts.fakes.twilio_webhook import target_from_webhook
from tests.conftest import AUTH_TOKEN, RunningRelay
from tests.webhook.conftest import StartWebhook


def test_a_call_from_the_webhook_reaches_the_relay_and_hears_the_assistant(
    start_webhook: StartWebhook, relay: RunningRelay, standin: StandinModel
) -> None:
    webhook_url = start_webhook(relay.ws_url)

    target = target_from_webhook(webhook_url, auth_token=AUTH_TOKEN)
    result = SimulatedCaller(target, auth_token=AUTH_TOKEN, hold_s=1.5, timeout_s=5).run()

    assert target.url == relay.ws_url + "/twilio/realtime"
    assert set(target.parameters) == {"streamToken", "callerNumber", "calledNumber"}
    assert result.handshake_status == 101, result.handshake_body
    assert result.first_audio_ms is not None, result.timeline
    assert result.errors == []
    assert len(standin.sessions) == 1
    assert "session.update" in standin.sessions[0].types()


def test_behind_a_proxy_the_call_still_goes_through(
    start_webhook: StartWebhook, relay: RunningRelay, standin: StandinModel
) -> None:
    """Twilio signs the public https URL; the app is reached on an internal http one."""
    public_url = "https://webhook.example.com"
    webhook_url = start_webhook(relay.ws_url, public_url=public_url)

    target = target_from_webhook(webhook_url, auth_token=AUTH_TOKEN, public_url=public_url)
    result = SimulatedCaller(target, auth_token=AUTH_TOKEN, hold_s=1.5, timeout_s=5).run()

    assert result.handshake_status == 101
    assert result.first_audio_ms is not None, result.timeline


def test_a_stream_secret_that_differs_from_the_relays_ends_the_call_before_the_model(
    start_webhook: StartWebhook, relay: RunningRelay, standin: StandinModel
) -> None:
    webhook_url = start_webhook(relay.ws_url, STREAM_TOKEN_SECRET="not-the-relays-stream-secret-0123456789")

    target = target_from_webhook(webhook_url, auth_token=AUTH_TOKEN)
    caller = SimulatedCaller(target, auth_token=AUTH_TOKEN, hold_s=1.5, timeout_s=5, wait_for_audio=False)
    result = caller.run()

    assert result.handshake_status == 101
    assert result.first_audio_ms is None
    assert result.close_code == 1008  # policy violation: the relay refused the token
    assert standin.sessions == []
