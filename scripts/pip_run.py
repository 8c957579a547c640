"""pip for the build scripts (``make webhook-zip``, ``make relay-bundle``), with a plain answer on failure.

When the package index cannot be reached, pip only says "Could not find a version that
satisfies the requirement Flask==3.1.3 (from versions: none)", and with its retries turned
down not even why. So when pip fails, this asks each index pip used (its "Looking in indexes"
line; PyPI when there is none) whether it answers at all: if none does, the answer is that
the index cannot be reached and what to do. Any other failure shows pip's own lines, then
one line of ours. Standard library only.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

PYPI = "https://pypi.org/simple"
PROBE_TIMEOUT_S = 10.0


class PipFailed(Exception):
    """pip failed; the message says why and what to do, in one or two lines."""


def run(arguments: list[str], *, what: str, again: str) -> None:
    """``python -m pip <arguments>``, quiet on success; PipFailed (``what`` failed; run ``again``) if not."""
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments],
                            capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return
    output = result.stdout + result.stderr
    indexes = indexes_used(output)
    unreachable = [(url, why) for url in indexes if (why := unreachable_because(url)) is not None]
    if unreachable and len(unreachable) == len(indexes):
        url, why = unreachable[0]
        raise PipFailed(
            f"{what}: the package index {url} cannot be reached ({why}), and pip needs it for the pinned wheels.\n"
            f"Check the network connection (or HTTPS_PROXY), or set PIP_INDEX_URL to an index you can reach, "
            f"then run {again} again.")
    sys.stderr.write(output)
    errors = [line.removeprefix("ERROR: ") for line in output.splitlines() if line.startswith("ERROR:")]
    raise PipFailed(f"{what}: pip failed (exit {result.returncode}){': ' + errors[-1] if errors else ''}; "
                    f"its lines above say more.")


def indexes_used(output: str) -> list[str]:
    """The index URLs pip says it looked in; PyPI's when it names none (its default)."""
    found = re.search(r"^Looking in indexes: (.+)$", output, re.M)
    return [url.strip() for url in found.group(1).split(",")] if found else [PYPI]


def unreachable_because(url: str) -> str | None:
    """Why nothing answers at ``url`` (an index), or None when something does (any HTTP status)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return None if Path(unquote(parts.path)).exists() else "no such folder"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError as exc:
        exc.close()
        return None
    except urllib.error.URLError as exc:
        reason = exc.reason
        return str(getattr(reason, "strerror", None) or reason).lower()
    except (OSError, ValueError) as exc:
        return str(exc).lower() or type(exc).__name__
