"""The relay's Prometheus metrics: what ``GET /metrics`` shows, correct across gunicorn's workers.

Counted once per call, tool call or failure, never per audio frame: the hot path pays
nothing. Under gunicorn every worker writes its values to files in a directory that
relay/gunicorn.conf.py creates before the workers fork (prometheus_client's multiprocess
mode, which must be chosen before the library is first imported), and ``exposition()``
sums them, so whichever worker answers reports the whole instance. In a single process
(tests, a relay without gunicorn) the values live in memory.

Labels stay bounded: end reasons are the relay's own fixed words, tools are the configured
names (a name the model invents is counted as ``(unknown)``), stages are the five of a
Realtime connection plus how a session can fail later.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST

CALLS_ACTIVE = Gauge("liveline_calls_active", "Calls bridged right now by this instance",
                     multiprocess_mode="livesum")
CALLS = Counter("liveline_calls", "Calls ended, by why they ended", ["end_reason"])
FIRST_AUDIO = Histogram("liveline_first_audio_seconds", "From the stream's start to the assistant's first audio",
                        buckets=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0))
UPSTREAM_FAILURES = Counter("liveline_upstream_failures", "Calls the Realtime API failed, by the stage it failed at",
                            ["stage"])
TOOL_CALLS = Counter("liveline_tool_calls", "Tool calls, by tool and outcome", ["tool", "outcome"])
TOOL_SECONDS = Histogram("liveline_tool_call_seconds", "How long tools took to answer", ["tool"],
                         buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0))
BARGE_INS = Counter("liveline_barge_ins", "Times a caller talked over the assistant")
REPORTS = Counter("liveline_call_reports", "End-of-call reports, by delivery outcome", ["outcome"])

# How a call's end reason names the Realtime stage that failed (None: not an upstream failure).
_UPSTREAM_STAGES = {
    "openai_dns_failed": "dns", "openai_tcp_failed": "tcp", "openai_tls_failed": "tls",
    "openai_handshake_failed": "handshake", "session_timeout": "session", "session_rejected": "session",
    "openai_closed": "closed", "openai_error": "error", "openai_stalled": "stalled",
}


def call_started() -> None:
    """A stream was accepted."""
    CALLS_ACTIVE.inc()


def call_ended(end_reason: str, first_audio_ms: float | None, barge_ins: int) -> None:
    """A call is over."""
    CALLS_ACTIVE.dec()
    CALLS.labels(end_reason).inc()
    if first_audio_ms is not None:
        FIRST_AUDIO.observe(first_audio_ms / 1000)
    if barge_ins:
        BARGE_INS.inc(barge_ins)
    stage = _UPSTREAM_STAGES.get(end_reason)
    if stage is not None:
        UPSTREAM_FAILURES.labels(stage).inc()


def tool_called(tool: str, outcome: str, duration_ms: float) -> None:
    """A tool answered, failed, or was refused its arguments."""
    TOOL_CALLS.labels(tool, outcome).inc()
    if outcome not in ("bad_arguments", "unknown_tool"):  # no request was made
        TOOL_SECONDS.labels(tool).observe(duration_ms / 1000)


def report_delivered(ok: bool) -> None:
    """An end-of-call report reached CALL_REPORT_URL, or could not."""
    REPORTS.labels("delivered" if ok else "undelivered").inc()


def shared_across_processes() -> bool:
    """True under gunicorn: values are kept in files every worker's /metrics sums."""
    return values.ValueClass is not values.MutexValue


def exposition() -> bytes:
    """The text ``GET /metrics`` answers with."""
    if shared_across_processes():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
