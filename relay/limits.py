"""Limits: the numbers that protect one call and its neighbours, in one injectable value.

Production uses the defaults. They are not environment settings: nothing about a deploy
should change them. Tests pass smaller ones to ``create_app(config, limits=...)`` so a
stalled peer or a flood is judged in milliseconds instead of seconds, the way Flask's
``create_app(test_config)`` takes its configuration instead of being patched.

Pure: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Twilio sends 50 media messages a second (20 ms of audio each).
FRAMES_PER_S = 50


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-call limits, enforced by the bridge (policy) and the transport (buffers)."""

    #: How often each call's deadlines, stalls, floods and timers are looked at.
    tick_s: float = 0.25
    #: A peer that has not taken a byte of what we sent for this long has stopped reading:
    #: the call ends (the queue would only grow, and the caller hears nothing anyway).
    send_stall_s: float = 5.0
    #: Bytes waiting for a peer that does not read before the connection is cut at once.
    #: 4 MiB is about 8 minutes of assistant audio: nothing a live peer ever falls behind by.
    max_queued_bytes: int = 4 * 1024 * 1024
    #: The flood check's window, and what a Twilio peer may send in it: real Twilio sends
    #: 50 media messages a second plus the echoes of our marks (a burst of them after a
    #: ``clear``); 1000 a second is twenty times that.
    flood_window_s: float = 2.0
    flood_messages_per_s: int = 1000
    #: Caller audio arriving faster than this many times real time (8 KiB/s of mu-law,
    #: counted as base64 text) over the window is a flood too: it would cost upstream
    #: bandwidth and tokens for audio no phone ever sent.
    flood_audio_ratio: float = 10.0
    #: Messages a real Twilio never sends (not JSON, invalid events, binary frames): a peer
    #: that sends this many is not Twilio, and the call ends.
    max_bad_messages: int = 20
    #: Caller audio held between ``start`` and the Realtime session being ready, so the
    #: caller's first "hello?" is not lost. It is sent in order as soon as the session can
    #: read it. The session must be ready within OPENAI_SESSION_TIMEOUT_SECONDS (default
    #: 5 s) anyway; 6 s of audio (300 frames, about 80 KB of JSON) covers it with room,
    #: and beyond it the oldest audio goes first.
    early_audio_s: float = 6.0
    #: After ``start``, a session not ready for this long gets a soft comfort tone played
    #: to the caller (until the greeting or the fallback), so a slow handshake is not
    #: heard as a dead line.
    comfort_tone_after_s: float = 1.5
    #: How long a close handshake may take before the socket is cut.
    close_timeout_s: float = 1.0
    #: Keypad digits are gathered until "#" or a pause this long, then given to the model.
    dtmf_pause_s: float = 1.5
    #: When the assistant hangs up or transfers, the longest wait for its last words to play
    #: out (Twilio echoes the mark after them) before the call is updated anyway.
    goodbye_s: float = 10.0
    #: The longest wait for Twilio's REST API to answer a hang-up or transfer (its own
    #: request times out sooner; this is the state machine's guard).
    rest_timeout_s: float = 15.0
    #: After Twilio accepted a hang-up or transfer, the longest wait for it to end the
    #: stream before the relay closes it itself.
    hangup_confirm_s: float = 5.0

    @property
    def early_audio_frames(self) -> int:
        """Caller frames held at most before the session is ready."""
        return max(1, int(self.early_audio_s * FRAMES_PER_S))
