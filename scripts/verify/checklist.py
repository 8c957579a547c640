"""The checklist the verify scripts print: layers, their outcomes, the report, exit codes.

Owns, for ``verify_relay.py``, ``verify_webhook.py`` and ``verify_deploy.py``:

- ``Outcome``: what one layer function returns, ``(ok, detail)`` first, then for a
  failure its diagnosis code (scripts/verify/diagnoses.py) with the plain why and fix
  filled in (house style: one function per layer); a layer that passed but found something
  a person must know (the relay talks to a local stand-in, not OpenAI) carries a code too,
  printed as a note under its line;
- ``run_layers``: runs layers in order and stops at the first failure (later layers
  depend on it); a layer skipped for a missing credential does not stop the others;
- ``Report``: the ✓/✗/– checklist for people, the same structure as JSON for machines
  (each failed layer with its ``code``);
- the exit-code contract (below) and ``worst`` for combining reports.

Exit codes::

    0  every layer ran and passed
    1  a layer failed: the report says which, why, and the likely fix
    2  usage error: bad flags, an unusable URL, unreadable terraform outputs (argparse's code)
    3  incomplete: nothing failed, but layers were skipped for a missing credential

Never prints a secret (only whether each one is set).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from scripts.verify.diagnoses import explain

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_CODES_HELP = ("exit codes: 0 every layer passed; 1 a layer failed (the report says why and the likely "
                   "fix); 2 usage error; 3 incomplete: nothing failed, but layers were skipped for a "
                   "missing credential")
# How bad each exit code is, for combining reports (verify_deploy.py).
_SEVERITY = {EXIT_OK: 0, EXIT_INCOMPLETE: 1, EXIT_FAILED: 2, EXIT_USAGE: 3}

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"
NOT_RUN = "not_run"


class Outcome(NamedTuple):
    """What a layer function returns: ``(ok, detail)``, and for a failure its code, why and what to do."""

    ok: bool
    detail: str
    diagnosis: str = ""
    fix: str = ""
    skipped: bool = False
    code: str = ""


def passed(detail: str) -> Outcome:
    """The layer passed."""
    return Outcome(True, detail)


def failed(detail: str, code: str, **params: Any) -> Outcome:
    """The layer failed: what was seen, and the diagnosis ``code`` with the facts that fill it in."""
    why, fix = explain(code, **params)
    return Outcome(False, detail, why, fix, code=code)


def noted(detail: str, code: str, **params: Any) -> Outcome:
    """The layer passed, with something to know: the diagnosis ``code``'s why and fix, printed as a note."""
    why, fix = explain(code, **params)
    return Outcome(True, detail, why, fix, code=code)


def skipped(detail: str) -> Outcome:
    """The layer could not run (a credential is missing): ``detail`` says which to set."""
    return Outcome(False, detail, skipped=True)


@dataclass(frozen=True)
class Layer:
    """One layer: a machine name, a title for people, and the function that checks it."""

    name: str
    title: str
    check: Callable[[], Outcome]
    needs: str | None = None  # a layer whose result this one reads; skipped when it is


@dataclass(frozen=True)
class LayerResult:
    """A layer's verdict, as printed and as serialised."""

    name: str
    title: str
    status: str  # passed | failed | skipped | not_run
    detail: str
    diagnosis: str = ""
    fix: str = ""
    code: str = ""  # the diagnosis code of a failure (scripts/verify/diagnoses.py)

    @property
    def ok(self) -> bool:
        """True only for a layer that ran and passed."""
        return self.status == PASSED

    def as_dict(self) -> dict[str, Any]:
        """The stable JSON shape of one layer."""
        return {"name": self.name, "title": self.title, "ok": self.ok,
                "skipped": self.status in (SKIPPED, NOT_RUN), "status": self.status,
                "detail": self.detail, "code": self.code or None, "diagnosis": self.diagnosis or None,
                "fix": self.fix or None}


def run_layers(layers: Iterable[Layer]) -> list[LayerResult]:
    """Run ``layers`` in order; after the first failure the rest are not run."""
    results: list[LayerResult] = []
    by_name: dict[str, LayerResult] = {}
    failure: LayerResult | None = None
    for layer in layers:
        if failure is not None:
            result = LayerResult(layer.name, layer.title, NOT_RUN, f"not run: {failure.title} failed")
        elif layer.needs is not None and by_name[layer.needs].status == SKIPPED:
            needed = by_name[layer.needs]
            result = LayerResult(layer.name, layer.title, SKIPPED, f"not run: needs {needed.title} (skipped)")
        else:
            outcome = _run_one(layer)
            status = PASSED if outcome.ok else SKIPPED if outcome.skipped else FAILED
            result = LayerResult(layer.name, layer.title, status, outcome.detail, outcome.diagnosis, outcome.fix,
                                 outcome.code)
            if status == FAILED:
                failure = result
        results.append(result)
        by_name[layer.name] = result
    return results


def _run_one(layer: Layer) -> Outcome:
    # The one broad catch: a bug in a check must still leave a readable checklist.
    try:
        return layer.check()
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return failed(f"the check itself crashed: {type(exc).__name__}: {exc}", "check_crashed")


@dataclass
class Report:
    """The checklist of one script run against one target."""

    tool: str
    target: str
    layers: list[LayerResult]
    context: list[str] = field(default_factory=list)  # lines printed under the title (no secrets)

    @property
    def exit_code(self) -> int:
        """0 all passed, 1 a layer failed, 3 incomplete (layers skipped)."""
        statuses = {layer.status for layer in self.layers}
        if FAILED in statuses:
            return EXIT_FAILED
        if SKIPPED in statuses or NOT_RUN in statuses:
            return EXIT_INCOMPLETE
        return EXIT_OK

    @property
    def ok(self) -> bool:
        """True when every layer ran and passed."""
        return self.exit_code == EXIT_OK

    @property
    def failure(self) -> LayerResult | None:
        """The failed layer, if any."""
        return next((layer for layer in self.layers if layer.status == FAILED), None)

    def as_dict(self) -> dict[str, Any]:
        """The machine-readable report (``--json``)."""
        return {"tool": self.tool, "target": self.target, "context": self.context,
                "layers": [layer.as_dict() for layer in self.layers],
                "ok": self.ok, "exit_code": self.exit_code}

    def render(self) -> str:
        """The checklist for people: one line per layer, then the verdict."""
        ok_mark, fail_mark, skip_mark = _marks()
        width = max(len(layer.title) for layer in self.layers)
        lines = [f"{self.tool} {self.target}"] + [f"  {line}" for line in self.context]
        for layer in self.layers:
            mark = ok_mark if layer.ok else fail_mark if layer.status == FAILED else skip_mark
            lines.append(f"  {mark} {layer.title.ljust(width)}  {layer.detail}")
            if layer.ok and layer.diagnosis:  # passed, with something to know
                lines.append(f"      note: {layer.diagnosis}")
                lines.append(f"      {layer.fix}")
        failure = self.failure
        if failure is not None:
            lines.append(f"FAILED at {failure.title} (exit {EXIT_FAILED})")
            lines.append(f"  why: {failure.diagnosis}")
            lines.append(f"  fix: {failure.fix}")
        elif self.exit_code == EXIT_INCOMPLETE:
            count = sum(1 for layer in self.layers if not layer.ok)
            lines.append(f"INCOMPLETE: nothing failed, but {count} of {len(self.layers)} layers were skipped "
                         f"({skip_mark}: set what they ask for) (exit {EXIT_INCOMPLETE})")
        else:
            lines.append(f"PASSED: all {len(self.layers)} layers (exit {EXIT_OK})")
        return "\n".join(lines)


def _marks() -> tuple[str, str, str]:
    """✓ ✗ –, or ASCII when the terminal cannot print them (an old SSH locale at 2 a.m.)."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "✓✗–".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "+", "x", "-"
    return "✓", "✗", "–"


def worst(codes: Iterable[int]) -> int:
    """The most serious of several exit codes (usage > failed > incomplete > ok)."""
    return max(codes, key=lambda code: _SEVERITY.get(code, 0), default=EXIT_OK)
