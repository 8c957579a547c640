"""What a connection may cost the relay before it is a call: time, bytes, greenlets.

The relay binds ``0.0.0.0``; a connection costs a greenlet, a descriptor and whatever it
sends, long before anything is known about the sender. Without limits, 200 connections that
never finished their request head held every greenlet of a worker (the pool is sized for
calls, plus 100) and starved ``/healthz``, and 20 that sent megabytes of header lines grew
a worker by 125 MB (``http.client`` accepts 100 lines of 64 KiB each). So, per connection:

- ``header_timeout_s``: the head (request line and headers) must be complete this long after
  the connection opened (on a kept-alive connection: after the next request's first byte),
  or the connection is closed. Twilio's upgrade reaches the relay through the load balancer
  in one segment, milliseconds after the connect; 10 s spares any real client on a slow link.
- ``max_header_bytes``, ``max_header_lines``: a bigger head gets ``431`` and is closed.
  Twilio's upgrade, with the load balancer's ``X-Forwarded-*`` and ``X-Amzn-Trace-Id``, is
  under 1 KiB: 16 KiB is sixteen times that. 100 lines is ``http.client``'s own limit (past
  it, it raises an error gevent reports with a traceback instead of a plain 400).
- ``keepalive_idle_s``: how long a connection may wait for its next request. 0 (the default):
  every plain answer says ``Connection: close``. The relay serves one long upgrade per call;
  its plain answers (probes, 426, 404) gain nothing from keep-alive, and a server that closes
  an idle connection the load balancer may be reusing makes the load balancer answer 502:
  AWS asks targets to keep idle connections longer than the load balancer's idle timeout
  (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html#connection-idle-timeout),
  3600 s here, which would defend nothing. Closing after each answer is announced, so there
  is no race.
- ``max_pending_heads``: per worker, connections waiting for or reading a head. One more
  lets the oldest go, so slow heads can never hold the greenlets that ``/healthz`` and calls
  need: 64 is below the 100 spare greenlets ``relay/gunicorn.conf.py`` gives each worker
  beyond ``RELAY_MAX_CALLS``, and a real head (one segment) is never the oldest for long.

And two for the requests themselves: ``diagnostic_interval_s`` (``/diagnostic/openai`` opens
a Realtime session: at most one every 10 s per instance) and ``log_burst``/``log_per_s``
(relay.log_limit). Every value is injectable (``create_app(config, request_limits=...)``) so tests
take milliseconds.

Pure: the standard library only. ``read_head`` reads through the ``readline`` it is given;
the deadline around it is the caller's (gevent's Timeout, in relay.server).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from relay import log_limit


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Limits on connections and plain requests; see the module docstring for each value."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 16 * 1024
    max_header_lines: int = 100
    keepalive_idle_s: float = 0.0
    max_pending_heads: int = 64
    diagnostic_interval_s: float = 10.0
    log_burst: int = log_limit.DEFAULT_BURST
    log_per_s: float = log_limit.DEFAULT_PER_S


class HeadTooLarge(Exception):
    """The request head passed ``max_header_bytes`` or ``max_header_lines``."""


class HeadIncomplete(Exception):
    """The peer stopped sending (closed, or was let go) in the middle of a request head."""


_BLANK = (b"\r\n", b"\n")


def read_head(readline: Callable[[int], bytes], limits: RequestLimits) -> list[bytes] | None:
    """The request line and header lines, through the blank line that ends them.

    None when the peer closed before sending a byte. Raises HeadTooLarge, or HeadIncomplete
    when the stream ends mid-head. Never reads past the blank line (a pipelined request or a
    WebSocket frame sent right after the upgrade stays in the reader's buffer), and never
    holds more than ``max_header_bytes``.
    """
    lines: list[bytes] = []
    budget = limits.max_header_bytes
    while True:
        line = readline(budget + 1)
        if not line:
            if lines:
                raise HeadIncomplete("the peer stopped in the middle of its request head")
            return None
        budget -= len(line)
        if budget < 0:
            raise HeadTooLarge(f"request head over {limits.max_header_bytes} bytes")
        if not line.endswith(b"\n"):  # readline stops short of a newline only at the end of the stream
            raise HeadIncomplete("the peer stopped in the middle of a line")
        if not lines and line in _BLANK:
            continue  # RFC 9112 section 2.2: ignore an empty line before the request line
        if lines and line in _BLANK:
            lines.append(line)
            return lines
        lines.append(line)
        if len(lines) - 1 > limits.max_header_lines:
            raise HeadTooLarge(f"more than {limits.max_header_lines} header lines")


class Evictable(Protocol):
    """A connection that can be let go while it waits for a request head."""

    def evict(self) -> None:
        """Stop waiting: close the connection's reading side."""
        ...


class PendingHeads:
    """Connections waiting for or reading a request head; past ``limit``, the oldest is let go."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiting: dict[Evictable, None] = {}  # insertion order: oldest first

    def __len__(self) -> int:
        return len(self._waiting)

    def enter(self, connection: Evictable) -> None:
        """``connection`` starts waiting for a head (evicting the oldest if over the limit)."""
        self._waiting[connection] = None
        while len(self._waiting) > self.limit:
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            oldest.evict()

    def leave(self, connection: Evictable) -> None:
        """``connection`` has its head (or is gone)."""
        self._waiting.pop(connection, None)
