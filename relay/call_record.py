"""CallRecord: what one call said and did, for its end-of-call report (CALL_REPORT_URL).

The bridge feeds it as the call goes: when each caller turn began (``speech_started``) and
what it said (the transcription, which may arrive after the answer), each assistant item's
audio and words (its audio transcript), how much of an item the caller actually heard when
they talked over it, keypad digits, and the tokens every response used. ``report()`` turns
it into the JSON document the relay posts: turns in the order they were spoken, each with
``at_ms`` from the start of the stream.

An assistant turn the caller interrupted keeps only the words they heard: the model writes
the transcript of everything it generated (faster than real time, so usually before the
caller interrupts), and the relay cuts it in proportion to the audio heard, at a word
boundary, marking it ``"interrupted": true``. Proportional is an estimate (speech is not
evenly paced), but it never reports words the caller cannot have heard by much.

Bounded: a call of any length keeps at most MAX_TURNS turns of at most MAX_TEXT characters.
Nothing here is ever logged: transcripts hold what people said.

Pure: standard library only.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

MAX_TURNS = 2000
MAX_TEXT = 4000
_BYTES_PER_MS = 8


@dataclass(slots=True)
class _Turn:
    role: str  # "caller" | "assistant"
    at_ms: float
    text: str = ""
    heard_ms: int | None = None  # assistant turns the caller talked over
    keypad: bool = False


@dataclass(slots=True)
class _Item:
    """One assistant item: when its audio began, and its turn."""

    at_ms: float
    turn: _Turn | None = None


def iso(wall: float) -> str:
    """Unix time as ISO 8601 UTC with milliseconds."""
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _add(total: dict[str, Any], more: dict[str, Any]) -> None:
    """Sum ``more``'s numbers into ``total``, nested dicts included (OpenAI's usage shape)."""
    for key, value in more.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict):
            inner = total.setdefault(key, {})
            if isinstance(inner, dict):
                _add(inner, value)


def _cut(text: str, fraction: float) -> str:
    """The first ``fraction`` of ``text``, ended at a word boundary."""
    if fraction >= 1:
        return text
    keep = text[: max(0, round(len(text) * fraction))]
    if len(keep) < len(text) and " " in keep:
        keep = keep[: keep.rindex(" ")]
    return keep.rstrip(" ,;:")


@dataclass(slots=True)
class CallRecord:
    """One verified call's turns, digits and usage."""

    call_sid: str
    stream_sid: str
    caller_number: str
    called_number: str
    started_wall: float
    model: str
    voice: str
    transcription_model: str
    _turns: list[_Turn] = field(default_factory=list)
    _caller: dict[str, _Turn] = field(default_factory=dict)  # item_id -> turn
    _items: dict[str, _Item] = field(default_factory=dict)  # assistant item_id -> item
    audio_bytes: dict[str, int] = field(default_factory=dict)  # assistant item_id -> its audio so far
    usage: dict[str, Any] = field(default_factory=dict)
    transcription_usage: dict[str, Any] = field(default_factory=dict)
    dropped_turns: int = 0

    def _turn(self, role: str, at_ms: float) -> _Turn | None:
        if len(self._turns) >= MAX_TURNS:
            self.dropped_turns += 1
            return None
        turn = _Turn(role, round(at_ms, 1))
        self._turns.append(turn)
        return turn

    # -- the caller ---------------------------------------------------------------------

    def caller_started(self, item_id: str, at_ms: float) -> None:
        """The caller began a turn (``speech_started``): its place in the transcript."""
        if item_id and item_id not in self._caller:
            turn = self._turn("caller", at_ms)
            if turn is not None:
                self._caller[item_id] = turn

    def caller_said(self, item_id: str, text: str, at_ms: float) -> None:
        """What the caller said in that turn, transcribed."""
        turn = self._caller.get(item_id)
        if turn is None:
            turn = self._turn("caller", at_ms)
            if turn is None:
                return
            if item_id:
                self._caller[item_id] = turn
        turn.text = text.strip()[:MAX_TEXT]

    def digits(self, keys: str, at_ms: float) -> None:
        """The caller pressed keys (kept in the record, never in a log)."""
        turn = self._turn("caller", at_ms)
        if turn is not None:
            turn.text, turn.keypad = keys[:MAX_TEXT], True

    def transcribed(self, usage: dict[str, Any] | None) -> None:
        """Tokens (or seconds) one caller transcription used."""
        if usage:
            _add(self.transcription_usage, usage)

    # -- the assistant --------------------------------------------------------------------

    def assistant_item(self, item_id: str, at_ms: float) -> None:
        """An assistant item's first audio arrived: its place in the transcript.

        How much audio it has in all is counted by the bridge, in ``audio_bytes`` (a dict it
        updates for every delta, without a call: the hot path).
        """
        if item_id not in self._items and len(self._items) < MAX_TURNS:
            self._items[item_id] = _Item(at_ms)

    def assistant_said(self, item_id: str, text: str, at_ms: float) -> None:
        """The words of an assistant item, complete."""
        item = self._items.get(item_id)
        if item is None:
            if len(self._items) >= MAX_TURNS:
                return
            item = self._items[item_id] = _Item(at_ms)
        if item.turn is None:
            item.turn = self._turn("assistant", item.at_ms)
            if item.turn is None:
                return
        item.turn.text = text.strip()[:MAX_TEXT]

    def assistant_cut(self, item_id: str, heard_ms: int) -> None:
        """The caller talked over ``item_id`` after hearing ``heard_ms`` of it."""
        item = self._items.get(item_id)
        if item is None:
            return
        if item.turn is None:  # its words come later: cut them then
            item.turn = self._turn("assistant", item.at_ms)
            if item.turn is None:
                return
        item.turn.heard_ms = heard_ms

    def responded(self, usage: dict[str, Any]) -> None:
        """Tokens one response used."""
        _add(self.usage, usage)

    # -- the report -------------------------------------------------------------------------

    def transcript(self) -> list[dict[str, Any]]:
        """The turns in the order they were spoken."""
        audio_ms = {id(item.turn): self.audio_bytes.get(item_id, 0) / _BYTES_PER_MS
                    for item_id, item in self._items.items() if item.turn}
        out = []
        for turn in sorted(self._turns, key=lambda t: t.at_ms):
            entry: dict[str, Any] = {"role": turn.role, "text": turn.text, "at_ms": turn.at_ms}
            if turn.keypad:
                entry["keypad"] = True
            if turn.heard_ms is not None:
                total_ms = audio_ms.get(id(turn), 0.0)
                entry["text"] = _cut(turn.text, turn.heard_ms / total_ms if total_ms else 0.0)
                entry["interrupted"] = True
                entry["heard_ms"] = turn.heard_ms
            if entry["text"] or entry.get("interrupted"):
                out.append(entry)
        return out

    def report(self, *, ended_wall: float, end_reason: str, first_audio_ms: float | None, barge_ins: int,
               tool_calls: list[dict[str, Any]], transfer: dict[str, Any] | None) -> dict[str, Any]:
        """The call's record, as posted to CALL_REPORT_URL.

        ``tool_calls``: name, ok, ms and ``at_ms`` (when the model asked, from the stream's start)
        of each; ``transfer``: the last one tried (destination, ok, at_ms), or None.
        """
        document: dict[str, Any] = {
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "from": self.caller_number,
            "to": self.called_number,
            "started_at": iso(self.started_wall),
            "ended_at": iso(ended_wall),
            "duration_s": round(max(0.0, ended_wall - self.started_wall), 3),
            "end_reason": end_reason,
            "first_audio_ms": first_audio_ms,
            "barge_ins": barge_ins,
            "transcript": self.transcript(),
            "tool_calls": [{"name": c["name"], "ok": c["ok"], "ms": c["ms"], "at_ms": c["at_ms"]} for c in tool_calls],
            "transfer": transfer,
            "usage": {"input_tokens": 0, "output_tokens": 0, **self.usage},
            "model": self.model,
            "voice": self.voice,
        }
        if self.transcription_usage:
            document["usage"]["transcription"] = self.transcription_usage
        if self.dropped_turns:
            document["turns_dropped"] = self.dropped_turns
        return document
