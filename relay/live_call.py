"""LiveCall: one call's sockets, greenlets and callbacks around its CallBridge.

All of a call's I/O lives here, and none of its decisions: every event goes to the bridge
(relay/bridge.py) and LiveCall performs the Actions it returns (relay/actions.py).

How a call runs:

- the handler greenlet (relay/edge.py's, after the upgrade) starts reading Twilio and
  then only waits for the call to be over;
- the upstream greenlet pre-connects to OpenAI (dns, tcp, tls) while Twilio's ``start``
  is on its way, upgrades once the bridge says the stream token checked out (OpenUpstream),
  starts reading OpenAI and ends;
- from then on both sockets are read by callbacks from the event loop (relay.transport):
  each read goes to the bridge as one batch and its actions go out at once, with no
  greenlet switch on the way (the per-frame path of every call);
- one watchdog greenlet per worker (CallRegistry) ticks every call: the bridge judges
  deadlines, stalled peers and floods from the clock and the sockets' send queues;
- effects that need I/O of their own (a tool's HTTP request, a hang-up or transfer through
  Twilio's REST API) each run in a greenlet of their own, so audio keeps flowing both ways
  meanwhile, and their results go back to the bridge (``tool_done``, ``update_done``).

Endings: the bridge returns EndCall once; LiveCall sends a close frame (with its code) to
both peers and aborts whatever has not closed within ``Limits.close_timeout_s`` (at once
for the sides the EndCall names). Twilio then runs the TwiML after ``</Connect>`` (the
spoken fallback), so a failure is heard, not silent.

The broad ``except Exception`` at the top of each greenlet and each callback is the one
place unexpected errors are caught: logged with their traceback, then the bridge ends
the call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event

from relay import metrics
from relay.actions import Actions, EndCall, OpenUpstream, RunTool, ToolRefused, UpdateCall
from relay.bridge import CallBridge
from relay.call_settings import BridgeSettings
from relay.errors import CLOSE_NORMAL, FrameError, UpstreamError
from relay.limits import Limits
from relay.log import CallLog
from relay.replay_guard import ReplayGuard
from relay.report_delivery import ReportDelivery
from relay.tools import ToolRunner
from relay.transport import ConnectionClosed, Messages, WebSocketConnection
from relay.twilio_rest import TwilioRest
from relay.upstream import UpstreamConnector

log = logging.getLogger(__name__)


class LiveCall:
    """One bridged call. ``run()`` blocks (in the Twilio handler greenlet) until it is over."""

    def __init__(
        self,
        twilio: WebSocketConnection,
        *,
        conn_id: str,
        settings: BridgeSettings,
        limits: Limits,
        connector: UpstreamConnector,
        replay_guard: ReplayGuard,
        twilio_rest: TwilioRest,
        tool_runner: ToolRunner | None = None,
        reports: ReportDelivery | None = None,
        on_end: Callable[[LiveCall], None] | None = None,
    ) -> None:
        self.twilio = twilio
        self.connector = connector
        self.twilio_rest = twilio_rest
        self.tool_runner = tool_runner
        self.reports = reports
        self.limits = limits
        self.log = CallLog(log, conn_id)
        self.bridge = CallBridge(
            settings, limits, monotonic=time.monotonic, wall=time.time, replay_guard=replay_guard, log=self.log,
        )
        self.openai: WebSocketConnection | None = None
        self._on_end = on_end
        self._authorized = Event()
        self._over = Event()  # both sockets done: run() may return
        self._twilio_done = False
        self._upstream: gevent.Greenlet | None = None
        self._abort_timer: gevent.Greenlet | None = None
        self._workers: set[gevent.Greenlet] = set()  # tools and REST requests in flight
        self.upstream_connected_ms: float | None = None

    @property
    def ended(self) -> bool:
        """True once the bridge has decided the call is over."""
        return self.bridge.ended

    # -- the call's life ------------------------------------------------------------------

    def run(self) -> None:
        """Bridge the call until both sides are closed."""
        self.log.info("call.accepted")
        metrics.call_started()
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

    def _guarded(self, side: str, work: Callable[[], Actions]) -> None:
        """Perform what the bridge answers to ``work``; our own failure ends the call."""
        try:
            self._perform(work())
        except Exception:
            self.log.exception("call.internal_error side=%s", side)
            self._perform(self.bridge.internal_error())

    # -- callbacks from the event loop -------------------------------------------------------

    def _on_twilio(self, batch: Messages) -> None:
        self._guarded("twilio", lambda: self.bridge.twilio_messages(batch))

    def _on_twilio_end(self, error: FrameError | None) -> None:
        try:
            self._guarded("twilio", lambda: self.bridge.twilio_closed(error))
        finally:
            self._twilio_done = True
            self._check_over()

    def _on_openai(self, batch: Messages) -> None:
        self._guarded("openai", lambda: self.bridge.openai_messages(batch))

    def _on_openai_end(self, error: FrameError | None) -> None:
        conn = self.openai
        try:
            if conn is not None:
                self._guarded("openai", lambda: self.bridge.upstream_closed(conn.close_code, conn.close_reason, error))
        finally:
            self._check_over()

    def tick(self, now: float) -> None:
        """The watchdog's turn for this call."""
        openai = self.openai
        self._guarded("watchdog", lambda: self.bridge.tick(
            now, self.twilio.blocked_since, openai.blocked_since if openai is not None else 0.0))

    # -- OpenAI: connecting (a greenlet) -----------------------------------------------------

    def _upstream_main(self) -> None:
        self._guarded("openai", self._connect_upstream)

    def _connect_upstream(self) -> Actions:
        started = time.monotonic()
        try:
            pre = self.connector.preconnect()
        except UpstreamError as exc:
            return self.bridge.upstream_failed(exc)
        try:
            self._authorized.wait()
            if self.ended:  # token refused, or the caller left: no Realtime session opens
                pre.sock.close()
                return Actions()
            conn = self.connector.handshake(pre)  # closes pre.sock itself if it fails
        except UpstreamError as exc:
            return self.bridge.upstream_failed(exc)
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
            return Actions()
        return self.bridge.upstream_open()

    # -- performing the bridge's actions ----------------------------------------------------

    def _perform(self, actions: Actions) -> None:
        if actions.to_twilio:
            self._send("twilio", self.twilio, actions.to_twilio)
        if actions.to_openai:
            self._send("openai", self.openai, actions.to_openai)
        for effect in actions.effects:
            kind = type(effect)
            if kind is OpenUpstream:
                self._authorized.set()
            elif kind is RunTool:
                self._spawn("tool", self._run_tool, effect)
            elif kind is UpdateCall:
                self._spawn("twilio_rest", self._update_call, effect)
            elif kind is ToolRefused:
                metrics.tool_called(effect.tool, effect.outcome, 0.0)  # type: ignore[union-attr]
        if actions.end is not None:
            self._end(actions.end)

    def _spawn(self, side: str, work: Callable[[Any], Actions], effect: Any) -> None:
        worker = gevent.spawn(self._guarded, side, lambda: work(effect))
        self._workers.add(worker)
        worker.link(self._workers.discard)

    def _run_tool(self, effect: RunTool) -> Actions:
        bridge = self.bridge
        if self.tool_runner is None or bridge.persona is None:  # no RELAY_SIGNING_SECRET: config forbids tools
            raise RuntimeError("a tool was called with no tool runner")
        result = self.tool_runner.run(bridge.persona.assistant, effect.tool, call_sid=bridge.call_sid,
                                      call_id=effect.call_id, arguments_json=effect.arguments_json, call_log=self.log)
        metrics.tool_called(result.tool, result.outcome, result.duration_ms)
        return bridge.tool_done(effect.call_id, result)

    def _update_call(self, effect: UpdateCall) -> Actions:
        rest = self.twilio_rest
        if effect.destination is None:
            result = rest.complete(effect.account_sid, effect.call_sid, call_log=self.log)
        else:
            result = rest.transfer(effect.account_sid, effect.call_sid, effect.destination, call_log=self.log)
        return self.bridge.update_done(result.ok)

    def _send(self, side: str, conn: WebSocketConnection | None, texts: list[str]) -> None:
        try:
            if conn is None:
                raise ConnectionClosed("not connected")
            conn.send_texts(texts)
        except ConnectionClosed:
            self._perform(self.bridge.send_failed(side, overflow=conn is not None and conn.overflowed))

    def _end(self, end: EndCall) -> None:
        """Close both sockets (once); abort them if the peers do not answer in time."""
        if self._abort_timer is not None:
            return
        self.log.info("call.ending reason=%s close_code=%d", end.reason, end.close_code)
        self._schedule_abort()
        self.twilio.close(end.close_code, end.reason)
        self._authorized.set()  # wakes an upstream greenlet still waiting to upgrade
        if self.openai is not None:
            self.openai.close(CLOSE_NORMAL)
        elif self._upstream is not None and gevent.getcurrent() is not self._upstream:
            self._upstream.kill(block=False)  # still pre-connecting: stop it now
        if "twilio" in end.abort:
            self.twilio.abort()
        if "openai" in end.abort and self.openai is not None:
            self.openai.abort()

    def _schedule_abort(self) -> None:
        if self._abort_timer is None:
            self._abort_timer = gevent.spawn_later(self.limits.close_timeout_s, self._abort_all)

    def _abort_all(self) -> None:
        self.twilio.abort()
        if self.openai is not None:
            self.openai.abort()

    def _teardown(self) -> None:
        if not self.ended:
            self._perform(self.bridge.twilio_closed())
        if self._upstream is not None and not self._upstream.dead:
            self._upstream.kill(block=True, timeout=1.0)
        if self._workers:  # a tool or REST request still running for a call that is over
            gevent.killall(list(self._workers), block=True, timeout=1.0)
        if self._abort_timer is not None:
            self._abort_timer.kill(block=False)
        self.twilio.release()
        if self.openai is not None:
            self.openai.release()
        bridge = self.bridge
        summary = " ".join(f"{k}={v}" for k, v in bridge.summary().items())
        self.log.info("call.ended %s", summary)
        metrics.call_ended(bridge.end_reason or "unknown", bridge.first_audio_ms, bridge.barge_ins)
        report = bridge.report()
        if report is not None and self.reports is not None:
            self.reports.submit(bridge.call_sid, report)  # in the background: the teardown never waits
        if self._on_end is not None:
            self._on_end(self)


class CallRegistry:
    """The live calls of one worker process, and the watchdog that ticks them."""

    def __init__(self, tick_s: float) -> None:
        self.calls: set[LiveCall] = set()
        self.tick_s = tick_s
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
            gevent.sleep(self.tick_s)
            now = time.monotonic()
            for call in list(self.calls):
                call.tick(now)
