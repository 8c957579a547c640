"""The words the stand-in gives for audio, honestly: it does no speech recognition.

- Its own words: every clip it says comes with its text (``audio.words_of``: the ``.txt``
  beside each WAV in scripts/assets), sent as the item's audio transcript.
- The caller's words (``conversation.item.input_audio_transcription.completed``, when the
  session asked for ``audio.input.transcription``): a caller turn that holds the whole spoken
  part of a clip whose words are known, byte for byte, gets those words. ``make call`` plays
  scripts/assets/caller_utterance.wav and the relay passes Twilio's payloads through
  unchanged, so its calls are transcribed with the clip's real words. Anything else (a
  microphone, another WAV) is described, never guessed: ``(caller speech, 1.4 s)``.

The usage each transcription reports is made-up and plausible (about ten audio tokens a
second, a token per word), in the shape of the SDK's ``UsageTranscriptTextUsageTokens``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scripts import audio

PROBE_BYTES = 800  # 100 ms: where in a known clip a turn starts
VOICED_LEVEL = 4.0  # as the stand-in's VAD hears a frame (session.py)


def _voiced_span(clip: bytes) -> tuple[int, int]:
    """Where a clip's speech starts and ends (its first and last voiced 20 ms frame), in bytes."""
    frames = audio.frames(clip)
    voiced = [i for i, frame in enumerate(frames) if audio.level(frame) > VOICED_LEVEL]
    if not voiced:
        return 0, 0
    return voiced[0] * audio.FRAME_BYTES, min((voiced[-1] + 1) * audio.FRAME_BYTES, len(clip))


class CallerWords:
    """What a caller turn said, when it holds a known clip's speech; a description otherwise."""

    def __init__(self, clips: Iterable[Path | str] = (audio.CALLER_WAV,)) -> None:
        self._clips = []
        for path in clips:
            clip = audio.read_wav_ulaw(path)
            self._clips.append((clip, _voiced_span(clip), audio.words_of(path)))

    def known(self, turn: bytes) -> str | None:
        """The words of the known clip whose whole speech ``turn`` holds, or None (part of it is not enough)."""
        probe = turn[:PROBE_BYTES]
        if len(probe) < PROBE_BYTES:
            return None
        for clip, (start, end), words in self._clips:
            offset = clip.find(probe)
            # The VAD starts a turn a frame or two into the speech; the turn must run to its end.
            if 0 <= offset <= start + 3 * audio.FRAME_BYTES and turn[: end - offset] == clip[offset:end]:
                return words
        return None

    def transcript(self, turn: bytes, speech_ms: int) -> str:
        """The caller's words, or ``(caller speech, 1.4 s)``."""
        return self.known(turn) or f"(caller speech, {speech_ms / 1000:.1f} s)"

    def echo(self, turn: bytes, speech_ms: int) -> str:
        """The words of the caller's own audio played back to them."""
        return self.known(turn) or f"(the caller's words played back, {speech_ms / 1000:.1f} s)"


def transcription_usage(speech_ms: int, transcript: str) -> dict[str, Any]:
    """A plausible token count for one turn's transcription."""
    audio_tokens = max(1, round(speech_ms / 100))
    words = len(transcript.split())
    return {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": words,
            "total_tokens": audio_tokens + words, "input_token_details": {"audio_tokens": audio_tokens,
                                                                          "text_tokens": 0}}
