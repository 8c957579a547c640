"""The verify scripts' diagnoses as data: one golden text per code, and no code without a use.

tests/scripts/golden/diagnoses.json holds, for every code in scripts/verify/diagnoses.py,
sample facts and the exact why/fix they give. A change of wording shows here once, not in
every test that meets the failure (those assert on the code). After changing the table on
purpose, rewrite the file and read its diff:

    .venv/bin/python -m tests.scripts.test_diagnoses
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from scripts.verify.diagnoses import DIAGNOSES, RELAY_TLS_IMPACT, explain

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden" / "diagnoses.json"
# Facts a check could have found, by parameter name (the golden file keeps what was used).
SAMPLE_FACTS: dict[str, Any] = {
    "host": "relay.example.com", "port": 443, "impact": RELAY_TLS_IMPACT, "message": "self-signed certificate",
    "reason": "WRONG_VERSION_NUMBER", "kind": "a Next.js page", "status": 502, "active_calls": 150,
    "max_calls": 150, "timeout_s": 2.0, "expects": "wss://relay.example.com/twilio/realtime",
    "expects_origin": "wss://relay.example.com", "signed_url": "wss://relay.internal/twilio/realtime",
    "source": "from RELAY_PUBLIC_URL", "answer": "HTTP 503 Service Unavailable (relay is draining)",
    "model": "gpt-realtime", "error_code": "invalid_value", "webhook": "https://hooks.example.com",
    "close": "close 1008 token_mismatch", "url": "https://hooks.example.com/twilio/voice", "parameter": "streamToken",
    "where": "127.0.0.1:8765",
}


def _golden() -> dict[str, dict[str, Any]]:
    return json.loads(GOLDEN.read_text())  # type: ignore[no-any-return]


def test_every_diagnosis_has_its_golden_text() -> None:
    assert sorted(_golden()) == sorted(DIAGNOSES), "run python -m tests.scripts.test_diagnoses to add/remove"


@pytest.mark.parametrize("code", sorted(DIAGNOSES))
def test_golden_text(code: str) -> None:
    golden = _golden()[code]
    assert set(golden["facts"]) == DIAGNOSES[code].fields()
    why, fix = explain(code, **golden["facts"])
    assert (why, fix) == (golden["why"], golden["fix"])


def _codes_used() -> set[str]:
    """Every string literal in scripts/verify/ that names a diagnosis."""
    used: set[str] = set()
    for path in (ROOT / "scripts" / "verify").glob("*.py"):
        if path.name == "diagnoses.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in DIAGNOSES:
                used.add(node.value)
    return used


def test_every_diagnosis_is_used_by_a_check() -> None:
    assert sorted(set(DIAGNOSES) - _codes_used()) == []


def test_every_code_a_check_reports_is_in_the_table() -> None:
    for path in (ROOT / "scripts" / "verify").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("failed", "noted") \
                    and len(node.args) >= 2:
                code = node.args[1]
                if isinstance(code, ast.Constant):
                    assert code.value in DIAGNOSES, f"{path.name}:{node.lineno} reports unknown code {code.value!r}"


def write_golden() -> None:
    """Rewrite the golden file from the table (after a deliberate change of wording)."""
    document = {}
    for code in sorted(DIAGNOSES):
        facts = {name: SAMPLE_FACTS[name] for name in sorted(DIAGNOSES[code].fields())}
        why, fix = explain(code, **facts)
        document[code] = {"facts": facts, "why": why, "fix": fix}
    GOLDEN.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_golden()
