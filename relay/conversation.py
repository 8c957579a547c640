"""Conversation: what the assistant does besides talking. Sans-I/O, owned by CallBridge.

- **Tools.** A function call the model completes (``response.function_call_arguments.done``)
  becomes a RunTool effect once its arguments check out against the tool's schema;
  arguments that do not, or an unknown tool, are answered to the model as an error without
  calling any URL (with a ToolRefused effect, so they are counted all the same). Outputs go
  back as ``function_call_output`` items, and the model is asked to speak (one
  ``response.create``) once every call of the response is answered and no response is in
  progress: sending one while another runs is refused by the API.
- **Endings the assistant chooses.** ``end_call`` (hang up), ``transfer_call`` (dial a
  configured destination) and the relay's own time limit (a short goodbye first) all end
  the same way: the caller's audio stops going upstream (no new turn starts), the last
  words play out (the response is done and Twilio has echoed every mark), then an
  UpdateCall effect asks Twilio's REST API to complete or redirect the call, and Twilio's
  ``stop`` ends the stream. If Twilio does not stop it, the relay closes it; if the REST
  request fails, the stream is closed at once so Twilio plays the fallback instead of
  leaving the caller in silence (a failed transfer is told to the model instead, and the
  call goes on).
- **Keypad digits.** Gathered until ``#``, a pause of ``Limits.dtmf_pause_s`` or
  ``MAX_DIGITS``, then given to the model as one user message and answered.

Imports only the standard library and the relay's pure modules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from relay import assistant as assistants
from relay import openai_protocol as oai
from relay.actions import Actions, RunTool, ToolRefused, UpdateCall
from relay.errors import CLOSE_NORMAL
from relay.limits import Limits
from relay.playout import Playout

MAX_DIGITS = 32
GOODBYE_INSTRUCTIONS = (
    "The call has reached its time limit. In one short sentence, tell the caller kindly that you "
    "have to end the call now, and say goodbye."
)

# How each ending is named when the call is over, by phase reached.
HANG_UP, TRANSFER, TIME_LIMIT = "hang_up", "transfer", "time_limit"
_REASONS = {HANG_UP: "assistant_hangup", TRANSFER: "transferred", TIME_LIMIT: "max_call_length"}


class ToolOutcome(Protocol):
    """What running a tool produced (relay/tools.py's ToolResult)."""

    @property
    def ok(self) -> bool: ...  # noqa: D102

    @property
    def output(self) -> str: ...  # noqa: D102

    @property
    def outcome(self) -> str: ...  # noqa: D102

    @property
    def duration_ms(self) -> float: ...  # noqa: D102


@dataclass(slots=True)
class Ending:
    """An ending the assistant (or the time limit) started."""

    kind: str  # HANG_UP, TRANSFER, TIME_LIMIT
    destination: str | None  # the number or sip: URI to dial (TRANSFER)
    destination_name: str
    call_id: str  # the function call that asked for it ("" for the time limit)
    since: float  # when its current phase began
    phase: str = "playout"  # playout -> update -> stop
    goodbye_owed: bool = False  # TIME_LIMIT: the goodbye waits for the response in progress to end
    asked_at: float = 0.0  # when the model asked for it (for the call's record)

    @property
    def reason(self) -> str:
        """The call's end reason once this ending is through."""
        return _REASONS[self.kind]


EndFn = Callable[[Actions, str, int], Actions]


class Conversation:
    """One call's tools, endings and digits."""

    def __init__(self, assistant: assistants.Assistant, limits: Limits, playout: Playout,
                 log: logging.LoggerAdapter, end: EndFn, *,  # type: ignore[type-arg]
                 account_sid: str, call_sid: str) -> None:
        self.assistant = assistant
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.limits = limits
        self.playout = playout
        self.log = log
        self._end = end
        self.responding = False  # a response is in progress (or requested by us)
        self._response_owed = False  # ask for one as soon as none is in progress
        self._awaiting: dict[str, tuple[str, float]] = {}  # call_id -> (tool name, asked at), tools running
        self._outputs: list[str] = []  # function_call_output items not sent yet
        self._digits: list[str] = []
        self._digit_at = 0.0
        self.ending: Ending | None = None
        self.tool_calls: list[dict[str, Any]] = []  # name, ok, ms, outcome, at (monotonic): for the call's record
        self.keypad: list[tuple[str, float]] = []  # (keys, when): for the call's record
        self.transfer: dict[str, Any] | None = None  # the last transfer tried (destination, ok, at): for the record

    @property
    def caller_heard_upstream(self) -> bool:
        """False once an ending has begun: no new turn may start."""
        return self.ending is None

    # -- responses ------------------------------------------------------------------------

    def response_created(self) -> None:
        """The server started a response (ours, or one its turn detection made)."""
        self.responding = True

    def response_done(self, now: float, out: Actions) -> None:
        """A response ended (completed, cancelled, failed)."""
        self.responding = False
        ending = self.ending
        if ending is not None:
            if ending.goodbye_owed:
                ending.goodbye_owed = False
                self._ask(out, oai.response_create(GOODBYE_INSTRUCTIONS))
            return
        self._flush(out)

    def response_refused(self) -> None:
        """Our ``response.create`` was refused because another response is in progress."""
        self.responding = True
        self._response_owed = True

    def _ask(self, out: Actions, text: str | None = None) -> None:
        """Request a response now (``text``: the create to send, default a plain one)."""
        out.to_openai.append(text or oai.response_create())
        self.responding = True
        self._response_owed = False

    def _flush(self, out: Actions) -> None:
        """Answered calls' outputs, then one response, once nothing is running or speaking."""
        if self.responding or self._awaiting or self.ending is not None:
            return
        if self._outputs:
            out.to_openai += self._outputs
            self._outputs.clear()
            self._response_owed = True
        if self._response_owed:
            self._ask(out)

    # -- function calls -------------------------------------------------------------------

    def function_call(self, event: oai.FunctionCallDone, now: float, out: Actions) -> None:
        """The model called ``event.name``: run it, or start the ending it asked for."""
        if self.ending is not None:
            return  # the call is ending: nothing new starts
        name, assistant = event.name, self.assistant
        if name == assistants.END_CALL and assistant.end_call_enabled:
            self.log.info("call.end_requested by=assistant")
            self._begin(Ending(HANG_UP, None, "", event.call_id, now, asked_at=now), now, out)
            return
        if name == assistants.TRANSFER_CALL and assistant.transfer_destinations:
            target = assistant.transfer_target(event.arguments)
            if isinstance(target, str):
                self._answer(event.call_id, name, {"error": target}, False, 0.0, now)
            else:
                self.log.info("call.transfer_requested destination=%s", target[0])
                self._begin(Ending(TRANSFER, target[1], target[0], event.call_id, now, asked_at=now), now, out)
            return
        tool = assistant.tool(name)
        if tool is None:
            self.log.warning("tool.unknown name=%r", name[:64])
            self._answer(event.call_id, name[:64], {"error": f"there is no tool called {name[:64]}"}, False, 0.0,
                         now)
            out.effects.append(ToolRefused(assistants.UNKNOWN_TOOL, "unknown_tool"))
            return
        arguments = assistants.validate_arguments(tool, event.arguments)
        if isinstance(arguments, str):
            # Never logged: arguments may hold what the caller said.
            self.log.info("tool.call tool=%s outcome=bad_arguments", tool.name)
            self._answer(event.call_id, tool.name, {"error": arguments}, False, 0.0, now, "bad_arguments")
            out.effects.append(ToolRefused(tool.name, "bad_arguments"))
            return
        self._awaiting[event.call_id] = (tool.name, now)
        out.effects.append(RunTool(event.call_id, tool.name, event.arguments))

    def tool_done(self, call_id: str, result: ToolOutcome, out: Actions) -> None:
        """A tool answered (or failed): its output goes to the model."""
        running = self._awaiting.pop(call_id, None)
        if running is None or self.ending is not None:
            return
        name, asked_at = running
        self.tool_calls.append({"name": name, "ok": result.ok, "ms": round(result.duration_ms),
                                "outcome": result.outcome, "at": asked_at})
        self._outputs.append(oai.function_call_output(call_id, result.output))
        self._flush(out)

    def _answer(self, call_id: str, name: str, document: dict[str, Any], ok: bool, ms: float, at: float,
                outcome: str = "refused") -> None:
        self.tool_calls.append({"name": name, "ok": ok, "ms": round(ms), "outcome": outcome, "at": at})
        self._outputs.append(oai.function_call_output(call_id, json.dumps(document)))

    # -- endings ----------------------------------------------------------------------------

    def time_limit(self, now: float, out: Actions) -> None:
        """The call reached RELAY_MAX_CALL_SECONDS: a short goodbye, then hang up."""
        if self.ending is not None:
            return
        ending = Ending(TIME_LIMIT, None, "", "", now)
        if self.responding:
            out.to_openai.append(oai.response_cancel())
            ending.goodbye_owed = True
        else:
            self._ask(out, oai.response_create(GOODBYE_INSTRUCTIONS))
        self._begin(ending, now, out)

    def _begin(self, ending: Ending, now: float, out: Actions) -> None:
        self.ending = ending
        self._awaiting.clear()
        self._outputs.clear()
        self._digits.clear()
        self._advance(now, out)

    def _advance(self, now: float, out: Actions) -> None:
        """Move the ending on once its last words have played (or waited long enough)."""
        ending = self.ending
        if ending is None or ending.phase != "playout":
            return
        played = not self.responding and not ending.goodbye_owed and not self.playout.playing
        if not played and now - ending.since < self.limits.goodbye_s:
            return
        if not played:
            self.log.warning("call.goodbye_timeout waited_s=%.1f", now - ending.since)
        ending.phase, ending.since = "update", now
        out.effects.append(UpdateCall(self.account_sid, self.call_sid, ending.destination))

    def update_done(self, ok: bool, now: float, out: Actions) -> None:
        """Twilio's REST API answered the UpdateCall (or could not be reached)."""
        ending = self.ending
        if ending is None or ending.phase != "update":
            return
        if ending.kind == TRANSFER:
            self.transfer = {"destination": ending.destination_name, "ok": ok, "at": ending.asked_at}
        if ok:
            ending.phase, ending.since = "stop", now  # Twilio ends the stream itself
            return
        if ending.kind == TRANSFER:  # the caller is still here: the assistant says so
            self.log.warning("call.transfer_failed destination=%s", ending.destination_name)
            self.ending = None
            self._answer(ending.call_id, assistants.TRANSFER_CALL,
                         {"error": "the transfer could not be placed; apologise and offer to help otherwise"},
                         False, 0.0, ending.asked_at, "transfer_failed")
            self._flush(out)
            return
        self._end(out, ending.reason + "_failed", CLOSE_NORMAL)  # closing the stream plays the fallback

    def stop_reason(self) -> str:
        """How Twilio's ``stop`` is named: the assistant's ending once it reached Twilio, else a hang-up."""
        ending = self.ending
        if ending is not None and ending.phase in ("update", "stop"):
            return ending.reason
        return "caller_hangup"

    # -- keypad -----------------------------------------------------------------------------

    def digit(self, digit: str, now: float, out: Actions) -> None:
        """A key the caller pressed (never logged: callers type PINs)."""
        if self.ending is not None or len(digit) != 1 or digit not in "0123456789*#ABCD":
            return
        self.log.info("twilio.dtmf")
        self._digits.append(digit)
        self._digit_at = now
        if digit == "#" or len(self._digits) >= MAX_DIGITS:
            self._send_digits(out)

    def _send_digits(self, out: Actions) -> None:
        keys = " ".join(self._digits)
        self.log.info("twilio.dtmf_sent digits=%d", len(self._digits))
        self.keypad.append((keys, self._digit_at))
        self._digits.clear()
        out.to_openai.append(oai.user_text(f"The caller pressed {keys} on the phone's keypad."))
        self._response_owed = True
        self._flush(out)

    # -- time -------------------------------------------------------------------------------

    def tick(self, now: float, out: Actions) -> None:
        """Digits after a pause, endings waiting on play-out or on Twilio."""
        if self._digits and now - self._digit_at >= self.limits.dtmf_pause_s:
            self._send_digits(out)
        ending = self.ending
        if ending is None:
            return
        if ending.phase == "playout":
            self._advance(now, out)
        elif ending.phase == "stop" and now - ending.since > self.limits.hangup_confirm_s:
            self.log.warning("call.stream_not_stopped waited_s=%.1f", now - ending.since)
            self._end(out, ending.reason, CLOSE_NORMAL)
        elif ending.phase == "update" and now - ending.since > self.limits.rest_timeout_s:
            self.update_done(False, now, out)
