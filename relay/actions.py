"""What a call's state machine asks its I/O layer to do: the bridge's only output.

Every input to ``CallBridge`` returns one ``Actions``: text for each socket (in order),
effects that need I/O of their own (open the Realtime socket, run a tool, update the
call through Twilio's REST API), and at most one ending. ``LiveCall`` performs them and
decides nothing itself.

Pure: standard library only.
"""

from __future__ import annotations

from typing import NamedTuple


class EndCall(NamedTuple):
    """End the call: close Twilio with ``close_code`` (Twilio then plays the fallback).

    ``abort`` names the sides to cut at once instead of waiting for a close handshake
    (a peer that stopped reading, broken framing): ``"twilio"``, ``"openai"``.
    """

    reason: str
    close_code: int
    abort: tuple[str, ...] = ()


class OpenUpstream(NamedTuple):
    """The stream is authorised: upgrade the pre-connected Realtime socket."""


class RunTool(NamedTuple):
    """POST one function call to its tool's URL; answer with ``CallBridge.tool_done``.

    ``arguments_json`` is the model's text, already checked against the tool's schema.
    """

    call_id: str
    tool: str
    arguments_json: str


class UpdateCall(NamedTuple):
    """Complete the call, or redirect it to a transfer, through Twilio's REST API.

    ``destination`` is None to hang up, else the number or ``sip:`` URI to dial. Answer
    with ``CallBridge.update_done``.
    """

    account_sid: str
    call_sid: str
    destination: str | None


class ToolRefused(NamedTuple):
    """A function call answered without any request: nothing to run, but counted all the same.

    Its arguments did not fit the tool's schema, or there is no such tool. ``tool`` is the
    configured name, or ``relay.assistant.UNKNOWN_TOOL`` (a metrics label, never the model's
    free text); ``outcome`` is ``bad_arguments`` or ``unknown_tool``.
    """

    tool: str
    outcome: str


Effect = OpenUpstream | RunTool | UpdateCall | ToolRefused


class Actions:
    """One input's output: texts per socket, effects, and at most one ending."""

    __slots__ = ("to_twilio", "to_openai", "effects", "end")

    def __init__(self) -> None:
        self.to_twilio: list[str] = []
        self.to_openai: list[str] = []
        self.effects: list[Effect] = []
        self.end: EndCall | None = None

    def __bool__(self) -> bool:
        return bool(self.to_twilio or self.to_openai or self.effects or self.end)

    def __repr__(self) -> str:
        return (f"Actions(to_twilio={len(self.to_twilio)}, to_openai={len(self.to_openai)}, "
                f"effects={self.effects!r}, end={self.end!r})")
