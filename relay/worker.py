"""The relay's gunicorn worker: gunicorn's gevent (pywsgi) worker, plus shared call counting and a drain.

- ``wsgi_handler`` is relay.edge.RelayHandler: request heads within relay.request_limits,
  and the relay's own WebSocket upgrade (route, handshake, drain, ``X-Twilio-Signature``
  and capacity checked before the 101).
- The CallTable and the ReplayGuard are created when gunicorn's master imports this
  module, so every forked worker shares them: ``RELAY_MAX_CALLS`` and ``/healthz`` count
  the whole instance, and a CallSid claimed by one worker is refused by all of them.
- On SIGTERM the stock gevent worker closes its listener at once, so a draining relay
  would answer nothing (connection refused) instead of 503. This worker keeps serving:
  ``/healthz`` says 503 "draining", new upgrades get 503, live calls run on, and the
  worker exits when the last call ends or ``graceful_timeout`` runs out.

Only the standard library, gunicorn and gevent are imported here: this module is loaded
by the master, before any worker has monkey-patched.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import gevent
from gevent.pool import Pool
from gunicorn.http.wsgi import base_environ
from gunicorn.workers.ggevent import VERSION, GeventPyWSGIWorker

from relay.capacity import CallTable
from relay.replay_guard import ReplayGuard

CALL_TABLE = CallTable()
REPLAY_GUARD = ReplayGuard.shared()


class RelayWorker(GeventPyWSGIWorker):
    """gunicorn's gevent worker with the relay's handler, call table and drain."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Runs in the master, one worker at a time: no race for slots.
        self.call_slot = CALL_TABLE.claim_slot(self.age)
        self.call_counter: Any = None

    def load_wsgi(self) -> None:
        """Load the app (after the gevent patch) and give it the shared counter."""
        from relay.edge import RelayHandler  # imported after monkey-patching

        self.wsgi_handler = RelayHandler
        super().load_wsgi()
        self.call_counter = CALL_TABLE.counter(self.call_slot)
        self.wsgi.use_counter(self.call_counter)
        self.wsgi.replay_guard = REPLAY_GUARD
        # Everything loaded so far lives as long as the worker: keep it out of the garbage
        # collector's full passes, which then only walk what calls allocate.
        gc.freeze()

    def run(self) -> None:
        """Serve until SIGTERM, then drain calls, then stop."""
        servers = []
        for sock in self.sockets:
            sock.setblocking(1)
            pool = Pool(self.worker_connections)
            environ = base_environ(self.cfg)
            environ.update({"wsgi.multithread": True, "SERVER_SOFTWARE": VERSION})
            server = self.server_class(
                sock, application=self.wsgi, spawn=pool, log=self.log,
                handler_class=self.wsgi_handler, environ=environ,
            )
            server.start()
            servers.append(server)

        while self.alive:
            self.notify()
            gevent.sleep(1.0)

        app = self.wsgi
        app.begin_drain()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        registry = app.registry
        while registry.calls and time.monotonic() < deadline:
            self.notify()
            registry.idle.wait(timeout=1.0)
        if registry.calls:
            self.log.warning("Worker graceful timeout with %d live calls (pid:%s)",
                             len(registry.calls), self.pid)
        reports = app.reports
        if reports is not None and reports.pending():  # the last calls' records, within the drain
            while reports.pending() and time.monotonic() < deadline:
                self.notify()
                reports.wait(timeout_s=min(1.0, max(0.0, deadline - time.monotonic())))
            abandoned = reports.cancel()  # each is logged as undelivered, with its call's SID
            if abandoned:
                self.log.warning("Worker stopped with %d call reports undelivered (pid:%s)", abandoned, self.pid)
        for server in servers:
            server.close()
        for server in servers:
            server.stop(timeout=1)
        if self.call_counter is not None:
            self.call_counter.close()
