"""``/diagnostic/openai``: whether this relay can open a Realtime session right now.

Opens a real socket with the relay's own URL, model and key, sends exactly the
``session.update`` every call sends, and waits for ``session.updated``. The answer names
the stage where it stopped (dns, tcp, tls, handshake, session), the HTTP status of a
refused handshake, and OpenAI's error code and message, so an operator can tell a
firewall from a bad key from a model the key may not use. It never echoes the key, nor
anything key-shaped OpenAI quotes back (``UpstreamError`` strips it).

Because it opens a billable session, ``relay.server`` runs it like a call: it takes a call
slot (refused at capacity and while draining), and one runs at a time per instance, at most
one every ``RequestLimits.diagnostic_interval_s`` (``CallCounter.try_begin_diagnostic``).
"""

from __future__ import annotations

import time
from typing import Any

import gevent

from relay import openai_protocol as oai
from relay.errors import CLOSE_NORMAL, FrameError, OpenAIProtocolError, UpstreamError
from relay.upstream import UpstreamConnector

STAGES = ("dns", "tcp", "tls", "handshake", "session")


def run(connector: UpstreamConnector, session_update: str, session_timeout_s: float) -> dict[str, Any]:
    """Try the whole path once; return the JSON-able verdict."""
    started = time.monotonic()
    result: dict[str, Any] = {
        "ok": False,
        "stage": "dns",
        "stages_ms": {},
        "url": connector.url,
        "http_status": None,
        "error_code": None,
        "error_message": None,
        "elapsed_ms": None,
    }
    try:
        pre = connector.preconnect()
        result["stages_ms"].update(pre.timings_ms)
        result["stage"] = "handshake"
        conn = connector.handshake(pre)
        result["stages_ms"]["handshake"] = pre.timings_ms.get("handshake")
        result["http_status"] = 101
        result["stage"] = "session"
        try:
            _await_session(conn, session_update, session_timeout_s, result)
        finally:
            conn.close(CLOSE_NORMAL)
            conn.release()
    except UpstreamError as exc:
        result["stage"] = exc.stage
        result["http_status"] = exc.status
        result["error_code"] = exc.code
        result["error_message"] = exc.detail
    result["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    for stage, ms in list(result["stages_ms"].items()):
        result["stages_ms"][stage] = round(ms, 1) if ms is not None else None
    return result


def _await_session(
    conn: Any, session_update: str, timeout_s: float, result: dict[str, Any]
) -> None:
    sent = time.monotonic()
    conn.send_text(session_update)
    timeout = gevent.Timeout(timeout_s, UpstreamError("session", f"no session.updated within {timeout_s:g} s"))
    timeout.start()
    try:
        while True:
            try:
                message = conn.receive()
            except FrameError as exc:
                raise UpstreamError("session", f"broken frame from OpenAI: {exc}") from None
            if message is None:
                raise UpstreamError(
                    "session",
                    f"OpenAI closed the socket (code {conn.close_code}) {conn.close_reason}".strip(),
                )
            try:
                event = oai.parse(message)
            except OpenAIProtocolError as exc:
                raise UpstreamError("session", f"unreadable event: {exc}") from None
            if isinstance(event, oai.ErrorEvent):
                raise UpstreamError(
                    "session", event.message or "session.update rejected", code=event.code or event.error_type
                )
            if isinstance(event, oai.SessionUpdated):
                for direction, fmt in (("input", event.input_format), ("output", event.output_format)):
                    if fmt and fmt != oai.AUDIO_FORMAT:
                        raise UpstreamError(
                            "session", f"session accepted but {direction} audio is {fmt}, not {oai.AUDIO_FORMAT}"
                        )
                result["stages_ms"]["session"] = (time.monotonic() - sent) * 1000
                result["ok"] = True
                return
    finally:
        timeout.close()
