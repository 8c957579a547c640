"""Check the webhook as Twilio calls it: ``scripts/verify_webhook.py URL [--json]`` (scripts/verify/webhook.py)."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.verify.webhook import main

if __name__ == "__main__":
    sys.exit(main())
