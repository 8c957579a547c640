"""``make bench``: load-test the relay as deployed; the runner is scripts/bench/runner.py.

``python -m scripts.bench_relay --steps 25,50,100 [--json]``; the options are the runner's.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench.runner import main

if __name__ == "__main__":
    sys.exit(main())
