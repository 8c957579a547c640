"""The benchmark's measuring, kept pure so it can be tested.

Frame tags, latency percentiles, loss, and the table.

Every audio frame the load generator or the stand-in model sends carries a tag in its
first bytes: who sent it, its sequence number, and when (CLOCK_MONOTONIC, which every
process on one Linux machine shares). The relay passes audio through untouched, so the
receiver reads the tag back and measures latency and loss through the relay with no help
from the relay itself.
"""

from __future__ import annotations

import binascii
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
FRAME_S = 0.02
# Calls are spread over this many slots of each 20 ms period, as independent calls are
# (each call's frames are 20 ms apart; different calls are not in step).
SLOTS = 10
MAGIC = b"LLB1"
# magic, call number, sequence number, sent at (ns), padding: 24 bytes, a multiple of 3, so
# the tag's base64 (32 characters) can be joined to the silence's, computed once.
_TAG = struct.Struct("!4sIIQ4x")
_TAIL_B64 = binascii.b2a_base64(b"\xff" * (FRAME_BYTES - _TAG.size), newline=False).decode("ascii")


def tagged_frame(call: int, seq: int, sent_ns: int) -> str:
    """A 20 ms frame, base64 as on the wire, carrying (call, seq, sent_ns)."""
    return binascii.b2a_base64(_TAG.pack(MAGIC, call, seq, sent_ns), newline=False).decode("ascii") + _TAIL_B64


def read_tag(payload_b64: str) -> tuple[int, int, int] | None:
    """(call, seq, sent_ns) from a tagged frame's base64, or None if it carries no tag."""
    try:
        head = binascii.a2b_base64(payload_b64[:32])  # 32 base64 characters = the 24-byte tag
    except binascii.Error:
        return None
    if len(head) < _TAG.size or head[:4] != MAGIC:
        return None
    _magic, call, seq, sent_ns = _TAG.unpack(head)
    return call, seq, sent_ns


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = min(max(math.ceil(fraction * len(sorted_values) - 1e-9), 1), len(sorted_values))
    return sorted_values[rank - 1]


@dataclass
class Direction:
    """Latency and loss of one direction (caller->model or model->caller) over a run."""

    latencies_ms: list[float] = field(default_factory=list)
    sent: int = 0
    received: int = 0

    def add(self, latencies_ms: Iterable[float]) -> None:
        """Fold in latencies measured by one receiver."""
        self.latencies_ms.extend(latencies_ms)

    @property
    def lost(self) -> int:
        """Frames sent but never received."""
        return max(self.sent - self.received, 0)

    def summary(self) -> dict[str, float | int]:
        """p50/p99/max in ms, and counts."""
        values = sorted(self.latencies_ms)
        return {
            "p50_ms": round(percentile(values, 0.50), 2),
            "p99_ms": round(percentile(values, 0.99), 2),
            "max_ms": round(values[-1], 2) if values else 0.0,
            "sent": self.sent,
            "received": self.received,
            "lost": self.lost,
        }


# (key, title, width, format): latencies in ms, "up" = caller -> model, "dn" = model -> caller.
COLUMNS = [
    ("calls", "N", 5, "{}"),
    ("up_p50", "up p50", 7, "{:.2f}"),
    ("up_p99", "up p99", 7, "{:.2f}"),
    ("up_max", "up max", 7, "{:.1f}"),
    ("down_p50", "dn p50", 7, "{:.2f}"),
    ("down_p99", "dn p99", 7, "{:.2f}"),
    ("down_max", "dn max", 7, "{:.1f}"),
    ("lost", "lost", 6, "{}"),
    ("failed", "failed", 6, "{}"),
    ("relay_cpu_pct", "cpu %", 6, "{:.1f}"),
    ("cpu_ms_per_call_s", "cpu ms/call-s", 13, "{:.2f}"),
    ("rss_kib_per_call", "KiB/call", 8, "{:.0f}"),
    ("first_audio_ms", "1st audio", 9, "{:.1f}"),
    ("loadgen_cpu_pct", "load core %", 11, "{:.1f}"),
    ("loadgen_lag_p99", "gen lag p99", 11, "{:.2f}"),
]


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The benchmark table: one row per load step, the verdict last."""
    header = "  ".join(title.rjust(width) for _key, title, width, _fmt in COLUMNS) + "  holds the line"
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = []
        for key, _title, width, fmt in COLUMNS:
            value = row.get(key)
            cells.append(("n/a" if value is None else fmt.format(value)).rjust(width))
        lines.append("  ".join(cells) + "  " + str(row.get("verdict", "")))
    return "\n".join(lines)


P99_LIMIT_MS = 10.0  # the capacity line: p99 through the relay, both ways
CPU_LIMIT_MS = 5.0  # CPU-ms per call-second, at TARGET_CALLS
RSS_LIMIT_KIB = 1024.0  # resident memory per concurrent call, at TARGET_CALLS
FIRST_AUDIO_LIMIT_MS = 20.0  # start -> first audio, beyond the model's own time
TARGET_CALLS = 150  # calls per core the relay must hold (issue 7)


def verdict(row: dict[str, Any]) -> str:
    """Whether a step holds the capacity line: p99 < 10 ms both ways, no loss, no failure."""
    misses = []
    if max(row.get("up_p99") or 0, row.get("down_p99") or 0) >= P99_LIMIT_MS:
        misses.append("p99")
    if row.get("lost"):
        misses.append("loss")
    if row.get("failed"):
        misses.append("failed calls")
    return "yes" if not misses else "no: " + ", ".join(misses)


def held(row: dict[str, Any]) -> bool:
    """Whether one run of a step held the capacity line."""
    return str(row.get("verdict", "")).startswith("yes")


def by_step(rows: Sequence[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Runs grouped by their number of calls (``--repeat`` runs each step several times)."""
    steps: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        steps.setdefault(row["calls"], []).append(row)
    return steps


def step_held(runs: Sequence[dict[str, Any]]) -> bool:
    """A step holds the line when more than half of its runs do (one run: that run)."""
    return 2 * sum(held(run) for run in runs) > len(runs)


def capacity(rows: Sequence[dict[str, Any]]) -> int:
    """The largest step that held the line (0 if none did)."""
    return max((n for n, runs in by_step(rows).items() if step_held(runs)), default=0)


def _figure(runs: Sequence[dict[str, Any]], key: str) -> tuple[float, str] | None:
    """The median of ``key`` over ``runs``, and the spread to print after it (none for one run)."""
    values = [run[key] for run in runs if run.get(key) is not None]
    if not values:
        return None
    if len(values) == 1:
        return values[0], ""
    return median(values), f" (median of {len(values)} runs; {min(values):g}-{max(values):g})"


def targets(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Lines saying which of issue 7's targets the run met, and with what figures.

    With several runs per step, a step holds the capacity line when most of its runs do,
    and each figure is the median of the runs, with its range.
    """
    steps = by_step(rows)
    most = capacity(rows)
    runs_at_capacity = steps.get(most, [])
    how_often = (f" in {sum(held(run) for run in runs_at_capacity)} of {len(runs_at_capacity)} runs"
                 if len(runs_at_capacity) > 1 else "")
    lines = [f"capacity: {most} concurrent calls hold p99 < {P99_LIMIT_MS:g} ms both ways with no loss "
             f"and no failed call{how_often} (target >= {TARGET_CALLS}: "
             f"{'met' if most >= TARGET_CALLS else 'NOT met'})"]
    n = next((n for n in steps if n >= TARGET_CALLS), None)
    if n is None:
        lines.append(f"no step ran {TARGET_CALLS} calls or more: CPU, memory and first-audio targets not measured")
        return lines
    runs = steps[n]
    if len(runs) > 1 and n != most:
        lines.append(f"at {n} calls: the line held in {sum(held(run) for run in runs)} of {len(runs)} runs")
    cpu = _figure(runs, "cpu_ms_per_call_s")
    if cpu is not None:
        lines.append(f"at {n} calls: {cpu[0]:.2f} CPU-ms per call-second{cpu[1]} (target <= {CPU_LIMIT_MS:g}: "
                     f"{'met' if cpu[0] <= CPU_LIMIT_MS else 'NOT met'})")
    rss = _figure(runs, "rss_kib_per_call")
    if rss is not None:
        lines.append(f"at {n} calls: {rss[0]:.0f} KiB resident per call{rss[1]} (target <= {RSS_LIMIT_KIB:.0f}: "
                     f"{'met' if rss[0] <= RSS_LIMIT_KIB else 'NOT met'})")
    first = _figure(runs, "first_audio_ms")
    if first is not None:
        model = _figure(runs, "model_first_delta_ms")
        model_ms = model[0] if model is not None else 0.0
        added = first[0] - model_ms
        lines.append(f"at {n} calls: first audio {first[0]:.1f} ms after start{first[1]}, {added:.1f} ms more "
                     f"than the model's own {model_ms:.1f} ms (target < {FIRST_AUDIO_LIMIT_MS:g}: "
                     f"{'met' if added < FIRST_AUDIO_LIMIT_MS else 'NOT met'})")
    return lines
