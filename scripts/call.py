"""``make call``: one simulated Twilio call, and its timeline.

The caller (scripts/fakes/twilio_caller.py) acts as Twilio's side of a Media Stream:
signed upgrade, ``connected`` and ``start`` with the stream token, caller audio from a WAV
in real time, marks echoed as the assistant's audio plays. This prints what happened (time
to first audio, barge-ins, how it ended) and saves what the caller heard to a WAV.

Start from the webhook (``--webhook``: a signed POST, the TwiML's ``<Stream>`` URL and
``<Parameter>``s are used as Twilio would) or straight at a relay (``--relay``, with the
token minted from STREAM_TOKEN_SECRET).

    make call                                    # against the local stack
    python scripts/call.py --relay ws://127.0.0.1:8080 --out heard.wav
"""

from __future__ import annotations

import argparse
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import audio, call_problems, wav_input
from scripts.fakes.twilio_caller import CallResult, SimulatedCaller
from scripts.fakes.twilio_webhook import StreamTarget, target_from_relay, target_from_webhook
from scripts.verify.settings import DEFAULT_ENV_FILE, read_env_file


def print_report(result: CallResult, target: StreamTarget, out: Path | None) -> None:
    """The timeline, as an operator reads it."""
    print(f"call {target.call_sid} -> {target.url}")
    print(f"  via {target.via}")
    for ms, text in result.timeline:
        print(f"  +{ms:>8.1f} ms  {text}")
    heard_s = len(result.heard) / 8000
    print(f"  heard {heard_s:.1f} s of assistant audio in {len(result.media_payloads)} media "
          f"messages; {len(result.marks_echoed)} marks echoed; {len(result.clears_ms)} barge-in(s)")
    if result.first_audio_ms is not None:
        print(f"  time to first audio: {result.first_audio_ms:.0f} ms after connecting")
    for error in result.errors:
        print(f"  problem: {error}")
    if out is not None:
        audio.write_wav_ulaw(out, result.heard)
        print(f"  saved what the caller heard to {out}")


def main(argv: list[str] | None = None) -> int:
    """Command line: one simulated call; exit 0 if the assistant's audio came back."""
    parser = argparse.ArgumentParser(description="Place one simulated Twilio call.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--relay", help="relay base URL (ws://, wss://, http:// or https://)")
    where.add_argument("--webhook", help="webhook base URL: start the call there, as Twilio does")
    parser.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE,
                        help="read secrets and URLs from this file (written by make run)")
    parser.add_argument("--wav", default=str(audio.CALLER_WAV),
                        help="what the caller says: a WAV file, any sample rate, mono or stereo")
    parser.add_argument("--out", default="call.wav", help="save what the caller heard here")
    parser.add_argument("--hold", type=float, default=14.0, help="seconds to stay on the line")
    parser.add_argument("--barge-in", action="store_true",
                        help="talk over the greeting instead of waiting for it")
    args = parser.parse_args(argv)

    try:
        spoken = wav_input.load(args.wav)
    except wav_input.WavProblem as exc:
        print(f"make call: {exc}", file=sys.stderr)
        return 2
    env = {**(read_env_file(args.env_file) if args.env_file.exists() else {}), **os.environ}
    if not (args.relay or args.webhook or env.get("WEBHOOK_URL") or env.get("RELAY_URL")):
        print(call_problems.no_stack(args.env_file), file=sys.stderr)
        return 1
    if spoken.note:
        print(f"caller's words: {spoken.note}")
    auth_token = env.get("TWILIO_AUTH_TOKEN")
    local = not (args.relay or args.webhook)  # the addresses come from make run's env file
    if args.webhook or (not args.relay and env.get("WEBHOOK_URL")):
        webhook_url = args.webhook or env["WEBHOOK_URL"]
        try:
            target = target_from_webhook(webhook_url, auth_token=auth_token or "",
                                         public_url=env.get("WEBHOOK_PUBLIC_URL"))
        except (OSError, ValueError, KeyError, ET.ParseError) as exc:
            print(call_problems.webhook_failed(webhook_url, exc, local=local), file=sys.stderr)
            return 1
    else:
        relay_url = args.relay or env["RELAY_URL"]
        target = target_from_relay(relay_url, public_url=env.get("RELAY_PUBLIC_URL"),
                                   stream_secret=env.get("STREAM_TOKEN_SECRET"))
    caller = SimulatedCaller(target, auth_token=auth_token,
                             caller_audio=spoken.ulaw, hold_s=args.hold,
                             barge_in_after_s=1.0 if args.barge_in else None)
    result = caller.run()
    if not result.connected and result.handshake_status is None:
        print(call_problems.stream_unreachable(target, result.errors, local=local), file=sys.stderr)
        return 1
    print_report(result, target, Path(args.out) if args.out else None)
    if result.handshake_status != 101:
        print(f"FAILED: the relay refused the stream (HTTP {result.handshake_status}) "
              f"{result.handshake_body.strip()}")
        return 1
    if result.first_audio_ms is None:
        print("FAILED: no assistant audio came back (dead air)")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nmake call: hung up (Ctrl-C).", file=sys.stderr)
        sys.exit(130)
