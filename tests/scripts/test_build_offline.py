"""``make webhook-zip`` and ``make relay-bundle`` when the package index cannot be reached: two plain
lines and exit 1, not pip's "no matching distribution" and a traceback. The index is a loopback
port that refuses connections (the machine's pip configuration is set aside); an index that
answers but has nothing gets pip's own answer instead, so the diagnosis is the probe's, not a guess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gevent.pywsgi import WSGIServer

from tests.conftest import ROOT

BUILDS = {
    "make webhook-zip": (["scripts/build_webhook_zip.py", "--out"], "could not build the webhook's zip"),
    "make relay-bundle": (["scripts/build_relay_bundle.py", "--output"], "could not download the relay's wheels"),
}


@pytest.fixture
def refusing_index() -> Iterator[str]:
    """An index URL on a loopback port that is held but not listening: every connection is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}/simple"


@pytest.fixture
def empty_index() -> Iterator[str]:
    """An index that answers, with nothing in it (404 for every project)."""
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
        return [b"not found"]

    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    yield f"http://127.0.0.1:{server.server_port}/simple"
    server.stop(timeout=1)


def build(command: str, index: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=index, PIP_RETRIES="0", PIP_DEFAULT_TIMEOUT="5")
    script, out_flag = BUILDS[command][0]
    return subprocess.run([sys.executable, script, out_flag, str(tmp_path / "out.zip")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", sorted(BUILDS))
def test_an_index_that_cannot_be_reached_is_said_plainly(command: str, refusing_index: str, tmp_path: Path) -> None:
    completed = build(command, refusing_index, tmp_path)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr and "No matching distribution" not in completed.stderr
    assert completed.stderr.strip().splitlines() == [
        f"{command}: {BUILDS[command][1]}: the package index {refusing_index} cannot be reached (connection "
        f"refused), and pip needs it for the pinned wheels.",
        f"Check the network connection (or HTTPS_PROXY), or set PIP_INDEX_URL to an index you can reach, then run "
        f"{command} again."]
    assert not (tmp_path / "out.zip").exists()


def test_an_index_that_answers_without_the_wheels_gets_pips_own_answer(empty_index: str, tmp_path: Path) -> None:
    completed = build("make webhook-zip", empty_index, tmp_path)
    assert completed.returncode == 1 and "Traceback" not in completed.stderr, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert "cannot be reached" not in completed.stderr
    assert lines[-1].startswith("make webhook-zip: could not build the webhook's zip: pip failed (exit 1): "
                                "No matching distribution found for ")
    assert lines[-1].endswith("; its lines above say more.")
