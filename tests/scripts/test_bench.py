"""The benchmark's own measuring: frame tags, latency and loss arithmetic, the verdicts,
the table, and one small real run. Timing targets are never asserted here (the bench
reports them; a test machine's speed is not the relay's)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from scripts.bench import stats as bench_stats
from tests.conftest import ROOT


def test_tags_round_trip_inside_a_real_20_ms_frame() -> None:
    frame = bench_stats.tagged_frame(7, 123456, 9_876_543_210_123)
    assert len(base64.b64decode(frame)) == bench_stats.FRAME_BYTES
    assert bench_stats.read_tag(frame) == (7, 123456, 9_876_543_210_123)
    # only the first 32 characters carry the tag: what a receiver slices off a message
    assert bench_stats.read_tag(frame[:32]) == (7, 123456, 9_876_543_210_123)


@pytest.mark.parametrize("payload", ["", "////" * 54, base64.b64encode(b"x" * 160).decode(), "!!not base64!!" * 3])
def test_untagged_audio_reads_as_no_tag(payload: str) -> None:
    assert bench_stats.read_tag(payload) is None


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench_stats.percentile(values, 0.50) == 50.0
    assert bench_stats.percentile(values, 0.99) == 99.0
    assert bench_stats.percentile(values, 1.0) == 100.0
    assert bench_stats.percentile([], 0.99) == 0.0
    assert bench_stats.percentile([3.0], 0.99) == 3.0


def test_direction_counts_loss_and_summarises() -> None:
    direction = bench_stats.Direction(sent=1000, received=997)
    direction.add([1.0] * 990 + [20.0] * 7)
    summary = direction.summary()
    assert direction.lost == 3
    assert summary["p50_ms"] == 1.0 and summary["max_ms"] == 20.0 and summary["lost"] == 3
    assert bench_stats.Direction(sent=5, received=9).lost == 0  # duplicates never count as negative loss


def row(calls: int, up: float = 2.0, down: float = 3.0, lost: int = 0, failed: int = 0, **extra: object) -> dict:
    values = {"calls": calls, "up_p99": up, "down_p99": down, "lost": lost, "failed": failed}
    values.update(extra)
    values["verdict"] = bench_stats.verdict(values)
    return values


def test_verdict_is_the_capacity_line() -> None:
    assert row(10)["verdict"] == "yes"
    assert row(10, up=10.0)["verdict"] == "no: p99"
    assert row(10, down=12.0, lost=1)["verdict"] == "no: p99, loss"
    assert row(10, failed=2)["verdict"] == "no: failed calls"


def test_targets_report_capacity_and_the_figures_at_150() -> None:
    rows = [row(100), row(150, cpu_ms_per_call_s=4.6, rss_kib_per_call=30.0, first_audio_ms=4.0,
                          model_first_delta_ms=0.1), row(200, down=40.0)]
    lines = bench_stats.targets(rows)
    assert "capacity: 150 concurrent calls" in lines[0] and "met" in lines[0]
    assert any("4.60 CPU-ms per call-second" in line and "met" in line for line in lines)
    assert any("30 KiB" in line for line in lines)
    assert any("3.9 ms more than the model's own 0.1 ms" in line for line in lines)
    short = bench_stats.targets([row(50, cpu_ms_per_call_s=9.0)])
    assert "NOT met" in short[0] and "no step ran 150" in short[1]
    missed = bench_stats.targets([row(150, cpu_ms_per_call_s=6.0, rss_kib_per_call=2000.0)])
    assert sum("NOT met" in line for line in missed) == 2


def test_table_has_a_row_per_step_and_says_what_is_missing() -> None:
    text = bench_stats.table([row(25, cpu_ms_per_call_s=5.5), row(50)])
    lines = text.splitlines()
    assert len(lines) == 4 and "holds the line" in lines[0]
    assert lines[2].split()[0] == "25" and "5.50" in lines[2]
    assert "n/a" in lines[3]  # a figure that was not measured is said to be missing


def test_a_small_real_run(tmp_path: object) -> None:
    """make bench end to end, tiny: gunicorn relay, stand-in in load mode, load generator."""
    done = subprocess.run(
        [sys.executable, "-m", "scripts.bench_relay", "--steps", "4", "--duration", "3", "--warmup", "1",
         "--repeat", "2", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    (step, again) = report["rows"]  # --repeat 2: the same step twice, on the same relay
    assert again["calls"] == 4 and again["failed"] == 0 and again["lost"] == 0
    assert step["calls"] == 4 and step["failed"] == 0 and step["lost"] == 0
    # frames flowed both ways and were matched by their tags
    assert step["up"]["received"] > 50 and step["down"]["received"] > 50
    assert step["up"]["sent"] == step["up"]["received"]
    assert 0 < step["up_p50"] and 0 < step["down_p50"]
    assert step["cpu_ms_per_call_s"] is not None and step["rss_kib_per_call"] is not None
    assert step["first_audio_ms"] is not None
    assert report["targets"][0].startswith("capacity:")


def test_a_small_run_with_the_upstream_over_tls() -> None:
    """make bench --tls, tiny: the stand-in serves wss:// (a test CA made for the run), the relay trusts it."""
    done = subprocess.run(
        [sys.executable, "-m", "scripts.bench_relay", "--tls", "--steps", "2", "--duration", "2", "--warmup", "0.5",
         "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    (step,) = json.loads(done.stdout)["rows"]
    assert step["calls"] == 2 and step["failed"] == 0 and step["lost"] == 0
    assert step["up"]["received"] > 20 and step["down"]["received"] > 20
    relay_log = (ROOT / "build" / "bench" / "relay.log").read_text()
    assert "tls_ms=" in relay_log  # the relay's upstream went through a TLS handshake


def test_repeated_steps_hold_by_majority_and_report_medians() -> None:
    runs_150 = [row(150, cpu_ms_per_call_s=cpu, rss_kib_per_call=50.0, first_audio_ms=4.0, down=down)
                for cpu, down in ((4.5, 3.0), (5.2, 12.0), (4.7, 4.0))]
    lines = bench_stats.targets([row(100), *runs_150])
    assert lines[0].startswith("capacity: 150 concurrent calls") and "in 2 of 3 runs" in lines[0]
    assert any("4.70 CPU-ms per call-second (median of 3 runs; 4.5-5.2)" in line and "met" in line
               for line in lines)
    # most runs missing the line: the step does not hold, and the summary says how often it did
    missed = bench_stats.targets([row(100), *(row(150, down=d) for d in (12.0, 3.0, 15.0, 11.0))])
    assert "capacity: 100 concurrent calls" in missed[0] and "NOT met" in missed[0]
    assert "at 150 calls: the line held in 1 of 4 runs" in missed[1]
