"""Fault injection for the stand-in model: each way the Realtime API misbehaves, by name.

A ``Behaviour`` is chosen per stand-in (``StandinModel.behaviour``) or per session
(``StandinModel.plan``). Each says where it strikes:

- at the handshake: refused with OpenAI's status and error body (401 a bad key, 403 a
  model the project may not use, 429 no quota), or held unanswered until the client gives
  up (a hung upstream);
- at ``session.update``: never answered, rejected with an ``error``, or answered and then
  followed by a recoverable ``error`` (the call must go on);
- mid-response, at the ``FAULT_AT_DELTA``-th audio delta (after some audio has played): a
  close with 1011, ``session_expired`` then a close (fatal), ``session_expired`` with the
  socket left open (the relay must end the call on the error alone), or every response
  failing for ``insufficient_quota`` from then on (the socket stays open);
- on the socket: from the first appended audio on (the relay is then forwarding the
  caller), the stand-in stops reading it for good, or pauses reading until the test sets
  ``StandinModel.resume_reading`` (at most ``PAUSE_READING_S``): backpressure on the
  relay's writes.

The strings are the values ``python -m scripts.fakes.openai --behaviour`` takes.
"""

from __future__ import annotations

import enum
import json

# Mid-call faults strike at this audio delta of a response (after some audio has played).
FAULT_AT_DELTA = 3
# PAUSE_READING: the longest the stand-in stops reading, at the first appended audio.
PAUSE_READING_S = 5.0


class Behaviour(enum.Enum):
    """How the stand-in misbehaves (NORMAL: it does not)."""

    NORMAL = "normal"
    REJECT_401 = "reject_401"
    REJECT_403 = "reject_403"
    REJECT_429 = "reject_429"
    HANG_HANDSHAKE = "hang_handshake"
    NEVER_UPDATE = "never_update"
    REJECT_SESSION = "reject_session"
    RECOVERABLE_ERROR = "recoverable_error"
    CLOSE_MIDCALL = "close_midcall"
    FATAL_ERROR = "fatal_error"
    SESSION_EXPIRED = "session_expired"
    QUOTA_MIDCALL = "quota_midcall"
    STOP_READING = "stop_reading"
    PAUSE_READING = "pause_reading"

    @property
    def refusal(self) -> tuple[int, str, bytes] | None:
        """(status, reason, body) of a refused handshake, as OpenAI answers it; None if not refused."""
        refused = _REFUSALS.get(self)
        if refused is None:
            return None
        status, reason, code, message = refused
        return status, reason, error_body(code, message)

    @property
    def strikes_mid_response(self) -> bool:
        """True for the faults that strike at the FAULT_AT_DELTA-th delta of a response."""
        return self in (Behaviour.CLOSE_MIDCALL, Behaviour.FATAL_ERROR, Behaviour.SESSION_EXPIRED,
                        Behaviour.QUOTA_MIDCALL)


_REFUSALS = {
    Behaviour.REJECT_401: (401, "Unauthorized", "invalid_api_key",
                           "Incorrect API key provided. You can find your API key at "
                           "https://platform.openai.com/account/api-keys."),
    Behaviour.REJECT_403: (403, "Forbidden", "model_not_found", "Project does not have access to model gpt-realtime"),
    Behaviour.REJECT_429: (429, "Too Many Requests", "insufficient_quota",
                           "You exceeded your current quota, please check your plan and billing details."),
}


def error_body(code: str, message: str) -> bytes:
    """OpenAI's JSON error document, as it comes with a refused handshake."""
    return json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                 "code": code}}).encode()
