"""The checklist the verify scripts print, and what they share to produce it.

Owns, for ``verify_relay.py``, ``verify_webhook.py`` and ``verify_deploy.py``:

- ``Outcome``: what one layer function returns, ``(ok, detail)`` first, then the plain
  diagnosis and the likely fix of a failure (house style: one function per layer);
- ``run_layers``: runs layers in order and stops at the first failure (later layers
  depend on it); a layer skipped for a missing credential does not stop the others;
- ``Report``: the ✓/✗/– checklist for people, the same structure as JSON for machines;
- the exit-code contract (below) and ``worst`` for combining reports;
- where credentials come from: flags, then the environment, then an env file;
- ``http_request``: one plain HTTP/1.1 exchange that always closes what it opened.

Exit codes::

    0  every layer ran and passed
    1  a layer failed: the report says which, why, and the likely fix
    2  usage error: bad flags, an unusable URL, unreadable terraform outputs (argparse's code)
    3  incomplete: nothing failed, but layers were skipped for a missing credential

Standard library only; never prints a secret (only whether each one is set).
"""

from __future__ import annotations

import http.client
import ssl
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from relay.config import is_loopback  # the relay's own test of a local address

ROOT = Path(__file__).resolve().parent.parent
# Written by `make run` (scripts/local_stack.py): local secrets and URLs.
DEFAULT_ENV_FILE = ROOT / ".local" / "stack.env"

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
    """What a layer function returns: ``(ok, detail)``, and for a failure why and what to do."""

    ok: bool
    detail: str
    diagnosis: str = ""
    fix: str = ""
    skipped: bool = False


def passed(detail: str) -> Outcome:
    """The layer passed."""
    return Outcome(True, detail)


def failed(detail: str, diagnosis: str, fix: str) -> Outcome:
    """The layer failed: what was seen, what it means, and the likely fix."""
    return Outcome(False, detail, diagnosis, fix)


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

    @property
    def ok(self) -> bool:
        """True only for a layer that ran and passed."""
        return self.status == PASSED

    def as_dict(self) -> dict[str, Any]:
        """The stable JSON shape of one layer."""
        return {"name": self.name, "title": self.title, "ok": self.ok,
                "skipped": self.status in (SKIPPED, NOT_RUN), "status": self.status,
                "detail": self.detail, "diagnosis": self.diagnosis or None, "fix": self.fix or None}


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
            result = LayerResult(layer.name, layer.title, status, outcome.detail, outcome.diagnosis, outcome.fix)
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
        return failed(f"the check itself crashed: {type(exc).__name__}: {exc}",
                      "this is a bug in the verify script, not a finding about the stack",
                      "report it with the traceback printed above")


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


# -- credentials and URLs ---------------------------------------------------------------------


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


# -- plain HTTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpAnswer:
    """One HTTP response, read in full (up to a limit) and already closed."""

    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    elapsed_ms: float

    @property
    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    @property
    def content_type(self) -> str:
        """The media type, lower-case, without parameters."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def http_request(url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
                 body: bytes | None = None, timeout_s: float,
                 ssl_context: ssl.SSLContext | None = None, max_body: int = 256 * 1024) -> HttpAnswer:
    """One HTTP/1.1 exchange; redirects are reported, not followed.

    Raises OSError (refused, timed out, TLS) or http.client.HTTPException (not HTTP).
    """
    scheme, host, port = origin(url)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if scheme in ("https", "wss"):
        conn = http.client.HTTPSConnection(host, port, timeout=timeout_s,
                                           context=ssl_context or ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    started = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        try:
            data = response.read(max_body)
        finally:
            response.close()
        elapsed_ms = (time.monotonic() - started) * 1000
        return HttpAnswer(response.status, response.reason,
                          {k.lower(): v for k, v in response.getheaders()}, data, elapsed_ms)
    finally:
        conn.close()


def describe_tls_error(exc: ssl.SSLError, host: str) -> tuple[str, str]:
    """(what is wrong with the certificate or the TLS port, the likely fix)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        message = exc.verify_message or str(exc)
        if code in (18, 19):  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, ..._SELF_SIGNED_CERT_IN_CHAIN
            return (f"the certificate is self-signed ({message}); Twilio accepts only certificates "
                    f"from a public CA",
                    f"serve a certificate from a public CA for {host}: ACM on the load balancer, or "
                    f"Let's Encrypt")
        if code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
            return (f"the certificate is not valid for {host} ({message})",
                    f"issue the certificate for {host} (or add it as a subject alternative name), "
                    f"or use the host name the certificate names")
        if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
            return (f"the certificate has expired ({message})",
                    "renew it (ACM renews automatically only while its DNS validation record exists)")
        if code in (20, 21):  # unable to get local issuer / verify the first certificate
            return (f"the certificate chain does not lead to a trusted CA ({message}): the server "
                    f"does not send its intermediate certificates, or the CA is private",
                    "serve the full chain (fullchain.pem, not cert.pem) from a public CA")
        return (f"the certificate was rejected ({message})",
                f"serve a valid certificate from a public CA for {host}")
    reason = getattr(exc, "reason", None) or str(exc)
    if reason in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE", "HTTP_REQUEST"):
        return (f"the port does not speak TLS ({reason}): https:// points at a plain-HTTP port",
                "point https:// (wss://) at the TLS listener (443 on the load balancer), or use "
                "http:// when checking a relay instance directly")
    return (f"the TLS handshake failed ({reason})",
            f"check the TLS listener for {host}: protocol versions, ciphers, certificate")
