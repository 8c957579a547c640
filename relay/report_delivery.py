"""Delivering each call's report to CALL_REPORT_URL, without ever holding up a call.

``submit`` encodes the report and returns at once; a greenlet POSTs it as JSON, signed like
tool requests (``X-Liveline-Signature``, a fresh timestamp on every attempt), and retries
timeouts, connection failures and 5xx answers with exponential backoff (with jitter, so the
reports of a restarted fleet do not retry in step), bounded in attempts and in total time.
A 4xx answer is the receiver refusing this report: it is not retried. A receiver may get a
report twice (an answer lost on the way back): ``call_sid`` identifies it.

A draining worker calls ``wait(timeout)`` within its drain for what is still pending, then
``cancel()`` for the rest. What could not be delivered is logged with the call's SID only:
a report holds the transcript, which never goes to the logs.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.event import Event

from relay.outbound import HttpClient, OutboundError
from relay.signing import SIGNATURE_HEADER, signature_header

log = logging.getLogger(__name__)

_RETRIED_KINDS = frozenset({"timeout", "connect", "dns", "protocol"})


@dataclass(frozen=True, slots=True)
class DeliveryLimits:
    """How hard to try: attempts, the whole delivery's time, the backoff between attempts."""

    attempts: int = 6
    total_s: float = 120.0
    first_backoff_s: float = 1.0  # then 2, 4, 8... s, each cut to between half and all of it
    max_backoff_s: float = 30.0
    attempt_timeout_s: float = 10.0
    max_answer_bytes: int = 64 * 1024  # the receiver's answer is not used; a bigger one still counts


class ReportDelivery:
    """Posts reports to ``url`` in the background; ``pending``/``wait``/``cancel`` for draining."""

    def __init__(self, url: str, signing_secret: str, *, limits: DeliveryLimits = DeliveryLimits(),
                 client: HttpClient | None = None, wall_clock: Callable[[], float] = time.time,
                 jitter: Callable[[], float] = random.random,
                 on_outcome: Callable[[bool], None] | None = None) -> None:
        self.url = url
        self._on_outcome = on_outcome  # told once per report: delivered (True) or given up on
        self._secret = signing_secret
        self.limits = limits
        self._client = client or HttpClient()
        self._wall_clock = wall_clock
        self._jitter = jitter
        self._running: set[gevent.Greenlet[Any, None]] = set()
        self._idle = Event()
        self._idle.set()

    def submit(self, call_sid: str, report: Mapping[str, Any]) -> None:
        """Deliver ``report`` (JSON-serialisable) in the background; returns at once."""
        body = json.dumps(report, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        greenlet: gevent.Greenlet[Any, None] = gevent.Greenlet(self._deliver, call_sid, body)
        self._running.add(greenlet)
        self._idle.clear()
        greenlet.link(self._finished)
        greenlet.start()

    def pending(self) -> int:
        """Reports not yet delivered or given up on."""
        return len(self._running)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until nothing is pending (True), or ``timeout_s`` passes (False)."""
        return bool(self._idle.wait(timeout_s))

    def cancel(self) -> int:
        """Give up on every pending report (each is logged as undelivered); how many there were."""
        running = list(self._running)
        gevent.killall(running, block=True, timeout=1)
        for greenlet in running:  # links run on the hub's next turn: count them out now
            self._finished(greenlet)
        return len(running)

    def _finished(self, greenlet: gevent.Greenlet[Any, None]) -> None:
        self._running.discard(greenlet)
        if not self._running:
            self._idle.set()

    def _deliver(self, call_sid: str, body: bytes) -> None:
        limits = self.limits
        started = time.monotonic()
        deadline = started + limits.total_s
        attempt, last = 0, ""
        try:
            while True:
                attempt += 1
                # No attempt runs past the deadline (a little time is left for the first one).
                timeout_s = max(min(limits.attempt_timeout_s, deadline - time.monotonic()), 0.01)
                status, last, retry = self._attempt(body, timeout_s)
                if not last:
                    log.info("report.delivered call_sid=%s attempts=%d status=%s duration_ms=%.0f",
                             call_sid, attempt, status, (time.monotonic() - started) * 1000)
                    return
                backoff = min(limits.max_backoff_s, limits.first_backoff_s * 2 ** (attempt - 1))
                backoff *= 0.5 + self._jitter() / 2
                if not retry or attempt >= limits.attempts or time.monotonic() + backoff >= deadline:
                    return
                log.info("report.retry call_sid=%s attempt=%d error=%s backoff_s=%.2f",
                         call_sid, attempt, last, backoff)
                gevent.sleep(backoff)
        except gevent.GreenletExit:
            last = "stopped before it was delivered (the worker is shutting down)"
            raise
        finally:
            if last:
                log.error("report.undelivered call_sid=%s attempts=%d error=%s", call_sid, attempt, last)
            if self._on_outcome is not None:
                self._on_outcome(not last)

    def _attempt(self, body: bytes, timeout_s: float) -> tuple[int | None, str, bool]:
        """(status, what went wrong or "" once delivered, whether to try again)."""
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: signature_header(self._secret, body, int(self._wall_clock()))}
        try:
            response = self._client.post(self.url, body, headers, timeout_s=timeout_s,
                                         max_body_bytes=self.limits.max_answer_bytes)
        except OutboundError as exc:
            if exc.kind == "too_large" and exc.status is not None:
                return exc.status, "", False  # a 2xx with a long answer: delivered all the same
            if exc.kind == "status" and exc.status is not None:
                return exc.status, f"HTTP {exc.status}", exc.status >= 500
            return None, exc.kind, exc.kind in _RETRIED_KINDS
        return response.status, "", False
