"""Check a relay layer by layer: ``scripts/verify_relay.py URL [--json]`` (scripts/verify/relay.py)."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.verify.relay import main

if __name__ == "__main__":
    sys.exit(main())
