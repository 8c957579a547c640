"""The stand-ins for the relay's HTTP peers (scripts/fakes/): each runs alone from the command
line, none imports the relay, and the receivers check signatures with exactly the lines
docs/tools.md shows an operator, which accept what the relay's signer makes."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relay.signing import SIGNATURE_HEADER, signature_header
from tests.conftest import ROOT, free_port, stop_process, wait_http
from tests.helpers import get

# The stand-ins for the relay's HTTP peers. (The simulated Twilio side may mint a stream token
# with relay.stream_token, as the webhook would: tests/test_layering.py holds that line.)
FAKES = [ROOT / "scripts" / "fakes" / name for name in ("example_tool.py", "twilio_rest_api.py", "report_receiver.py")]
SECRET = "fakes-signing-secret-0123456789abcdef"


def test_no_fake_imports_the_relay() -> None:
    for path in FAKES:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] == "relay"], f"{path.name} imports the relay"


def verify_lines(text: str) -> str:
    """The ``def verify`` block of a file or a Markdown page."""
    match = re.search(r"^def verify\(.*?(?=^\S|^$\n^\S|\Z)", text, re.MULTILINE | re.DOTALL)
    assert match is not None
    return match.group(0).strip()


def test_the_receivers_check_signatures_with_the_documented_lines() -> None:
    documented = verify_lines((ROOT / "docs" / "tools.md").read_text())
    for name in ("example_tool.py", "report_receiver.py"):
        assert verify_lines((ROOT / "scripts" / "fakes" / name).read_text()) == documented, name


RunFake = Callable[..., tuple[subprocess.Popen[bytes], str, Path]]


@pytest.fixture
def run_fake(tmp_path: Path) -> Iterator[RunFake]:
    started: list[subprocess.Popen[bytes]] = []

    def run(module: str, *args: str) -> tuple[subprocess.Popen[bytes], str, Path]:
        port = free_port()
        log = tmp_path / f"{module}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", f"scripts.fakes.{module}", "--port", str(port), *args],
                                       cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/", process=process)
        return process, url, log

    yield run
    for process in started:
        stop_process(process)


def signed(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", SIGNATURE_HEADER: signature_header(SECRET, body, int(time.time()))}


def test_the_example_tool_alone(run_fake: RunFake) -> None:
    _, url, log = run_fake("example_tool", "--secret", SECRET)
    body = json.dumps({"call_sid": "CA1", "call_id": "call_1", "tool": "lookup_order",
                       "arguments": {"order_id": "1002"}}).encode()
    status, _, answer = get(url + "/lookup_order", signed(body), "POST", body)
    assert status == 200 and json.loads(answer)["status"] == "processing"
    status, _, _ = get(url + "/lookup_order", {SIGNATURE_HEADER: "t=1,v1=00"}, "POST", body)
    assert status == 401
    assert "POST /lookup_order -> 401 (signature REFUSED)" in log.read_text()


def test_the_report_receiver_alone(run_fake: RunFake) -> None:
    _, url, log = run_fake("report_receiver", "--secret", SECRET)
    turn = {"role": "caller", "text": "Hi there", "at_ms": 1500}
    body = json.dumps({"call_sid": "CA9", "transcript": [turn]}).encode()
    status, _, _ = get(url + "/calls", signed(body), "POST", body)
    assert status == 200
    assert wait_for_text(log, "[00:01.5]    caller: Hi there")


def test_the_report_receiver_gives_a_call_s_record_back_to_its_own_address_only(run_fake: RunFake) -> None:
    _, url, _ = run_fake("report_receiver", "--secret", SECRET)
    sid = "CA" + "9" * 32
    assert get(f"{url}/calls/{sid}")[0] == 404  # nothing yet
    body = json.dumps({"call_sid": sid, "transcript": [{"role": "caller", "text": "Hi", "at_ms": 10}]}).encode()
    assert get(url + "/calls", signed(body), "POST", body)[0] == 200
    status, _, answer = get(f"{url}/calls/{sid}")
    assert status == 200 and json.loads(answer)["transcript"][0]["text"] == "Hi"
    status, _, answer = get(f"{url}/calls/{sid}", {"Host": "attacker.example:80"})
    assert status == 403 and b"own address" in answer  # a page that rebinds a name to 127.0.0.1 reads nothing
    assert get(f"{url}/calls/CA{'8' * 32}")[0] == 404


def test_the_twilio_rest_api_alone(run_fake: RunFake) -> None:
    _, url, log = run_fake("twilio_rest_api")
    path = f"/2010-04-01/Accounts/AC{'0' * 32}/Calls/CA{'1' * 32}.json"
    status, _, answer = get(url + path, {"Content-Type": "application/x-www-form-urlencoded"}, "POST",
                            b"Status=completed")
    assert status == 200 and json.loads(answer)["status"] == "completed"
    assert wait_for_text(log, f"POST {path} ['Status'] -> 200")
    # Twilio's side of the call reads what was accepted (a second update of a completed call is refused).
    assert get(url + path, {"Content-Type": "application/x-www-form-urlencoded"}, "POST", b"Status=completed")[0] == 400
    status, _, answer = get(f"{url}/standin/calls/CA{'1' * 32}.json")
    assert status == 200 and json.loads(answer) == {"call_sid": "CA" + "1" * 32, "updates": [{"Status": "completed"}]}


@pytest.mark.parametrize("module", ["example_tool", "report_receiver"])
def test_without_a_secret_a_receiver_says_what_to_set(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", f"scripts.fakes.{module}", "--port", str(free_port())],
                            cwd=ROOT, capture_output=True, text=True, timeout=30,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().endswith("set RELAY_SIGNING_SECRET (or --secret) to the relay's signing secret")
    assert "Traceback" not in result.stderr


def wait_for_text(path: Path, text: str, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in path.read_text():
            return True
        time.sleep(0.05)
    return False
