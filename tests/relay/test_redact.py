"""Key-shaped text is removed from what OpenAI says, where it enters the relay."""

from __future__ import annotations

import msgspec
import pytest

from relay import openai_protocol as oai
from relay.errors import UpstreamError
from relay.redact import REDACTED, strip_keys

# OpenAI's own 401 text quotes the key it was given, masked but for its ends.
OPENAI_401 = ("Incorrect API key provided: sk-proj-AbCd************************************wXyZ. "
              "You can find your API key at https://platform.openai.com/account/api-keys.")


@pytest.mark.parametrize("text", [
    OPENAI_401,
    "bad key sk-LIVELINEsecretOPENAIkey7Qx3 here",
    "key=sk-svcacct-0123456789abcdef",
    "(sk-proj-abc)",
    "ephemeral ek_68af2c1e9f0b8190a3c5d7e9f1b3d5f7 expired",
])
def test_key_shaped_words_are_removed(text: str) -> None:
    stripped = strip_keys(text)
    assert "sk-" not in stripped and "ek_" not in stripped
    assert REDACTED in stripped


@pytest.mark.parametrize("text", ["task-force", "risk-free", "desk-top", "Project does not have access to model",
                                  "check_ek_value", "sk-ab"])
def test_ordinary_words_are_left_alone(text: str) -> None:
    assert strip_keys(text) == text


def test_an_upstream_error_never_carries_the_key() -> None:
    error = UpstreamError("handshake", OPENAI_401, status=401, code="invalid_api_key")
    assert "sk-proj" not in error.detail and "sk-proj" not in str(error)
    assert error.detail.startswith("Incorrect API key provided: " + REDACTED)


def test_an_error_events_message_never_carries_the_key() -> None:
    raw = msgspec.json.encode({"type": "error", "event_id": "e1",
                               "error": {"type": "invalid_request_error", "code": "invalid_api_key",
                                         "message": OPENAI_401}}).decode()
    event = oai.parse(raw)
    assert isinstance(event, oai.ErrorEvent)
    assert "sk-proj" not in event.message and REDACTED in event.message
