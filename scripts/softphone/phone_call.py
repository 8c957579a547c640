"""One softphone call: the page on one side, the relay on the other, Twilio's part in between.

``PhoneCall.run()`` runs in the greenlet of the page's WebSocket:

1. ``incoming_call.answer()``: the signed webhook POST and its TwiML;
2. a signed WebSocket upgrade to the ``<Stream>`` URL (websocket-client, not the relay's
   code), then ``connected`` and ``start`` with the TwiML's ``<Parameter>`` values, built by
   ``scripts.fakes.twilio_messages.InboundStream`` like every other Twilio stand-in;
3. the page's messages (caller frames, played positions, digits, hang-up) are read in that
   greenlet, the relay's (``media``, ``mark``, ``clear``) in a reader greenlet of their own;
4. ``end(reason, by=...)`` runs once, from whichever side ends first, or from outside: the
   caller's ``stop`` and a close to the relay (unless the relay ended it), an ``ended``
   message to the page, the ``stream-stopped`` status callback.

Twilio's behaviour kept here: caller frames go on as the page's audio clock makes them
(never faster than real time: a page that runs ahead is held to a budget), marks are
echoed when the page reports the audio before them played (``playout.Playout``), and at
once after a ``clear``; what Twilio would only warn about (error 31950, 31951) is shown
on the page and otherwise ignored.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import gevent
import websocket
from gevent.event import Event
from gevent.lock import RLock
from gevent.pool import Group

from scripts.fakes.twilio_messages import TEST_ACCOUNT_SID, InboundStream, new_sid
from scripts.softphone import page_messages as pm
from scripts.softphone.incoming_call import (
    SIGNATURE_HEADER,
    CallFailed,
    StreamInstructions,
    Webhook,
    answer,
    incoming_call_form,
    post_stream_status,
    stream_status_form,
)
from scripts.softphone.playout import Playout

log = logging.getLogger("softphone")

FRAME_S = 0.02


@dataclass(frozen=True)
class Limits:
    """Every time and budget of a call, injectable so tests take milliseconds."""

    connect_timeout_s: float = 10.0  # the webhook's answer; the relay's upgrade
    close_timeout_s: float = 2.0  # how long a closing side waits for the other's close
    page_idle_s: float = 5.0  # a live page sends 50 frames a second: this much silence means it is gone
    burst_frames: int = 50  # how far (in 20 ms frames) a page's audio may run ahead of real time
    max_calls: int = 4  # calls at once, across pages (each one is a Realtime session)
    watchdog_s: float = 0.25


@dataclass(frozen=True)
class Line:
    """The phone line the gateway plays: the webhook to call, and who calls whom."""

    webhook: Webhook
    account_sid: str = TEST_ACCOUNT_SID
    caller: str = "+15550123"
    called: str = "+15550100"


class PageLink(Protocol):
    """The page's WebSocket, as the call uses it."""

    def send(self, message: str | bytes) -> None:
        """Send one message (raises OSError if the page is gone)."""

    def receive(self) -> str | bytes | None:
        """The next message; None once the page has closed."""

    def close(self) -> None:
        """Close, and let go of the socket soon even if the page never answers."""


class PhoneCall:
    """One call placed from the page. ``end()`` is the API for ending it from outside."""

    def __init__(self, page: PageLink, line: Line, limits: Limits,
                 on_end: Callable[[PhoneCall], None] = lambda call: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.page = page
        self.line = line
        self.limits = limits
        self.call_sid = new_sid("CA")
        self.stream = InboundStream(self.call_sid, account_sid=line.account_sid)
        self.playout = Playout()
        self.clock = clock
        self.created_at = clock()
        self.last_page_message_at = self.created_at
        self.started_at: float | None = None
        self.ended = Event()
        self.ended_by = ""
        self.end_reason = ""
        self.figures = {"frames_to_relay": 0, "frames_held_back": 0, "media_from_relay": 0,
                        "marks_echoed": 0, "clears": 0, "digits": 0}
        self._on_end = on_end
        self._instructions: StreamInstructions | None = None
        self._relay: websocket.WebSocket | None = None
        self._relay_lock = RLock()  # one message at a time, sequence numbers in order
        self._relay_closed = Event()
        self._relay_close: tuple[int | None, str] = (None, "")
        self._reader: gevent.Greenlet | None = None
        self._page_lock = RLock()
        self._notices: set[str] = set()
        self.background = Group()  # status callbacks still being posted

    # -- the call's life -------------------------------------------------------------------

    def run(self) -> None:
        """Place the call, then serve the page until the call ends (the page's greenlet)."""
        try:
            self._place()
        except CallFailed as exc:
            self.end(str(exc), by=pm.ENDED_BY_GATEWAY)
            return
        self._serve_page()

    def end(self, reason: str, *, by: str = pm.ENDED_BY_API) -> bool:
        """End the call now, saying why (shown on the page); False if it had already ended.

        The relay gets the caller's ``stop`` and a close, as when Twilio's call ends or is
        redirected away from the stream (``by`` tells the page who ended it).
        """
        if self.ended.is_set():
            return False
        self.ended.set()
        self.ended_by, self.end_reason = by, reason
        ws = self._relay
        if ws is not None:
            if not self._relay_closed.is_set():
                self._send_relay(self.stream.stop)
                with self._relay_lock, contextlib.suppress(OSError, websocket.WebSocketException):
                    ws.send_close()
                self._relay_closed.wait(self.limits.close_timeout_s)
            self._let_go(ws)
            if self._reader is not None and self._reader is not gevent.getcurrent():
                self._reader.join(self.limits.close_timeout_s)
            self._status("stream-stopped")
        shown = by in (pm.ENDED_BY_ASSISTANT, pm.ENDED_BY_GATEWAY) and self._instructions is not None
        afterwards = self._instructions.afterwards if shown and self._instructions else ()
        self._page_send(pm.ended(by, reason, afterwards))
        self.page.close()
        log.info("softphone.call_ended call_sid=%s by=%s %s", self.call_sid, by,
                 " ".join(f"{k}={v}" for k, v in self.figures.items()))
        self._on_end(self)
        return True

    def _place(self) -> None:
        webhook = self.line.webhook
        self._page_send(pm.progress("dialing", f"POST {webhook.voice_url}, signed as Twilio signs it",
                                    callSid=self.call_sid))
        form = incoming_call_form(self.call_sid, self.line.account_sid, self.line.caller, self.line.called)
        instructions = answer(webhook, form, self.limits.connect_timeout_s)
        self._instructions = instructions
        self._page_send(pm.progress("answered", f"TwiML: <Connect><Stream url=\"{instructions.url}\">"))
        signature = webhook.sign(instructions.url, {})
        try:
            ws = websocket.create_connection(
                instructions.url, timeout=self.limits.connect_timeout_s, suppress_origin=True,
                header=[f"{SIGNATURE_HEADER}: {signature}"])
        except websocket.WebSocketBadStatusException as exc:
            body = (exc.resp_body or b"").decode("utf-8", "replace").strip()[:200]
            raise CallFailed(f"the relay refused the stream: HTTP {exc.status_code} {body}") from None
        except (OSError, websocket.WebSocketException) as exc:
            raise CallFailed(f"could not open the stream to {instructions.url} ({exc}): "
                             f"is the relay running? Start the stack with make run") from None
        try:
            with self._relay_lock:
                if not self.ended.is_set():
                    ws.send(self.stream.connected())
                    ws.send(self.stream.start(instructions.parameters))
        except (OSError, websocket.WebSocketException) as exc:
            self._let_go(ws)
            raise CallFailed(f"the relay dropped the stream as it started ({exc})") from None
        if self.ended.is_set():  # ended while dialing (the page left, or the API)
            self._let_go(ws)
            return
        self._relay = ws
        self.started_at = self.clock()
        self._reader = gevent.spawn(self._read_relay, ws)
        self._status("stream-started")
        self._page_send(pm.progress("connected", f"streaming to {instructions.url}"))
        log.info("softphone.call_started call_sid=%s", self.call_sid)

    # -- the page's side -------------------------------------------------------------------

    def _serve_page(self) -> None:
        while not self.ended.is_set():
            try:
                message = self.page.receive()
                if message is None:
                    self.end("you hung up (the page closed)", by=pm.ENDED_BY_CALLER)
                    return
                parsed = pm.parse(message)
            except pm.PageProtocolError as exc:
                self.end(f"the page sent {exc}, so the gateway ended the call", by=pm.ENDED_BY_GATEWAY)
                return
            except OSError:
                self.end("the page's connection broke", by=pm.ENDED_BY_CALLER)
                return
            self.last_page_message_at = self.clock()
            self._on_page(parsed)

    def _on_page(self, message: pm.PageMessage) -> None:
        if isinstance(message, pm.CallerAudio):
            if self.started_at is None:
                return  # before ``start`` Twilio sends no media
            # 1 % of slack: a sound card's clock may run a little fast, and over an hour
            # that must not cost frames; a page that floods runs ahead a hundred times faster.
            allowed = self.limits.burst_frames + 1.01 * (self.clock() - self.started_at) / FRAME_S
            if self.figures["frames_to_relay"] >= allowed:
                self.figures["frames_held_back"] += 1
                self._notice("held_back", "the page sent audio faster than real time; "
                             "frames past the budget were dropped (Twilio never runs ahead)")
                return
            if self._send_relay(lambda: self.stream.media(message.frame)):
                self.figures["frames_to_relay"] += 1
        elif isinstance(message, pm.Played):
            self._echo(self.playout.played_up_to(message.samples))
        elif isinstance(message, pm.Digit):
            if self._send_relay(lambda: self.stream.dtmf(message.digit)):
                self.figures["digits"] += 1
        else:
            self.end("you hung up", by=pm.ENDED_BY_CALLER)

    def _page_send(self, message: str | bytes) -> None:
        with self._page_lock, contextlib.suppress(OSError, ValueError):
            self.page.send(message)

    def _notice(self, kind: str, text: str) -> None:
        """Tell the page once per kind (a misbehaving peer must not flood the timeline)."""
        if kind not in self._notices:
            self._notices.add(kind)
            log.warning("softphone.notice call_sid=%s kind=%s", self.call_sid, kind)
            self._page_send(pm.notice(text))

    # -- the relay's side ------------------------------------------------------------------

    def _read_relay(self, ws: websocket.WebSocket) -> None:
        while True:
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue  # a silent relay is dead air, not a hang-up
            except (OSError, websocket.WebSocketException):
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                self._relay_close = (code, data[2:].decode("utf-8", "replace"))
                break
            if opcode != websocket.ABNF.OPCODE_TEXT:
                self._notice("31950", "the relay sent a binary frame: Twilio ignores it (warning 31950)")
                continue
            self._on_relay(data)
        self._relay_closed.set()
        code, reason = self._relay_close
        said = f"code {code}" + (f", {reason}" if reason else "") if code is not None else "no close frame"
        self.end(f"the relay closed the stream ({said})", by=pm.ENDED_BY_ASSISTANT)

    def _on_relay(self, data: bytes) -> None:
        try:
            message: Any = json.loads(data)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self._notice("31951", "the relay sent a message that is not a JSON object: Twilio ignores it "
                         "(warning 31951)")
            return
        if message.get("streamSid") != self.stream.stream_sid:
            self._notice("31951-sid", "the relay sent a message with another streamSid: Twilio ignores it "
                         "(warning 31951)")
            return
        event = message.get("event")
        body = message.get(event) if isinstance(event, str) else None
        if event == "media" and isinstance(body, dict) and isinstance(body.get("payload"), str):
            try:
                audio = base64.b64decode(body["payload"], validate=True)
            except (binascii.Error, ValueError):
                self._notice("31951-b64", "the relay sent media that is not base64: Twilio ignores it")
                return
            self._on_audio(audio)
        elif event == "mark" and isinstance(body, dict) and isinstance(body.get("name"), str):
            self._echo(self.playout.mark(body["name"]))
        elif event == "clear":
            self.figures["clears"] += 1
            self._page_send(pm.clear(self.playout.buffered))
            self._echo(self.playout.clear())
        else:
            self._notice(f"31951-{event}", f"the relay sent an invalid {event!r} message: Twilio ignores it "
                         "(warning 31951)")

    def _on_audio(self, audio: bytes) -> None:
        if not audio:
            return
        self.figures["media_from_relay"] += 1
        self.playout.audio(len(audio))
        self._page_send(audio)
        if self.figures["media_from_relay"] == 1 and self.started_at is not None:
            self._page_send(pm.first_audio((self.clock() - self.started_at) * 1000))

    def _echo(self, names: list[str]) -> None:
        for name in names:
            if self._send_relay(functools.partial(self.stream.mark, name)):
                self.figures["marks_echoed"] += 1

    def _send_relay(self, build: Callable[[], str]) -> bool:
        """Build and send one message under the lock, so sequence numbers go out in order."""
        with self._relay_lock:
            ws = self._relay
            if ws is None or self._relay_closed.is_set():
                return False
            try:
                ws.send(build())
            except (OSError, websocket.WebSocketException):
                return False
            return True

    def _let_go(self, ws: websocket.WebSocket) -> None:
        """Release the relay's socket now, waking a reader blocked in ``recv``."""
        if ws.sock is not None:
            with contextlib.suppress(OSError):
                ws.sock.shutdown(socket.SHUT_RDWR)
        ws.shutdown()

    def _status(self, event: str) -> None:
        instructions = self._instructions
        if instructions is None or not instructions.status_callback:
            return
        form = stream_status_form(self.line.account_sid, self.call_sid, self.stream.stream_sid, event)
        self.background.spawn(self._post_status, instructions.status_callback, form)

    def _post_status(self, url: str, form: dict[str, str]) -> None:
        problem = post_stream_status(self.line.webhook, url, form, self.limits.connect_timeout_s)
        if problem is not None:
            log.warning("softphone.status_callback_failed call_sid=%s event=%s problem=%s",
                        self.call_sid, form["StreamEvent"], problem)
