"""POST /twilio/status (the <Stream> status callback) and GET /healthz."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.webhook.conftest import PUBLIC_URL, new_call_sid, sign
from webhook_app import __version__

PostSigned = Callable[..., Any]


def status_form(call_sid: str, event: str, **extra: str) -> dict[str, str]:
    """The stream status callback form (docs/twilio-media-streams.md#stream-status-callback)."""
    form = {
        "AccountSid": "AC" + "0" * 32, "CallSid": call_sid, "StreamSid": "MZ" + "1" * 32,
        "StreamName": "MZ" + "1" * 32, "StreamEvent": event, "Timestamp": "2026-11-25T13:45:00.000Z",
    }
    form.update(extra)
    return form


def status_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("stream.status ")]


@pytest.mark.parametrize("event", ["stream-started", "stream-stopped"])
def test_start_and_stop_are_logged_in_one_line(
    post_signed: PostSigned, caplog: pytest.LogCaptureFixture, event: str
) -> None:
    caplog.set_level(logging.INFO, logger="webhook_app")
    call_sid = new_call_sid()

    response = post_signed("/twilio/status", status_form(call_sid, event))

    assert response.status_code == 204
    assert response.data == b""
    (line,) = status_lines(caplog)
    assert line.levelno == logging.INFO
    assert line.getMessage() == f"stream.status event={event} call_sid={call_sid} stream_sid=MZ{'1' * 32}"


def test_an_error_is_logged_as_a_warning_with_twilios_message(
    post_signed: PostSigned, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhook_app")
    call_sid = new_call_sid()
    form = status_form(call_sid, "stream-error",
                       StreamError="Stream - WebSocket - Handshake Error (31920)\nHTTP 403")

    response = post_signed("/twilio/status", form)

    assert response.status_code == 204
    (line,) = status_lines(caplog)
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert message.startswith(f"stream.status event=stream-error call_sid={call_sid} stream_sid=MZ")
    assert "error='Stream - WebSocket - Handshake Error (31920)\\nHTTP 403'" in message
    assert "\n" not in message  # one line, whatever Twilio puts in StreamError


def test_an_unsigned_status_callback_is_refused_and_not_logged(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhook_app")

    response = client.post("/twilio/status", data=status_form(new_call_sid(), "stream-started"))

    assert response.status_code == 403
    assert status_lines(caplog) == []


def test_a_status_callback_signed_for_the_voice_url_is_refused(client: FlaskClient) -> None:
    form = status_form(new_call_sid(), "stream-started")
    response = client.post("/twilio/status", data=form,
                           headers={"X-Twilio-Signature": sign(PUBLIC_URL + "/twilio/voice", form)})

    assert response.status_code == 403


def test_a_status_callback_without_callsid_is_400(post_signed: PostSigned) -> None:
    form = status_form("x", "stream-started")
    del form["CallSid"]

    response = post_signed("/twilio/status", form)

    assert response.status_code == 400
    assert b"CallSid is missing" in response.data


def test_a_status_callback_with_a_malformed_callsid_is_400(post_signed: PostSigned) -> None:
    response = post_signed("/twilio/status", status_form(new_call_sid() + "\n", "stream-started"))

    assert response.status_code == 400
    assert b"CA and 32 hex digits" in response.data


def test_no_value_of_the_form_can_split_a_log_line(post_signed: PostSigned, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="webhook_app")
    forged = "\r\n2026-01-01T00:00:00.000Z WARNING webhook_app.routes stream.status event=stream-error"
    for event in ("stream-started" + forged, "stream-error"):
        form = status_form(new_call_sid(), event, StreamSid="MZ" + "1" * 32 + forged, StreamError="x" + forged)
        assert post_signed("/twilio/status", form).status_code == 204

    lines = [r.getMessage() for r in status_lines(caplog)]
    assert len(lines) == 2
    assert all("\n" not in line and "\r" not in line for line in lines), lines
    assert "stream_sid='MZ" in lines[0] and "\\r\\n2026" in lines[0]  # quoted, escaped, still readable


def test_get_status_is_405(client: FlaskClient) -> None:
    assert client.get("/twilio/status").status_code == 405


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "ok", "version": __version__}
    assert response.headers["Cache-Control"] == "no-store"
