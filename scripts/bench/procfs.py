"""What the bench reads about processes and the machine from /proc (Linux only)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def tree(pid: int) -> list[int]:
    """``pid`` and its children (gunicorn's master and workers)."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += tree(int(child))
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children so far."""
    total = 0
    for one in tree(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children."""
    total = 0
    for one in tree(pid):
        try:
            total += int(Path(f"/proc/{one}/statm").read_text().split()[1]) * PAGE_KIB
        except OSError:
            continue
    return total


def machine() -> str:
    """A line describing the hardware the numbers came from."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The interpreter's build moves the relay's CPU by more than a tenth (docs/performance.md),
    # so say which one ran: the base interpreter behind the virtualenv.
    interpreter = getattr(sys, "_base_executable", sys.executable)
    return f"{model}, {os.cpu_count()} cores, Python {sys.version.split()[0]} ({interpreter})"
