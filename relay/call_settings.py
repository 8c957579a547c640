"""What every call of a process shares: the assistants, their wire texts, the deadlines.

A ``Persona`` is an assistant with its ``session.update`` and greeting built once per
process (they never change per call); ``BridgeSettings`` picks one by the called number
the stream token vouches for.

Pure: the standard library and the relay's pure modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from relay import openai_protocol as oai
from relay.assistant import Assistant, AssistantBook


@dataclass(frozen=True, slots=True)
class Persona:
    """An assistant, with the wire texts its calls send built once per process."""

    assistant: Assistant
    session_update: str
    greeting: str | None  # the response.create that makes it speak first; None: it waits


def persona(assistant: Assistant, transcription_model: str | None = None) -> Persona:
    """``assistant`` with its ``session.update`` and greeting built."""
    return Persona(
        assistant,
        oai.session_update(voice=assistant.voice, instructions=assistant.instructions,
                           tools=assistant.session_tools(), transcription_model=transcription_model or None),
        oai.greeting(assistant.greeting) if assistant.greeting else None,
    )


def personas(book: AssistantBook, transcription_model: str | None = None) -> dict[str, Persona]:
    """Every assistant of ``book`` by called number ("" for the default), built once."""
    built = {"": persona(book.default, transcription_model)}
    for number, assistant in book.numbers.items():
        built[number] = persona(assistant, transcription_model)
    return built


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """What every call's bridge needs, built once per process."""

    stream_token_secret: str = field(repr=False)
    personas: Mapping[str, Persona]  # by called number; "" is the default
    start_timeout_s: float
    session_timeout_s: float
    max_call_s: float
    model: str = ""  # the Realtime model, and the caller's transcription model: for call records
    transcription_model: str = ""

    def persona_for(self, called: str) -> Persona:
        """The persona for a call to ``called`` (the default's when it has none of its own)."""
        return self.personas.get(called) or self.personas[""]
