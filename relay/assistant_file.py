"""The ASSISTANT_CONFIG file: a TOML description of the assistants (docs/assistant.md).

Top-level keys describe the default assistant on top of the environment's; ``[[tools]]``,
``[end_call]`` and ``[transfer]`` say what it may do; ``[numbers."+1..."]`` tables override
any of it for calls to one number. ``parse`` checks everything at once and raises one
ConfigError listing every problem with where it is and how to fix it, so a bad file stops
the relay at start-up rather than confusing a caller.

Pure: the standard library, jsonschema and the relay's pure modules; ``load_file`` reads one file.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from jsonschema import Draft202012Validator

from relay.assistant import (
    BUILT_IN,
    DEFAULT_TOOL_TIMEOUT_S,
    END_CALL,
    MAX_TOOL_TIMEOUT_S,
    MIN_TOOL_TIMEOUT_S,
    NO_PARAMETERS,
    VOICES,
    Assistant,
    AssistantBook,
    Tool,
    http_url_problem,
    is_voice,
)
from relay.errors import ConfigError

_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # OpenAI's rule for function names
_DESTINATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _-]{0,63}")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_SIP_URI = re.compile(r"sip:[^\s<>\"']{1,250}")

_ASSISTANT_KEYS = ("instructions", "greeting", "voice", "tools", "end_call", "transfer")
_TOP_KEYS = (*_ASSISTANT_KEYS, "numbers")
_TOOL_KEYS = ("name", "description", "url", "parameters", "timeout_seconds")


def load_file(path: str, defaults: Assistant) -> AssistantBook:
    """Read and check the TOML file at ``path``; ConfigError lists every problem."""
    source = f"ASSISTANT_CONFIG ({path})"
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError([f"{source}: no such file; give the path of the assistant's TOML file "
                           f"(docs/assistant.example.toml is an example)"]) from None
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read it: {exc.strerror}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
    return parse(document, defaults, source)


def parse(document: Mapping[str, Any], defaults: Assistant, source: str = "ASSISTANT_CONFIG") -> AssistantBook:
    """The assistants ``document`` describes on top of ``defaults`` (the environment's)."""
    problems = _Problems(source)
    problems.unknown_keys(document, _TOP_KEYS, "")
    default = _assistant(defaults, document, "", problems)
    numbers: dict[str, Assistant] = {}
    raw_numbers = document.get("numbers", {})
    if not isinstance(raw_numbers, dict):
        problems.add("numbers", 'must be a table of called numbers, like [numbers."+15550002222"]')
        raw_numbers = {}
    for number, table in raw_numbers.items():
        where = f'numbers."{number}"'
        if not _E164.fullmatch(number):
            problems.add(where, "is not a phone number in E.164 form, like +15550002222")
        if not isinstance(table, dict):
            problems.add(where, f"must be a table, like [{where}]")
            continue
        if "numbers" in table:
            problems.add(f"{where}.numbers", "numbers cannot nest: give each number its own table")
        problems.unknown_keys(table, _ASSISTANT_KEYS, where)
        numbers[number] = _assistant(default, table, where, problems)
    problems.raise_if_any()
    return AssistantBook(default, MappingProxyType(numbers))


class _Problems:
    """Every problem found, each prefixed with the file and where in it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, text: str) -> None:
        self.items.append(f"{self.source}: {where + ' ' if where else ''}{text}")

    def unknown_keys(self, table: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.add(f"{where}.{key}" if where else key,
                         f"is not a known key ({hint}the keys here are {', '.join(known)})")

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)


def _assistant(base: Assistant, table: Mapping[str, Any], where: str, problems: _Problems) -> Assistant:
    """``base`` with what ``table`` sets; problems recorded, not raised."""
    def at(key: str) -> str:
        return f"{where}.{key}" if where else key

    changes: dict[str, Any] = {}
    for key in ("instructions", "greeting"):
        if key in table:
            if isinstance(table[key], str):
                changes[key] = table[key]
            else:
                problems.add(at(key), 'must be a string (use """ ... """ for several lines)')
    if "voice" in table:
        voice = table["voice"]
        if isinstance(voice, str) and is_voice(voice):
            changes["voice"] = voice
        else:
            problems.add(at("voice"), f"must be one of {', '.join(VOICES)} or a custom voice id voice_... "
                                      f"(got {voice!r})")
    if "tools" in table:
        changes["tools"] = _tools(table["tools"], at("tools"), problems)
    if "end_call" in table:
        changes["end_call_enabled"] = _end_call(table["end_call"], at("end_call"), problems)
    if "transfer" in table:
        changes["transfer_destinations"] = _transfer(table["transfer"], at("transfer"), problems)
    return replace(base, **changes)


def _tools(raw: Any, where: str, problems: _Problems) -> tuple[Tool, ...]:
    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        problems.add(where, "must be an array of tables: one [[tools]] block per tool")
        return ()
    tools: list[Tool] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        tool = _tool(entry, f"{where}[{index}]", problems)
        if tool is None:
            continue
        if tool.name in seen:
            problems.add(f"{where}[{index}]", f"repeats the name {tool.name!r}: give each tool its own name")
        seen.add(tool.name)
        tools.append(tool)
    return tuple(tools)


def _tool(entry: Mapping[str, Any], where: str, problems: _Problems) -> Tool | None:
    before = len(problems.items)
    name = entry.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        problems.add(f"{where}.name", "must be 1 to 64 letters, digits, _ or -, like lookup_order "
                                      f"(got {name!r})")
    elif name in BUILT_IN:
        hint = "turn it off with [end_call] enabled = false" if name == END_CALL else \
            "it is offered when [transfer] has destinations"
        problems.add(f"{where}.name", f"{name!r} is built in ({hint}): give your tool another name")
    else:
        where = f'{where} "{name}"'
    problems.unknown_keys(entry, _TOOL_KEYS, where)
    description = entry.get("description")
    if not isinstance(description, str) or not description.strip():
        problems.add(f"{where}.description", "is needed: say in a sentence what the tool does and when to use it")
    url = entry.get("url")
    url_problem = http_url_problem(url) if isinstance(url, str) else "is needed: the https:// URL the relay posts to"
    if url_problem:
        problems.add(f"{where}.url", url_problem)
    parameters_json = _parameters(entry.get("parameters"), f"{where}.parameters", problems)
    timeout = entry.get("timeout_seconds", DEFAULT_TOOL_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or \
            not MIN_TOOL_TIMEOUT_S <= timeout <= MAX_TOOL_TIMEOUT_S:
        problems.add(f"{where}.timeout_seconds",
                     f"must be a number of seconds from {MIN_TOOL_TIMEOUT_S:g} to {MAX_TOOL_TIMEOUT_S:g} "
                     f"(got {timeout!r})")
    if len(problems.items) > before:
        return None
    return Tool(str(name), str(description), str(url), parameters_json, float(timeout))


def _parameters(raw: Any, where: str, problems: _Problems) -> str:
    if raw is None:
        return NO_PARAMETERS
    if not isinstance(raw, dict) or raw.get("type") != "object":
        problems.add(where, 'must be a JSON Schema for an object: a table with type = "object" and its properties')
        return NO_PARAMETERS
    try:
        text = json.dumps(raw, separators=(",", ":"))
    except TypeError:
        problems.add(where, "must hold only JSON values (strings, numbers, booleans, arrays, tables); "
                            "write dates as strings")
        return NO_PARAMETERS
    if raw.get("$schema", Draft202012Validator.META_SCHEMA["$id"]) != Draft202012Validator.META_SCHEMA["$id"]:
        problems.add(f"{where}.$schema", "leave it out: parameters are checked as JSON Schema 2020-12")
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    for error in sorted(meta.iter_errors(raw), key=lambda e: e.json_path)[:5]:
        problems.add(f"{where} at {error.json_path}", f"is not valid JSON Schema: {error.message[:200]}")
    for ref in _refs(raw):
        if not ref.startswith("#") or _pointer(raw, ref[1:]) is None:
            problems.add(f"{where}", f"$ref {ref!r} must point inside the schema, like #/$defs/order "
                                     f"(references to other documents are not fetched)")
    return text


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [ref for key in ("$ref", "$dynamicRef") if isinstance(ref := value.get(key), str)]
        return found + [ref for item in value.values() for ref in _refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


def _pointer(document: Any, pointer: str) -> Any:
    """The value a JSON Pointer (RFC 6901) names in ``document``, or None."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        return None
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(document, dict) and token in document:
            document = document[token]
        elif isinstance(document, list) and token.isdigit() and int(token) < len(document):
            document = document[int(token)]
        else:
            return None
    return document


def _end_call(raw: Any, where: str, problems: _Problems) -> bool:
    if not isinstance(raw, dict):
        problems.add(where, "must be a table: [end_call] with enabled = true or false")
        return True
    problems.unknown_keys(raw, ("enabled",), where)
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.add(f"{where}.enabled", f"must be true or false (got {enabled!r})")
        return True
    return enabled


def _transfer(raw: Any, where: str, problems: _Problems) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        problems.add(where, "must be a table: [transfer.destinations] with name = number lines")
        return ()
    problems.unknown_keys(raw, ("destinations",), where)
    destinations = raw.get("destinations", {})
    if not isinstance(destinations, dict):
        problems.add(f"{where}.destinations", 'must be a table of name = "+15550100001" or "sip:..." lines')
        return ()
    found: list[tuple[str, str]] = []
    for name, target in destinations.items():
        at = f"{where}.destinations.{name}"
        if not _DESTINATION_NAME.fullmatch(name):
            problems.add(at, "names must be 1 to 64 letters, digits, spaces, _ or - (the model says them)")
        elif not isinstance(target, str) or not (_E164.fullmatch(target) or _SIP_URI.fullmatch(target)):
            problems.add(at, f"must be a phone number in E.164 form like +15550100001, or a SIP URI like "
                             f"sip:desk@pbx.example.com (got {target!r})")
        else:
            found.append((name, target))
    return tuple(found)
