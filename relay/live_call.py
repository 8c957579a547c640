"""LiveCall: one call's sockets, greenlets and callbacks around its CallBridge.

All of a call's I/O lives here.

How a call runs:

- the handler greenlet (gevent-websocket's, after the upgrade) starts reading Twilio and
  then only waits for the call to be over;
- the upstream greenlet pre-connects to OpenAI (dns, tcp, tls) while Twilio's ``start``
  is on its way, upgrades once the bridge says the stream token checked out, starts
  reading OpenAI and ends;
- from then on both sockets are read by callbacks from the event loop (relay.transport):
  each read goes straight through the bridge and out to the other socket, with no
  greenlet switch on the way (the per-frame path of every call);
- one watchdog greenlet per worker (CallRegistry) ticks every call's deadlines and
  drops peers that stopped reading or flood.

The first side to end ends the call: the bridge returns EndCall once, LiveCall sends a
close frame (with its code) to both peers, and aborts whatever has not closed within
``close_timeout_s``. Twilio then runs the TwiML after ``</Connect>`` (the spoken
fallback), so a failure is heard, not silent.

The broad ``except Exception`` at the top of each greenlet and each callback is the one
place unexpected errors are caught: logged with their traceback, then the call ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import gevent
from gevent.event import Event

from relay import openai_protocol as oai
from relay import twilio_protocol as tw
from relay.bridge import (
    Action,
    BridgeSettings,
    CallBridge,
    CallState,
    EndCall,
    OpenUpstream,
    SendOpenAI,
    SendTwilio,
)
from relay.errors import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    FrameError,
    OpenAIProtocolError,
    TwilioProtocolError,
    UpstreamError,
)
from relay.log import CallLog
from relay.replay_guard import ReplayGuard
from relay.transport import ConnectionClosed, Messages, WebSocketConnection
from relay.upstream import UpstreamConnector

log = logging.getLogger(__name__)

TICK_S = 0.25
# A peer that has not taken a single frame off us in this long is gone.
SEND_STALL_S = 5.0
# Twilio sends 50 media frames a second plus our marks' echoes (bursts after a clear).
FLOOD_WINDOW_S = 2.0
FLOOD_MESSAGES_PER_S = 1000
# A real Twilio never sends these; a peer that keeps doing it is not Twilio.
MAX_BAD_MESSAGES = 20

# Looked up once: these run for every frame of every call.
_parse_twilio = tw.parse
_parse_openai = oai.parse
_Media = tw.Media
_Mark = tw.Mark
_AudioDelta = oai.AudioDelta


class LiveCall:
    """One bridged call. ``run()`` blocks (in the Twilio handler greenlet) until it is over."""

    def __init__(
        self,
        twilio: WebSocketConnection,
        *,
        conn_id: str,
        settings: BridgeSettings,
        connector: UpstreamConnector,
        replay_guard: ReplayGuard,
        close_timeout_s: float,
        on_end: Callable[[LiveCall], None] | None = None,
    ) -> None:
        self.twilio = twilio
        self.connector = connector
        self.close_timeout_s = close_timeout_s
        self.log = CallLog(log, conn_id)
        self.bridge = CallBridge(
            settings,
            monotonic=time.monotonic,
            wall=time.time,
            replay_guard=replay_guard,
            log=self.log,
        )
        self.openai: WebSocketConnection | None = None
        self._on_end = on_end
        self._authorized = Event()
        self._over = Event()  # both sockets done: run() may return
        self._twilio_done = False
        self._upstream: gevent.Greenlet | None = None
        self._abort_timer: gevent.Greenlet | None = None
        self._messages_in = 0
        self._flood_mark = (time.monotonic(), 0)
        self._bad_messages = 0
        self.upstream_connected_ms: float | None = None

    @property
    def ended(self) -> bool:
        """True once the bridge has decided the call is over."""
        return self.bridge.state is CallState.ENDED

    # -- the call's life ------------------------------------------------------------------

    def run(self) -> None:
        """Bridge the call until both sides are closed."""
        self.log.info("call.accepted")
        self._upstream = gevent.spawn(self._upstream_main)
        self._upstream.link(lambda _greenlet: self._check_over())
        self.twilio.start_reading(self._on_twilio, self._on_twilio_end)
        try:
            self._over.wait()
        finally:
            self._teardown()

    def _check_over(self) -> None:
        upstream_done = self._upstream is not None and self._upstream.dead
        openai_done = self.openai is None or self.openai.ended
        if self._twilio_done and upstream_done and openai_done:
            self._over.set()

    # -- Twilio -> bridge (callbacks from the event loop) ----------------------------------

    def _on_twilio(self, batch: Messages) -> None:
        try:
            self._messages_in += len(batch)
            bridge = self.bridge
            appends: list[str] = []  # every caller frame of this read goes up in one write
            for message in batch:
                if type(message) is not str:
                    self._bad_message("binary", "twilio.binary_frame ignored=true")
                    continue
                try:
                    event = _parse_twilio(message)
                except TwilioProtocolError as exc:
                    ending = bridge.on_invalid_message(exc)
                    if ending:
                        self._execute(ending)  # nothing can be in `appends` before a start
                    else:
                        self._bad_message("invalid", "twilio.invalid_message detail=%.200s", exc)
                    continue
                kind = type(event)
                if kind is _Media:  # the hot path: no action objects
                    text = bridge.append_for(event)  # type: ignore[arg-type]
                    if text is not None:
                        appends.append(text)
                elif kind is _Mark:
                    bridge.on_mark(event)  # type: ignore[arg-type]
                else:
                    if appends:  # keep the order: audio so far goes first
                        self._send_openai(appends)
                        appends = []
                    actions = bridge.on_twilio(event)
                    if actions:
                        self._execute(actions)
            if appends:
                self._send_openai(appends)
        except Exception:
            self.log.exception("call.internal_error side=twilio")
            self._end(EndCall("internal_error", CLOSE_INTERNAL_ERROR))

    def _on_twilio_end(self, error: FrameError | None) -> None:
        try:
            if error is not None:
                self.log.warning("twilio.frame_error close_code=%d detail=%s", error.close_code, error)
                self._end(EndCall("twilio_protocol_error", error.close_code))
                self.twilio.abort()
            else:
                self._execute(self.bridge.on_twilio_closed())
        except Exception:
            self.log.exception("call.internal_error side=twilio")
        finally:
            self._twilio_done = True
            self._check_over()

    def _bad_message(self, kind: str, message: str, *args: object) -> None:
        self._bad_messages += 1
        if self._bad_messages == 1 or self._bad_messages == MAX_BAD_MESSAGES:
            self.log.warning(message + " count=%d", *args, self._bad_messages)
        if self._bad_messages >= MAX_BAD_MESSAGES and not self.ended:
            self.log.warning("call.too_many_bad_messages kind=%s", kind)
            self._end(EndCall("twilio_protocol_error", CLOSE_POLICY_VIOLATION))

    # -- OpenAI: connecting (a greenlet), then callbacks ------------------------------------

    def _upstream_main(self) -> None:
        try:
            self._connect_upstream()
        except Exception:
            self.log.exception("call.internal_error side=openai")
            self._end(EndCall("internal_error", CLOSE_INTERNAL_ERROR))

    def _connect_upstream(self) -> None:
        started = time.monotonic()
        try:
            pre = self.connector.preconnect()
        except UpstreamError as exc:
            self._execute(self.bridge.on_upstream_failed(exc))
            return
        try:
            self._authorized.wait()
            if self.ended:  # token refused, or the caller left: no Realtime session opens
                pre.sock.close()
                return
            conn = self.connector.handshake(pre)  # closes pre.sock itself if it fails
        except UpstreamError as exc:
            self._execute(self.bridge.on_upstream_failed(exc))
            return
        except BaseException:  # killed while waiting (GreenletExit): leave no socket behind
            pre.sock.close()
            raise
        self.openai = conn
        self.upstream_connected_ms = (time.monotonic() - started) * 1000
        timings = " ".join(f"{k}_ms={v:.1f}" for k, v in pre.timings_ms.items())
        self.log.info("openai.connected ms=%.1f %s", self.upstream_connected_ms, timings)
        conn.start_reading(self._on_openai, self._on_openai_end)
        if self.ended:  # the caller left during the handshake
            conn.close(CLOSE_NORMAL)
            self._schedule_abort()
            return
        self._execute(self.bridge.on_upstream_open())

    def _on_openai(self, batch: Messages) -> None:
        try:
            bridge = self.bridge
            audio: list[str] = []  # every media + mark of this read goes out in one write
            for message in batch:
                try:
                    event = _parse_openai(message)
                except OpenAIProtocolError as exc:
                    self.log.warning("openai.invalid_event detail=%s", exc)
                    continue
                if type(event) is _AudioDelta:  # the hot path: no action objects
                    texts = bridge.twilio_for(event)
                    if texts is not None:
                        audio += texts
                    continue
                if audio:  # keep the order: audio so far goes before what this event sends
                    self._send_twilio(audio)
                    audio = []
                actions = bridge.on_openai(event)
                if actions:
                    self._execute(actions)
            if audio:
                self._send_twilio(audio)
        except Exception:
            self.log.exception("call.internal_error side=openai")
            self._end(EndCall("internal_error", CLOSE_INTERNAL_ERROR))

    def _on_openai_end(self, error: FrameError | None) -> None:
        conn = self.openai
        try:
            if error is not None:
                self.log.error("openai.frame_error close_code=%d detail=%s", error.close_code, error)
                self._execute(self.bridge.on_upstream_closed(error.close_code, str(error)))
                if conn is not None:
                    conn.abort()
            elif conn is not None:
                self._execute(self.bridge.on_upstream_closed(conn.close_code, conn.close_reason))
        except Exception:
            self.log.exception("call.internal_error side=openai")
        finally:
            self._check_over()

    # -- performing the bridge's actions ----------------------------------------------------

    def _execute(self, actions: Iterable[Action]) -> None:
        to_twilio: list[str] | None = None
        to_openai: list[str] | None = None
        end: EndCall | None = None
        for action in actions:
            kind = type(action)
            if kind is SendTwilio:
                if to_twilio is None:
                    to_twilio = [action.text]  # type: ignore[union-attr]
                else:
                    to_twilio.append(action.text)  # type: ignore[union-attr]
            elif kind is SendOpenAI:
                if to_openai is None:
                    to_openai = [action.text]  # type: ignore[union-attr]
                else:
                    to_openai.append(action.text)  # type: ignore[union-attr]
            elif kind is OpenUpstream:
                self._authorized.set()
            elif kind is EndCall:
                end = action  # type: ignore[assignment]
        if to_twilio is not None:
            self._send_twilio(to_twilio)
        if to_openai is not None:
            self._send_openai(to_openai)
        if end is not None:
            self._end(end)

    def _send_twilio(self, texts: list[str]) -> None:
        try:
            self.twilio.send_texts(texts)
        except ConnectionClosed:
            if not self.ended:
                self._execute(self.bridge.on_twilio_closed())

    def _send_openai(self, texts: list[str]) -> None:
        conn = self.openai
        try:
            if conn is None:
                raise ConnectionClosed("not connected")
            conn.send_texts(texts)
        except ConnectionClosed as exc:
            if not self.ended:
                self._execute(self.bridge.on_upstream_closed(None, f"send failed: {exc}"))

    def _end(self, end: EndCall) -> None:
        """Close both sockets (once); abort them if the peers do not answer in time."""
        if self._abort_timer is not None:
            return
        if not self.ended:  # an ending decided here, not by the bridge (errors, floods)
            self.bridge.force_end(end.reason)
        self.log.info("call.ending reason=%s close_code=%d", end.reason, end.close_code)
        self._schedule_abort()
        self.twilio.close(end.close_code, end.reason)
        self._authorized.set()  # wakes an upstream greenlet still waiting to upgrade
        if self.openai is not None:
            self.openai.close(CLOSE_NORMAL)
        elif self._upstream is not None and gevent.getcurrent() is not self._upstream:
            self._upstream.kill(block=False)  # still pre-connecting: stop it now

    def _schedule_abort(self) -> None:
        if self._abort_timer is None:
            self._abort_timer = gevent.spawn_later(self.close_timeout_s, self._abort_all)

    def _abort_all(self) -> None:
        self.twilio.abort()
        if self.openai is not None:
            self.openai.abort()

    def _teardown(self) -> None:
        if not self.ended:
            self._end(EndCall("twilio_closed", CLOSE_NORMAL))
        if self._upstream is not None and not self._upstream.dead:
            self._upstream.kill(block=True, timeout=1.0)
        if self._abort_timer is not None:
            self._abort_timer.kill(block=False)
        self.twilio.release()
        if self.openai is not None:
            self.openai.release()
        summary = " ".join(f"{k}={v}" for k, v in self.bridge.summary().items())
        self.log.info("call.ended %s", summary)
        if self._on_end is not None:
            self._on_end(self)

    # -- watchdog ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Deadlines, stalled peers and floods; called by the registry's watchdog."""
        if self.ended:
            return
        self._execute(self.bridge.on_tick(now))
        for side, conn in (("twilio", self.twilio), ("openai", self.openai)):
            if conn is not None and conn.blocked_since and now - conn.blocked_since > SEND_STALL_S:
                self.log.warning("%s.send_stalled seconds=%.1f", side, now - conn.blocked_since)
                self._end(EndCall(f"{side}_stalled", CLOSE_INTERNAL_ERROR))
                self._abort_all()
                return
        since, count = self._flood_mark
        if now - since >= FLOOD_WINDOW_S:
            rate = (self._messages_in - count) / (now - since)
            self._flood_mark = (now, self._messages_in)
            if rate > FLOOD_MESSAGES_PER_S:
                self.log.warning("twilio.flood messages_per_s=%.0f", rate)
                self._end(EndCall("twilio_flood", CLOSE_POLICY_VIOLATION))


class CallRegistry:
    """The live calls of one worker process, and the watchdog that ticks them."""

    def __init__(self) -> None:
        self.calls: set[LiveCall] = set()
        self._watchdog: gevent.Greenlet | None = None
        self.idle = Event()
        self.idle.set()

    def add(self, call: LiveCall) -> None:
        """Track a new call (starts the watchdog on first use)."""
        self.calls.add(call)
        self.idle.clear()
        if self._watchdog is None or self._watchdog.dead:
            self._watchdog = gevent.spawn(self._watch)

    def remove(self, call: LiveCall) -> None:
        """Forget a finished call."""
        self.calls.discard(call)
        if not self.calls:
            self.idle.set()

    def _watch(self) -> None:
        while self.calls:
            gevent.sleep(TICK_S)
            now = time.monotonic()
            for call in list(self.calls):
                try:
                    call.tick(now)
                except Exception:
                    call.log.exception("call.internal_error side=watchdog")
                    call._end(EndCall("internal_error", CLOSE_INTERNAL_ERROR))
