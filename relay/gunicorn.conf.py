"""gunicorn settings for the relay: ``gunicorn -c relay/gunicorn.conf.py relay.wsgi:app``.

Every value comes from RelayConfig, so a bad environment stops gunicorn's master before
it forks a single worker, with every problem listed.

Shutdown chain on a deploy (docs/aws-deployment.md#the-relay-on-a-vm; checked by tests/infra): the load balancer drains
a target for ``deregistration_delay``; systemd sends SIGTERM and gunicorn lets live calls
finish for up to ``graceful_timeout``; systemd's ``TimeoutStopSec`` comes last. So:
max call length < deregistration delay <= graceful_timeout < TimeoutStopSec.
"""

import os
import shutil
import sys
import tempfile

# gunicorn executes this file before the application's directory is importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from relay.config import RelayConfig  # noqa: E402

_config = RelayConfig.from_env(os.environ)

# GET /metrics sums every worker's values: prometheus_client keeps them in files in this
# directory, a fresh one per relay start. It must be in the environment before any worker
# imports the library (the workers fork from this process and inherit it).
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="liveline-metrics-")


def child_exit(server: object, worker: object) -> None:
    """A worker is gone: its live-call gauge no longer counts (its counters still do)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    """The relay is stopping: its metrics files go with it."""
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)

bind = [_config.relay_bind]
workers = _config.workers
# gunicorn's gevent worker, with the relay's handler (relay.edge) and a drain that keeps
# answering /healthz (503) until the last call has ended.
worker_class = "relay.worker.RelayWorker"
# Greenlets per worker: every live call holds one; health checks and probes a few more.
worker_connections = _config.max_calls + 100
graceful_timeout = _config.graceful_timeout_s
# Worker heartbeat: the gevent worker notifies every second even while calls run.
timeout = 30
# gunicorn 27 opens a control socket at one fixed default path for every instance; the
# relay does not use it, and two instances on one machine would collide on it.
control_socket_disable = True
proc_name = "liveline-relay"
errorlog = "-"
loglevel = _config.log_level.lower()
