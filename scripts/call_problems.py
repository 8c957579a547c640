"""What ``make call`` says when the call cannot even start: one or two plain lines, never a traceback.

The first line says what is wrong, the second what to do. ``local`` is true when the address
came from make run's ``.local/stack.env`` (not a flag), so the fix is ``make run`` itself.
"""

from __future__ import annotations

import re
import socket
import urllib.error
import xml.etree.ElementTree as ET
from pathlib import Path

from scripts.fakes.twilio_webhook import StreamTarget

VERIFY_WEBHOOK = ".venv/bin/python scripts/verify_webhook.py"
START = "Start the stack with make run (in another terminal), then make call again."


def no_stack(env_file: Path) -> str:
    """Nothing to call: no flag, and make run has never written its file."""
    return f"make call: no local stack to call ({env_file} does not exist yet).\n{START}"


def _reason(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) and not isinstance(
        exc, urllib.error.HTTPError) else exc
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "no answer in time"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def webhook_failed(url: str, exc: Exception, *, local: bool) -> str:
    """The webhook could not be reached, or did not answer TwiML with a <Stream>."""
    if isinstance(exc, urllib.error.HTTPError):
        code = exc.code
        exc.close()
        if code == 403:
            return (f"make call: the webhook at {url} refused the call's signature (HTTP 403).\n"
                    f"Give make call the webhook's TWILIO_AUTH_TOKEN (and WEBHOOK_PUBLIC_URL if Twilio reaches it "
                    f"at another address), or run {VERIFY_WEBHOOK} {url} for the diagnosis.")
        return (f"make call: the webhook at {url} answered HTTP {code} instead of TwiML.\n"
                f"Run {VERIFY_WEBHOOK} {url} for the diagnosis (make run's output shows the webhook's log).")
    if isinstance(exc, (ValueError, KeyError, ET.ParseError)):
        return (f"make call: the webhook at {url} did not answer TwiML with <Connect><Stream> ({exc}).\n"
                f"Run {VERIFY_WEBHOOK} {url} for the diagnosis.")
    if local:
        return f"make call: nothing answers at {url}, the webhook of make run's stack ({_reason(exc)}).\n{START}"
    return (f"make call: nothing answers at {url} ({_reason(exc)}).\n"
            f"Check the --webhook address, and that a webhook runs there (make run starts one).")


def stream_unreachable(target: StreamTarget, errors: list[str], *, local: bool) -> str:
    """The webhook answered (or there was none to ask) but the relay's stream URL does not."""
    why = "; ".join(re.sub(r"^(connect failed: )?(\[Errno -?\d+\] )?", "", error) for error in errors)
    why = why[:1].lower() + why[1:] if why else "no connection"
    if target.via.startswith("webhook"):
        return (f"make call: the webhook answered, but nothing answers at {target.url}, where its TwiML sends the "
                f"call ({why}).\nStart the relay (make run does, and its output says why one stopped); if "
                f"RELAY_PUBLIC_URL is a tunnel's address, check that the tunnel runs.")
    if local:
        return f"make call: nothing answers at {target.url}, the relay of make run's stack ({why}).\n{START}"
    return (f"make call: nothing answers at {target.url} ({why}).\n"
            f"Check the --relay address, and that a relay runs there (make run starts one).")
