"""The conversations the stand-in model acts out: ``Scenario`` (greet, then echo) and ``Script``.

A scenario decides what the model says; the session (session.py) speaks the protocol. Its
hooks run in the session's reading greenlet and must not block: they start responses with
``session.respond(parts)`` (responses.py: ``Speech`` and ``FunctionCall`` parts).

``Script`` acts out what an assistant with tools does, after the caller's first words:

1. a response that says a short preamble ("One moment, let me look that up.") and calls
   the tool (``tool``, with ``arguments``), as the real model often does in one response;
2. once the relay adds the ``function_call_output`` and asks for a response, it speaks the
   answer ("Thanks for waiting...", or "I'm sorry, I couldn't look that up" when the output
   is ``{"error": ...}``), then, in the same response,
3. ``then``: says goodbye and calls ``end_call``, or says it is putting the caller through
   and calls ``transfer_call`` with ``destination``, or nothing more. A transfer the relay
   reports as failed (an error output) is apologised for.

While the tool runs, the caller's turns get no answer: the model waits for the tool (the
relay keeps audio flowing both ways meanwhile, barge-in included). Without a ``tool`` the
ending comes straight after the caller's first words. Each session keeps its own progress.

Named scenarios (``python -m scripts.fakes.openai --scenario NAME``) are in ``SCENARIOS``;
``named(NAME, tool=..., arguments=..., then=..., destination=...)`` builds one with changes.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from scripts import audio
from scripts.fakes.openai.responses import FunctionCall, Part, Speech

if TYPE_CHECKING:
    from scripts.fakes.openai.session import CallerTurn, Session

END_CALL, TRANSFER_CALL = "end_call", "transfer_call"
ENDINGS = (END_CALL, TRANSFER_CALL)


def clip(name: str) -> Speech:
    """A clip of scripts/assets (``standin_goodbye``) with its words."""
    path = audio.ASSETS / f"{name}.wav"
    return Speech(audio.read_wav_ulaw(path), audio.words_of(path))


@dataclass(frozen=True)
class Lines:
    """What a ``Script`` says at each step."""

    preamble: Speech | None  # said with the tool call (None: the call alone)
    answer: Speech  # the tool answered
    sorry: Speech  # the tool's output was an error
    goodbye: Speech  # before end_call
    handover: Speech  # before transfer_call
    transfer_failed: Speech  # the relay says the transfer could not be placed

    @staticmethod
    @cache
    def spoken() -> Lines:
        """The clips in scripts/assets (real speech, a few seconds each)."""
        return Lines(clip("standin_preamble"), clip("standin_answer"), clip("standin_sorry"),
                     clip("standin_goodbye"), clip("standin_handover"), clip("standin_transfer_failed"))


class Scenario:
    """The conversation: greet when asked, then answer each caller turn with their own words.

    ``echo=False`` answers every turn with the greeting clip instead. Subclass it to script
    another conversation (``Script`` is one).
    """

    name = "echo"

    def __init__(self, *, echo: bool = True) -> None:
        self.echo = echo

    def on_response_create(self, session: Session, event: dict[str, Any]) -> None:
        """The relay asked for a response (the greeting, an answer to digits): speak the greeting clip."""
        session.respond([session.model.greeting])

    def on_caller_turn(self, session: Session, turn: CallerTurn) -> None:
        """The VAD heard the caller stop talking: answer with their own words (or the greeting)."""
        if self.echo and turn.audio:
            session.respond([Speech(turn.audio, session.model.caller_words.echo(turn.audio, turn.speech_ms))])
        else:
            session.respond([session.model.greeting])

    def on_item_created(self, session: Session, item: dict[str, Any]) -> None:
        """The relay added a conversation item (a tool's output, a text message): nothing by default."""


@dataclass
class _Progress:
    step: str = "greeting"  # greeting, listening, tool, answering, transfer_failed, done
    tool_call_id: str = ""
    tool_failed: bool = False
    ending_call_id: str = ""


class Script(Scenario):
    """A tool call after the caller's first words, its answer, then ``end_call`` or ``transfer_call``."""

    def __init__(self, *, name: str = "scripted", tool: str | None = "lookup_order",
                 arguments: str = '{"order_id": "1001"}', then: str | None = END_CALL,
                 destination: str = "sales", reason: str = "the caller has what they needed",
                 lines: Lines | None = None) -> None:
        super().__init__(echo=True)
        if then is not None and then not in ENDINGS:
            raise ValueError(f"then must be one of {ENDINGS} or None, not {then!r}")
        self.name = name
        self.tool = tool
        self.arguments = arguments
        self.then = then
        self.destination = destination
        self.reason = reason
        self._lines = lines
        self._progress: weakref.WeakKeyDictionary[Session, _Progress] = weakref.WeakKeyDictionary()

    @property
    def lines(self) -> Lines:
        """What it says (the spoken clips unless others were given)."""
        return self._lines or Lines.spoken()

    def progress(self, session: Session) -> _Progress:
        """Where ``session`` is in the script."""
        return self._progress.setdefault(session, _Progress())

    def _ending(self, session: Session, progress: _Progress) -> list[Part]:
        if self.then is None:
            progress.step = "done"
            return []
        progress.step = "ending"
        progress.ending_call_id = session.new_id("call")
        if self.then == END_CALL:
            call = FunctionCall(END_CALL, json.dumps({"reason": self.reason}), progress.ending_call_id)
            return [self.lines.goodbye, call]
        call = FunctionCall(TRANSFER_CALL, json.dumps({"destination": self.destination}), progress.ending_call_id)
        return [self.lines.handover, call]

    def on_response_create(self, session: Session, event: dict[str, Any]) -> None:
        """The greeting first; then the tool's answer and the ending; an apology for a failed transfer."""
        progress = self.progress(session)
        if progress.step == "greeting":
            progress.step = "listening"
            super().on_response_create(session, event)
        elif progress.step == "answering":
            said = self.lines.sorry if progress.tool_failed else self.lines.answer
            session.respond([said, *self._ending(session, progress)])
        elif progress.step == "transfer_failed":
            progress.step = "done"
            session.respond([self.lines.transfer_failed])
        else:
            super().on_response_create(session, event)

    def on_caller_turn(self, session: Session, turn: CallerTurn) -> None:
        """The caller's first words start the script; later turns are echoed once it is over."""
        progress = self.progress(session)
        if progress.step in ("greeting", "listening"):
            if self.tool is None:
                session.respond(self._ending(session, progress) or [session.model.greeting])
                return
            progress.step = "tool"
            progress.tool_call_id = session.new_id("call")
            call = FunctionCall(self.tool, self.arguments, progress.tool_call_id)
            preamble = self.lines.preamble
            session.respond([preamble, call] if preamble is not None else [call])
        elif progress.step in ("done", "transfer_failed"):
            super().on_caller_turn(session, turn)
        # tool, answering, ending: the model is waiting for the tool, or the call is ending

    def on_item_created(self, session: Session, item: dict[str, Any]) -> None:
        """The tool's output (or a failed transfer's) moves the script on."""
        if item.get("type") != "function_call_output":
            return
        progress = self.progress(session)
        call_id = item.get("call_id")
        if call_id == progress.tool_call_id and progress.step == "tool":
            progress.step = "answering"
            progress.tool_failed = _is_error(item.get("output"))
        elif call_id == progress.ending_call_id and progress.step == "ending":
            progress.step = "transfer_failed"


def _is_error(output: object) -> bool:
    try:
        document = json.loads(str(output))
    except ValueError:
        return False
    return isinstance(document, dict) and "error" in document


SCENARIOS: dict[str, Scenario] = {
    "echo": Scenario(),
    "order-hangup": Script(name="order-hangup"),
    "order-transfer": Script(name="order-transfer", then=TRANSFER_CALL),
    "order": Script(name="order", then=None),
    "hangup": Script(name="hangup", tool=None),
    "transfer": Script(name="transfer", tool=None, then=TRANSFER_CALL),
}


def named(name: str, **changes: Any) -> Scenario:
    """The scenario called ``name``, with ``tool``/``arguments``/``then``/``destination`` changed."""
    if name not in SCENARIOS:
        raise ValueError(f"no scenario called {name!r}: choose one of {', '.join(SCENARIOS)}")
    base = SCENARIOS[name]
    if not changes:
        return base
    if not isinstance(base, Script):
        raise ValueError(f"the {name!r} scenario calls no tool: its tool, arguments and ending cannot change")
    settings = {"name": base.name, "tool": base.tool, "arguments": base.arguments, "then": base.then,
                "destination": base.destination, "reason": base.reason, **changes}
    return Script(**settings)
