"""``make call``: one simulated Twilio call, and its timeline.

The caller (scripts/fakes/twilio_caller.py) acts as Twilio's side of a Media Stream:
signed upgrade, ``connected`` and ``start`` with the stream token, caller audio from a WAV
in real time, marks echoed as the assistant's audio plays. This prints what happened (time
to first audio, barge-ins, how it ended) and saves what the caller heard to a WAV.

Start from the webhook (``--webhook``: a signed POST, the TwiML's ``<Stream>`` URL and
``<Parameter>``s are used as Twilio would) or straight at a relay (``--relay``, with the
token minted from STREAM_TOKEN_SECRET).

What the assistant does besides talking shows too, learnt the way an operator would:

- a hang-up or transfer: the relay asks Twilio's REST API, so when TWILIO_API_BASE_URL names a
  local stand-in (``make run``'s), the caller watches it for this call's updates, says so in
  the timeline and ends its stream as Twilio would;
- the call's record: when CALL_REPORT_URL names a local report receiver, the caller reads the
  record there once the call is over (``GET /calls/{CallSid}``) and merges its turns, tool
  calls and transfer into the timeline, marked ``record``; otherwise it says where the record
  went, or that no CALL_REPORT_URL is set.

The stand-in model acts out one scenario at a time (greet and echo, or a tool call then a
hang-up or a transfer): ``python -m scripts.fakes.openai --scenario order-transfer``, or switch
a running one with ``curl -X POST 'http://127.0.0.1:8765/scenario?name=order-transfer'``.

    make call                                    # against the local stack
    python scripts/call.py --relay ws://127.0.0.1:8080 --out heard.wav
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import audio, call_problems, wav_input
from scripts.fakes.report_receiver import fetch_record
from scripts.fakes.twilio_caller import CallResult, SimulatedCaller
from scripts.fakes.twilio_webhook import StreamTarget, target_from_relay, target_from_webhook
from scripts.verify.settings import DEFAULT_ENV_FILE, read_env_file


def is_local(url: str | None) -> bool:
    """True for a URL on this machine (where a stand-in can be asked)."""
    host = urlsplit(url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def record_timeline(record: dict[str, Any], start_ms: float) -> list[tuple[float, str]]:
    """The record's turns, tool calls and transfer, on the caller's clock (the stream began at ``start_ms``)."""
    entries: list[tuple[float, str]] = []
    for turn in record.get("transcript") or []:
        cut = " (interrupted: what the caller heard)" if turn.get("interrupted") else ""
        keys = "pressed " if turn.get("keypad") else ""
        entries.append((turn.get("at_ms", 0), f"record: {turn.get('role')}: {keys}{turn.get('text', '')}{cut}"))
    for call in record.get("tool_calls") or []:
        result = "ok" if call.get("ok") else "FAILED"
        entries.append((call.get("at_ms", 0), f"record: tool call {call.get('name')}: {result} in {call.get('ms')} ms"))
    transfer = record.get("transfer")
    if transfer:
        result = "placed" if transfer.get("ok") else "FAILED"
        entries.append((transfer.get("at_ms", 0), f"record: transfer to {transfer.get('destination')}: {result}"))
    return [(start_ms + float(at_ms or 0), text) for at_ms, text in entries]


def print_report(result: CallResult, target: StreamTarget, out: Path | None,
                 record: dict[str, Any] | None = None) -> None:
    """The timeline, as an operator reads it (the call's record merged in, when there is one)."""
    print(f"call {target.call_sid} -> {target.url}")
    print(f"  via {target.via}")
    timeline = list(result.timeline)
    if record is not None:
        start_ms = next((ms for ms, text in result.timeline if text == "start sent"), 0.0)
        timeline = sorted(timeline + record_timeline(record, start_ms), key=lambda entry: entry[0])
    for ms, text in timeline:
        print(f"  +{ms:>8.1f} ms  {text}")
    heard_s = len(result.heard) / 8000
    print(f"  heard {heard_s:.1f} s of assistant audio in {len(result.media_payloads)} media "
          f"messages; {len(result.marks_echoed)} marks echoed; {len(result.clears_ms)} barge-in(s)")
    if result.first_audio_ms is not None:
        print(f"  time to first audio: {result.first_audio_ms:.0f} ms after connecting")
    ended = {"assistant": "the assistant (through Twilio's REST API)", "relay": "the relay (it closed the stream)",
             "caller": "the caller"}[result.ended_by]
    print(f"  ended by {ended}")
    for error in result.errors:
        print(f"  problem: {error}")
    if out is not None:
        audio.write_wav_ulaw(out, result.heard)
        print(f"  saved what the caller heard to {out}")


def rest_note(rest_url: str | None, result: CallResult) -> str | None:
    """A line on what the caller could see of the relay's REST requests, when it could not watch them."""
    if not rest_url:
        return ("  Twilio's REST API: TWILIO_API_BASE_URL is not set, so a hang-up or transfer by the assistant "
                "goes to api.twilio.com and shows here only as the relay closing the stream")
    if not is_local(rest_url):
        return f"  Twilio's REST API: {rest_url} is not on this machine: the caller cannot watch it"
    if result.rest_watched is False:
        return (f"  Twilio's REST API: nothing answered at {rest_url} (is its stand-in running? make run starts it): "
                f"a hang-up or transfer could not be seen")
    return None


def where_the_record_went(report_url: str | None, call_sid: str) -> tuple[dict[str, Any] | None, str]:
    """(the record if it can be read here, a line saying where it went)."""
    if not report_url:
        return None, "  call record: no CALL_REPORT_URL is set, so the relay kept no record of this call"
    if not is_local(report_url):
        return None, f"  call record: the relay posted it to {report_url} (read it there)"
    record, problem = fetch_record(report_url, call_sid)
    if record is None:
        return None, f"  call record: {problem} (the relay logs report.undelivered call_sid={call_sid} if it gave up)"
    turns, tools = len(record.get("transcript") or []), len(record.get("tool_calls") or [])
    return record, (f"  call record: delivered to {report_url}, signed ({turns} turns, {tools} tool call(s), "
                    f"ended: {record.get('end_reason')}); the lines marked record: come from it")


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
    parser.add_argument("--hold", type=float, default=20.0,
                        help="seconds to stay on the line at most (the assistant may hang up first)")
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
    rest_url = env.get("TWILIO_API_BASE_URL")
    caller = SimulatedCaller(target, auth_token=auth_token,
                             caller_audio=spoken.ulaw, hold_s=args.hold,
                             barge_in_after_s=1.0 if args.barge_in else None,
                             rest_api_url=rest_url if is_local(rest_url) else None)
    result = caller.run()
    if not result.connected and result.handshake_status is None:
        print(call_problems.stream_unreachable(target, result.errors, local=local), file=sys.stderr)
        return 1
    record, record_line = (None, "") if result.handshake_status != 101 else \
        where_the_record_went(env.get("CALL_REPORT_URL"), target.call_sid)
    print_report(result, target, Path(args.out) if args.out else None, record)
    if result.handshake_status == 101:
        note = rest_note(rest_url, result)
        if note:
            print(note)
        print(record_line)
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
