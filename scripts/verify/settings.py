"""Where the verify scripts (and ``make call``) get credentials and URLs.

Flags first, then the environment, then an env file (``make run`` writes ``.local/stack.env``).

Never prints a secret: ``credential_summary`` says only whether each one is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from relay.config import is_loopback  # the relay's own test of a local address

ROOT = Path(__file__).resolve().parents[2]
# Written by `make run` (scripts/local_stack.py): local secrets and URLs.
DEFAULT_ENV_FILE = ROOT / ".local" / "stack.env"


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines (``export`` and quotes allowed; ``#`` comments ignored)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def gather_settings(environ: Mapping[str, str], env_file: str | None, no_env_file: bool,
                    target_host: str | None) -> tuple[dict[str, str], str]:
    """The environment, over an env file; and where the values came from (for the report).

    ``--env-file`` is always read. The default ``.local/stack.env`` is read only when the
    target is loopback: its local secrets must never sign requests to a deployed stack.
    """
    path: Path | None = None
    if not no_env_file:
        if env_file:
            path = Path(env_file)
            if not path.is_file():
                raise ValueError(f"--env-file {env_file}: no such file")
        elif DEFAULT_ENV_FILE.is_file() and target_host is not None and is_loopback(target_host):
            path = DEFAULT_ENV_FILE
    values = read_env_file(path) if path is not None else {}
    values.update({k: v for k, v in environ.items() if v})
    return values, (f"environment + {path}" if path is not None else "environment")


def credential_summary(names: Mapping[str, str | None]) -> str:
    """``NAME set, OTHER unset``: never the values."""
    return ", ".join(f"{name} {'set' if value else 'unset'}" for name, value in names.items())


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``url``; the port defaults by scheme."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    default = 443 if scheme in ("https", "wss") else 80
    return scheme, parts.hostname or "", parts.port or default


def host_port(host: str, port: int, scheme: str) -> str:
    """``host[:port]`` as a Host header or URL writes it (default ports left out)."""
    shown = f"[{host}]" if ":" in host else host
    default = 443 if scheme in ("https", "wss") else 80
    return shown if port == default else f"{shown}:{port}"
