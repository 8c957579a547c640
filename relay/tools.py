"""Running one tool call: the model asked for a tool, the relay asks the tool's URL.

The request is ``POST <url>`` with ``{"call_sid", "call_id", "tool", "arguments"}`` as JSON
(``arguments`` parsed, and valid for the tool's schema: arguments that are not are answered
to the model without calling the URL) and signed with ``X-Liveline-Signature``
(relay/signing.py). A 2xx body of at most 16 KiB becomes the ``function_call_output``
text as it is; a timeout, an error status or a bigger body becomes ``{"error": "..."}``
text the model can tell the caller about. The result says how it went, for the call's
log, its report and the metrics.

Logged: the tool's name, outcome, HTTP status and duration. Never the arguments or the
answer: they may hold a caller's personal data.

Runs in the call's greenlets (relay/outbound.py yields while it waits), so a slow tool
holds up neither this call's audio nor any other call.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from relay.assistant import UNKNOWN_TOOL, Assistant, validate_arguments
from relay.outbound import HttpClient, OutboundError
from relay.signing import SIGNATURE_HEADER, signature_header

log = logging.getLogger(__name__)

MAX_OUTPUT_BYTES = 16 * 1024
EMPTY_OUTPUT = '{"ok": true}'  # what the model hears of a 2xx without a body

Outcome = Literal["ok", "timeout", "http_error", "too_large", "unreachable", "bad_arguments", "unknown_tool"]
_OUTCOME_OF_KIND: dict[str, Outcome] = {
    "timeout": "timeout", "status": "http_error", "protocol": "http_error", "too_large": "too_large",
    "dns": "unreachable", "connect": "unreachable", "tls": "unreachable", "invalid_url": "unreachable",
}


@dataclass(frozen=True, slots=True)
class ToolResult:
    """How one tool call went; ``output`` is the ``function_call_output`` text."""

    tool: str  # the configured name, or UNKNOWN_TOOL (a metrics label: never the model's free text)
    ok: bool
    output: str
    outcome: Outcome
    status: int | None
    duration_ms: float


def error_output(message: str) -> str:
    """The ``function_call_output`` text for a call that failed: ``{"error": message}``."""
    return json.dumps({"error": message})


class ToolRunner:
    """Calls tools for the relay's calls, signing each request with ``signing_secret``."""

    def __init__(self, signing_secret: str, *, client: HttpClient | None = None,
                 max_output_bytes: int = MAX_OUTPUT_BYTES, wall_clock: Callable[[], float] = time.time) -> None:
        self._secret = signing_secret
        self._client = client or HttpClient()
        self.max_output_bytes = max_output_bytes
        self._wall_clock = wall_clock

    def run(self, assistant: Assistant, name: str, *, call_sid: str, call_id: str, arguments_json: str,
            call_log: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> ToolResult:
        """Call ``assistant``'s tool ``name`` with the model's ``arguments_json``; never raises OutboundError."""
        out = call_log or log
        started = time.monotonic()
        tool = assistant.tool(name)
        if tool is None:
            result = ToolResult(UNKNOWN_TOOL, False, error_output(f"there is no tool named {name[:64]!r}"),
                                "unknown_tool", None, 0.0)
            return _logged(result, out)
        arguments = validate_arguments(tool, arguments_json)
        if isinstance(arguments, str):
            return _logged(ToolResult(tool.name, False, error_output(arguments), "bad_arguments", None, 0.0), out)
        body = json.dumps({"call_sid": call_sid, "call_id": call_id, "tool": tool.name, "arguments": arguments},
                          ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: signature_header(self._secret, body, int(self._wall_clock()))}
        try:
            response = self._client.post(tool.url, body, headers, timeout_s=tool.timeout_s,
                                         max_body_bytes=self.max_output_bytes)
        except OutboundError as exc:
            outcome = _OUTCOME_OF_KIND[exc.kind]
            result = ToolResult(tool.name, False, error_output(_failure_text(tool.name, outcome, exc, tool.timeout_s,
                                                                             self.max_output_bytes)),
                                outcome, exc.status, _ms_since(started))
            return _logged(result, out, exc.detail)
        output = response.body.decode("utf-8", errors="replace") or EMPTY_OUTPUT
        return _logged(ToolResult(tool.name, True, output, "ok", response.status, _ms_since(started)), out)


def _failure_text(name: str, outcome: Outcome, error: OutboundError, timeout_s: float, max_bytes: int) -> str:
    if outcome == "timeout":
        return f"{name} did not answer within {timeout_s:g} seconds"
    if outcome == "too_large":
        return f"{name} answered with more than {max_bytes // 1024} KiB, too much to use"
    if outcome == "unreachable":
        return f"{name} could not be reached"
    if error.status is not None:
        return f"{name} failed (HTTP {error.status})"
    return f"{name} gave an answer that could not be read"


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _logged(result: ToolResult, out: logging.Logger | logging.LoggerAdapter[Any], detail: str = "") -> ToolResult:
    # The tool's name comes from the configuration, the detail from relay/outbound.py (a
    # stage and a host, never a body): nothing the caller said or the tool answered.
    level = logging.INFO if result.ok else logging.WARNING
    out.log(level, "tool.call tool=%s outcome=%s status=%s duration_ms=%.0f%s", result.tool, result.outcome,
            result.status if result.status is not None else "-", result.duration_ms,
            f" detail={detail!r}" if detail else "")
    return result
