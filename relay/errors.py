"""The relay's exception tree. Pure: imports only ``relay.redact`` from the project.

::

    RelayError
    ├── ConfigError            bad environment at start-up; lists every problem
    ├── LocalProtocolError     we called something wrong (a bug of ours)
    ├── ProtocolError          a peer sent something we cannot accept; carries close_code
    │   ├── FrameError         WebSocket framing (RFC 6455) broken
    │   ├── TwilioProtocolError
    │   └── OpenAIProtocolError
    └── UpstreamError          the OpenAI socket could not be opened; carries the stage
                               reached and, when the handshake was answered, the HTTP status
"""

from __future__ import annotations

from collections.abc import Sequence

from relay.redact import strip_keys

# RFC 6455 section 7.4.1 close codes used by the relay.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


class RelayError(Exception):
    """Base class of every error the relay raises on purpose."""


class ConfigError(RelayError):
    """The environment does not describe a runnable relay or webhook."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


class LocalProtocolError(RelayError):
    """The relay itself did something the protocol forbids: a bug, not the peer's fault."""


class ProtocolError(RelayError):
    """A peer broke its protocol; ``close_code`` is what we close its socket with."""

    def __init__(self, message: str, close_code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.close_code = close_code


class FrameError(ProtocolError):
    """Broken WebSocket framing, an oversized message or invalid UTF-8."""


class TwilioProtocolError(ProtocolError):
    """Twilio (or whoever speaks for it) sent a message that is not a valid Media Streams event.

    ``event`` names the known event the message claimed to be (``"start"``, ``"media"``...)
    when only its body was invalid; None when it was not an event at all.
    """

    def __init__(self, message: str, close_code: int = CLOSE_PROTOCOL_ERROR, event: str | None = None) -> None:
        super().__init__(message, close_code)
        self.event = event


class OpenAIProtocolError(ProtocolError):
    """The Realtime API sent something we cannot parse."""


class UpstreamError(RelayError):
    """Opening the Realtime socket failed.

    ``stage`` is the stage that failed: ``dns``, ``tcp``, ``tls``, ``handshake`` or
    ``session``. ``status`` is the HTTP status of a refused handshake, and
    ``code``/``detail`` are OpenAI's error code and message when it sent one. ``detail``
    goes to logs and to ``/diagnostic/openai``, so anything key-shaped in it is removed
    here (OpenAI's 401 quotes the key it was given).
    """

    def __init__(
        self,
        stage: str,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        detail = strip_keys(detail)
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail
        self.status = status
        self.code = code
