"""Assistants: what the model is told, which voice it speaks with and what it may do.

An ``Assistant`` (built from the environment, or from the ASSISTANT_CONFIG file by
``relay/assistant_file.py``) gives the ``tools`` of its ``session.update``: flat GA function
tools, plus the built-in ``end_call`` and, when there are destinations, ``transfer_call``.
An ``AssistantBook`` picks the assistant for a called number. ``validate_arguments``
checks what the model passes to a tool against that tool's JSON Schema, so arguments that
are not valid never reach the tool's URL. The rules a value must follow (voices, the URLs
the relay posts to) live here too, for the file and the environment alike.

Pure: the standard library, jsonschema and nothing else of the relay's.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

# Voices the GA Realtime API accepts by name (openai.types.realtime), or a custom voice_... id.
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")

END_CALL = "end_call"
TRANSFER_CALL = "transfer_call"
BUILT_IN = (END_CALL, TRANSFER_CALL)
UNKNOWN_TOOL = "(unknown)"  # the metrics label for a name the assistant has no tool for
DEFAULT_TOOL_TIMEOUT_S = 5.0
MIN_TOOL_TIMEOUT_S, MAX_TOOL_TIMEOUT_S = 0.5, 30.0  # longer than 30 s is dead air on a phone line
MAX_ARGUMENTS_BYTES = 64 * 1024

NO_PARAMETERS = '{"type":"object","properties":{}}'


def is_loopback(host: str) -> bool:
    """127.0.0.1, ::1 or localhost (scripts/checklist.py uses this one too)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_voice(value: str) -> bool:
    """A voice the Realtime API knows by name, or a custom ``voice_...`` id."""
    return value in VOICES or (value.startswith("voice_") and len(value) > 6)


def http_url_problem(value: str) -> str | None:
    """Why ``value`` cannot be a URL the relay posts to (https, or http on loopback), or None."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an https:// URL (got {value!r})"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return (f"must start with https:// for a non-local host: requests carry call data "
                f"(http:// is accepted for 127.0.0.1/localhost only; got {value!r})")
    if parts.username or parts.password:
        return "must not carry a user name or password: receivers check the request's signature"
    if parts.fragment:
        return f"must not have a #fragment (got {value!r})"
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"has an invalid port: {exc}"
    return None


@dataclass(frozen=True, slots=True)
class Tool:
    """One HTTP tool: the model calls it by ``name``; the relay POSTs to ``url``."""

    name: str
    description: str
    url: str = field(repr=False)  # may carry a key in its query string
    parameters_json: str = NO_PARAMETERS
    timeout_s: float = DEFAULT_TOOL_TIMEOUT_S

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON Schema of the arguments (a fresh copy)."""
        return json.loads(self.parameters_json)  # type: ignore[no-any-return]

    def declaration(self) -> dict[str, Any]:
        """The GA ``session.update`` function tool (flat: no nested ``function`` object)."""
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": self.parameters}


@dataclass(frozen=True, slots=True)
class Assistant:
    """What one kind of call gets: instructions, greeting, voice and what it may do."""

    instructions: str = field(repr=False)
    greeting: str  # "" means the assistant waits for the caller to speak
    voice: str
    tools: tuple[Tool, ...] = ()
    end_call_enabled: bool = True
    transfer_destinations: tuple[tuple[str, str], ...] = ()  # (name, E.164 number or sip: URI)

    def tool(self, name: str) -> Tool | None:
        """The HTTP tool called ``name``, or None (built-ins are not HTTP tools)."""
        return next((tool for tool in self.tools if tool.name == name), None)

    def destination(self, name: str) -> str | None:
        """The number or SIP URI a transfer to ``name`` dials, or None."""
        return dict(self.transfer_destinations).get(name)

    def session_tools(self) -> list[dict[str, Any]]:
        """The ``tools`` list of this assistant's ``session.update``."""
        declared = [tool.declaration() for tool in self.tools]
        if self.end_call_enabled:
            declared.append(_declaration(END_CALL, _END_CALL_DESCRIPTION, _END_CALL_SCHEMA))
        if self.transfer_destinations:
            declared.append(_declaration(TRANSFER_CALL, _TRANSFER_DESCRIPTION, self._transfer_schema()))
        return declared

    def transfer_target(self, arguments_json: str) -> tuple[str, str] | str:
        """``(name, number or URI)`` for a ``transfer_call``'s arguments, or an error text for the model."""
        checked = _check(self._transfer_schema(), TRANSFER_CALL, arguments_json)
        if isinstance(checked, str):
            return checked
        name = checked["destination"]
        return name, dict(self.transfer_destinations)[name]

    def _transfer_schema(self) -> dict[str, Any]:
        names = [name for name, _ in self.transfer_destinations]
        return {"type": "object", "required": ["destination"], "additionalProperties": False,
                "properties": {"destination": {"type": "string", "enum": names,
                                               "description": "Who to transfer the caller to."}}}


_END_CALL_DESCRIPTION = (
    "Hang up the phone call. Use it when the conversation is over: the caller said goodbye, asked to "
    "end the call or has nothing more to ask. Say a short goodbye first; the line closes once it has "
    "been heard."
)
_TRANSFER_DESCRIPTION = (
    "Transfer the caller to a person or another line. Tell the caller first that you are "
    "transferring them; the transfer happens once that has been heard."
)
_END_CALL_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["reason"],
    "properties": {"reason": {"type": "string", "description": "Why the call ends, in a few words."}},
}


def _declaration(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "name": name, "description": description, "parameters": parameters}


@dataclass(frozen=True, slots=True, repr=False)
class AssistantBook:
    """The default assistant and the ones for particular called numbers."""

    default: Assistant
    numbers: Mapping[str, Assistant] = field(default_factory=lambda: MappingProxyType({}))

    def for_called(self, number: str | None) -> Assistant:
        """The assistant for a call to ``number`` (the default when it has none of its own)."""
        return self.numbers.get(number or "", self.default)

    def all(self) -> tuple[Assistant, ...]:
        """Every assistant, the default first."""
        return (self.default, *self.numbers.values())

    @property
    def has_tools(self) -> bool:
        """True when any assistant has an HTTP tool (tool requests are signed)."""
        return any(assistant.tools for assistant in self.all())

    def __repr__(self) -> str:
        default = self.default
        return (f"AssistantBook(tools={[tool.name for tool in default.tools]}, end_call={default.end_call_enabled}, "
                f"transfer={[name for name, _ in default.transfer_destinations]}, numbers={len(self.numbers)})")


# -- arguments ---------------------------------------------------------------------------


def validate_arguments(tool: Tool, arguments_json: str) -> dict[str, Any] | str:
    """The arguments the model passed to ``tool``, parsed; or an error text for the model."""
    return _check(tool.parameters, tool.name, arguments_json)


def end_call_reason(arguments_json: str) -> str:
    """The ``reason`` an ``end_call`` gave ("" if none): a hang-up is never refused for its arguments."""
    checked = _check(_END_CALL_SCHEMA, END_CALL, arguments_json)
    return "" if isinstance(checked, str) else str(checked["reason"])


def _check(schema: dict[str, Any], name: str, arguments_json: str) -> dict[str, Any] | str:
    if len(arguments_json) > MAX_ARGUMENTS_BYTES:
        return f"the arguments for {name} are too long"
    try:
        # The model may send nothing at all for a tool without parameters.
        arguments = json.loads(arguments_json) if arguments_json.strip() else {}
    except (ValueError, RecursionError):
        return f"the arguments for {name} are not valid JSON"
    if not isinstance(arguments, dict):
        return f"the arguments for {name} must be a JSON object"
    error = best_match(Draft202012Validator(schema).iter_errors(arguments))
    if error is not None:
        where = "" if error.json_path == "$" else f" at {error.json_path}"
        return f"invalid arguments for {name}{where}: {error.message[:200]}"
    return arguments
