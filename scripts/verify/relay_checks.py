"""The relay's network and HTTP layers (1-6), one function each, in the order a call needs them.

Each returns an Outcome: ``passed(detail)``, ``skipped(what to set)``, or
``failed(detail, code, **facts)`` with a diagnosis code from scripts/verify/diagnoses.py.

 1. DNS        the name resolves (addresses printed)
 2. TCP        something accepts connections on the port
 3. TLS        https/wss: certificate valid for the host, days to expiry (Twilio 31910)
 4. plain GET  ``GET /twilio/realtime`` answers the relay's ``426 WebSocket connection expected``
 5. healthz    ``GET /healthz``: version, active calls, draining
 6. handshake  a WebSocket upgrade signed like Twilio's gets ``101``, a correct
               ``Sec-WebSocket-Accept`` and an answer to its close frame; an unsigned one ``403``

Layers 7 (the relay's own path to OpenAI) and 8 (a whole call) are in relay_session.py.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any

from twilio.request_validator import RequestValidator

from scripts.verify.checklist import Outcome, failed, passed, skipped
from scripts.verify.diagnoses import RELAY_TLS_IMPACT, STREAM_PATH
from scripts.verify.probes import HttpAnswer, UpgradeAnswer, http_request, tls_problem, websocket_upgrade
from scripts.verify.settings import is_loopback
from scripts.verify.targets import HEALTH_PATH, RelayTarget

RELAY_426_TEXT = "WebSocket connection expected"
USER_AGENT = "liveline-verify-relay/1"
CLOSE_TIMEOUT_S = 2.0  # how long the relay has to answer the handshake probe's close frame


def seen(answer: HttpAnswer) -> str:
    """``HTTP 404 Not Found (text/plain, Server: nginx): <title or first line>``."""
    extras = [x for x in (answer.content_type, answer.headers.get("server") and
                          f"Server: {answer.headers['server']}") if x]
    text = answer.text
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
    snippet = title.group(1).strip() if title else text.strip().splitlines()[0] if text.strip() else ""
    snippet = f": {snippet[:90]}" if snippet and answer.content_type != "application/json" else ""
    return f"HTTP {answer.status} {answer.reason}" + (f" ({', '.join(extras)})" if extras else "") + snippet


def _no_http_answer(t: RelayTarget, exc: BaseException, what: str) -> Outcome:
    if isinstance(exc, TimeoutError):
        return failed(f"no answer to {what} within {t.timeout_s:g} s", "http_timeout", host=t.host, port=t.port)
    return failed(f"{what}: {type(exc).__name__}: {exc}", "http_not_http" if t.secure else "http_not_http_maybe_tls",
                  host=t.host, port=t.port)


def get(t: RelayTarget, path: str, *, headers: Mapping[str, str] | None = None,
         timeout_s: float | None = None) -> HttpAnswer | Outcome:
    """``GET path`` on the relay: its answer, or the failed Outcome saying why there was none."""
    try:
        return http_request(t.http_base + path, headers={"User-Agent": USER_AGENT, **(headers or {})},
                            timeout_s=t.timeout_s if timeout_s is None else timeout_s, ssl_context=t.ssl_context())
    except (OSError, http.client.HTTPException) as exc:
        return _no_http_answer(t, exc, f"GET {path}")


# -- 1. DNS -------------------------------------------------------------------------------------


def check_dns(t: RelayTarget) -> Outcome:
    """The name resolves; print the addresses."""
    try:
        ipaddress.ip_address(t.host)
        return passed(f"{t.host} is an IP address: nothing to resolve")
    except ValueError:
        pass  # a name: resolve it
    try:
        infos = socket.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return failed(f"{t.host} does not resolve ({exc.strerror})", "dns_unresolved", host=t.host)
    addresses = sorted({str(info[4][0]).split("%")[0] for info in infos})
    note = ""
    if not is_loopback(t.host) and all(ipaddress.ip_address(a).is_private for a in addresses):
        note = " (private addresses only: Twilio cannot reach them, 31904)"
    return passed(f"{t.host} → {', '.join(addresses)}{note}")


# -- 2. TCP -------------------------------------------------------------------------------------


def check_tcp(t: RelayTarget) -> Outcome:
    """Something accepts TCP connections on the port."""
    try:
        infos = socket.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return failed(f"{t.host} does not resolve ({exc.strerror})", "dns_stopped_resolving", host=t.host)
    problems: list[str] = []
    timed_out = refused = False
    for family, kind, proto, _name, address in infos:
        where = f"{address[0]!s}:{address[1]!s}"
        sock = socket.socket(family, kind, proto)
        sock.settimeout(t.timeout_s)
        started = time.monotonic()
        try:
            sock.connect(address)
        except ConnectionRefusedError:
            refused = True
            problems.append(f"connection refused by {where}")
        except TimeoutError:
            timed_out = True
            problems.append(f"no answer from {where} within {t.timeout_s:g} s")
        except OSError as exc:
            problems.append(f"{where}: {exc.strerror or exc}")
        else:
            return passed(f"{where} accepted a connection in {(time.monotonic() - started) * 1000:.1f} ms")
        finally:
            sock.close()
    code = "tcp_refused" if refused else "tcp_timeout" if timed_out else "tcp_unreachable"
    return failed("; ".join(problems), code, host=t.host, port=t.port)


# -- 3. TLS -------------------------------------------------------------------------------------


def check_tls(t: RelayTarget) -> Outcome:
    """https/wss: the certificate is valid for the host; days until it expires."""
    if not t.secure:
        where = "the local stack" if is_loopback(t.host) else "a relay behind its TLS terminator"
        return passed(f"not applicable: http:// target ({where}); Twilio itself needs wss://")
    try:
        raw = socket.create_connection((t.host, t.port), timeout=t.timeout_s)
    except OSError as exc:
        return failed(f"connect: {exc}", "tcp_gone", host=t.host, port=t.port)
    try:
        with t.ssl_context().wrap_socket(raw, server_hostname=t.host) as tls:
            cert = tls.getpeercert() or {}
            version = tls.version()
    except ssl.SSLError as exc:
        code, facts = tls_problem(exc)
        return failed(f"TLS with {t.host}:{t.port} failed: {getattr(exc, 'verify_message', None) or exc}", code,
                      impact=RELAY_TLS_IMPACT, host=t.host, **facts)
    except OSError as exc:
        return failed(f"TLS with {t.host}:{t.port} failed: {exc}", "tls_incomplete", impact=RELAY_TLS_IMPACT,
                      reason=str(exc))
    finally:
        raw.close()
    expires = ssl.cert_time_to_seconds(str(cert.get("notAfter")))
    days = (expires - time.time()) / 86400
    issuer: dict[str, str] = {}
    for rdn in cert.get("issuer", ()):
        for pair in rdn:
            issuer[str(pair[0])] = str(pair[1])
    by = issuer.get("organizationName") or issuer.get("commonName") or "?"
    date = time.strftime("%Y-%m-%d", time.gmtime(expires))
    detail = f"certificate valid for {t.host}, issued by {by}, {version}, expires in {days:.0f} days ({date})"
    if days < 14:
        detail += " — renew it now"
    if t.ca_file:
        detail += " (trusted through --ca-file: Twilio trusts public CAs only)"
    return passed(detail)


# -- 4. plain GET -------------------------------------------------------------------------------


def _frontend(answer: HttpAnswer) -> str | None:
    """What kind of frontend page this is, or None.

    Error pages are HTML too (nginx, an ALB, Flask's 404): only an app shell, or an HTML
    page answered with 200, counts as a frontend; the others are judged by their status.
    """
    lower = answer.text.lower()
    if "__next_data__" in lower or "/_next/" in lower or 'id="__next"' in lower:
        return "a Next.js page"
    if any(m in lower for m in ('<div id="root"', '<div id="app"', '<script type="module"')):
        return "a single-page-app page (index.html)"
    html = answer.content_type == "text/html" or "<!doctype html" in lower or "<html" in lower
    return "an HTML page" if html and answer.status == 200 else None


def check_plain_get(t: RelayTarget) -> Outcome:
    """``GET /twilio/realtime`` without an upgrade gets the relay's 426."""
    answer = get(t, STREAM_PATH)
    if isinstance(answer, Outcome):
        return answer
    status, shown = answer.status, seen(answer)
    if status == 426 and RELAY_426_TEXT in answer.text:
        return passed(f"426 Upgrade Required: {RELAY_426_TEXT} ({answer.elapsed_ms:.0f} ms)")
    frontend = _frontend(answer)
    if frontend:
        return failed(shown, "frontend_on_relay_port", kind=frontend)
    if status == 404:
        return failed(shown, "route_not_loaded")
    if status in (502, 503, 504):
        return failed(shown, "proxy_no_healthy_relay", status=status)
    if status == 405:
        return failed(shown, "path_method_not_allowed")
    if status in (301, 302, 303, 307, 308):
        return failed(f"{shown} → {answer.headers.get('location', '?')}", "path_redirects")
    if status in (401, 403):
        return failed(shown, "path_behind_auth", status=status)
    return failed(shown, "not_the_relay", status=status, reason=answer.reason)


# -- 5. healthz ---------------------------------------------------------------------------------


def check_healthz(t: RelayTarget) -> Outcome:
    """``GET /healthz``: status; version, active calls and draining with the diagnostic token."""
    headers = {"Authorization": f"Bearer {t.diagnostic_token}"} if t.diagnostic_token else None
    answer = get(t, HEALTH_PATH, headers=headers)
    if isinstance(answer, Outcome):
        return answer
    try:
        doc = json.loads(answer.body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "status" not in doc:
        return failed(seen(answer), "healthz_not_relay")
    if "active_calls" in doc:
        summary = (f"{doc['status']} · version {doc.get('version')} · {doc.get('active_calls')} of "
                   f"{doc.get('max_calls')} calls · {'draining' if doc.get('draining') else 'not draining'}")
    else:  # the public answer: the status alone
        summary = f"{doc['status']} (set DIAGNOSTIC_TOKEN to see calls and version)"
    if answer.status == 200 and doc["status"] == "ok":
        return passed(summary)
    if doc.get("draining") or doc["status"] == "draining":
        return failed(summary, "relay_draining")
    return failed(summary, "relay_saturated", active_calls=doc.get("active_calls"), max_calls=doc.get("max_calls"))


# -- 6. WebSocket handshake -----------------------------------------------------------------------


def sign(t: RelayTarget) -> str:
    """X-Twilio-Signature for the upgrade: the signed URL, no parameters (docs/twilio-media-streams.md)."""
    return str(RequestValidator(t.auth_token).compute_signature(t.signed_url, {}))


def upgrade(t: RelayTarget, signature: str | None) -> UpgradeAnswer:
    """One upgrade of ``/twilio/realtime``, signed or not, as Twilio sends it."""
    headers = {"Host": t.host_header, "User-Agent": USER_AGENT}
    if signature:
        headers["X-Twilio-Signature"] = signature
    return websocket_upgrade(t.host, t.port, t.ws_base + STREAM_PATH, headers=headers, timeout_s=t.timeout_s,
                             ssl_context=t.ssl_context() if t.secure else None, close_timeout_s=CLOSE_TIMEOUT_S)


def refused_upgrade(t: RelayTarget, status: int, reason: str, body: str) -> tuple[str, dict[str, Any]]:
    """(code, facts) for a signed upgrade answered with ``status`` instead of 101."""
    answer = f"HTTP {status} {reason}".rstrip() + (f" ({body.strip()[:160]})" if body.strip() else "")
    if status == 403:
        match = re.search(r"invalid for (\S+)", body)
        if match and match.group(1) != t.signed_url:
            expects = match.group(1)
            return "signature_url_mismatch", {"expects": expects, "signed_url": t.signed_url,
                                              "source": t.signed_url_source,
                                              "expects_origin": expects.removesuffix(STREAM_PATH)}
        if match:
            return "signature_token_mismatch", {"signed_url": t.signed_url}
        return "forbidden_not_by_relay", {"answer": answer}
    code = {503: "upgrade_relay_busy", 426: "upgrade_headers_dropped", 502: "upgrade_proxy_failed",
            504: "upgrade_proxy_failed", 404: "upgrade_not_found"}.get(status, "upgrade_refused")
    return code, {"answer": answer}


def check_handshake(t: RelayTarget) -> Outcome:
    """101 with a correct Sec-WebSocket-Accept and a close answered when signed like Twilio; 403 unsigned."""
    try:
        unsigned = upgrade(t, None)
        signed = upgrade(t, sign(t)) if t.auth_token else None
    except (OSError, http.client.HTTPException) as exc:
        return failed(f"upgrade: {type(exc).__name__}: {exc}", "upgrade_no_answer")
    if unsigned.status == 101:
        return failed("an unsigned upgrade got 101 Switching Protocols", "unsigned_upgrade_accepted")
    if signed is None:
        if unsigned.status == 403:
            return skipped("an unsigned upgrade is refused (403), as it should be; set TWILIO_AUTH_TOKEN "
                           "to check the signed handshake")
        code, facts = refused_upgrade(t, unsigned.status, unsigned.reason, unsigned.body)
        return failed(f"unsigned upgrade answered HTTP {unsigned.status} {unsigned.reason}", code, **facts)
    if signed.status != 101:
        code, facts = refused_upgrade(t, signed.status, signed.reason, signed.body)
        return failed(f"signed upgrade answered HTTP {signed.status} {signed.reason}", code, **facts)
    if not signed.accept_ok:
        return failed(f"101 with Sec-WebSocket-Accept {signed.headers.get('sec-websocket-accept')!r}",
                      "bad_accept_header")
    if signed.close_answer is None:
        return failed(f"101, Sec-WebSocket-Accept correct; no close frame came back within {CLOSE_TIMEOUT_S:g} s",
                      "close_unanswered", timeout_s=CLOSE_TIMEOUT_S)
    return passed(f"101, Sec-WebSocket-Accept correct, close answered ({signed.close_answer[0]}), signed for "
                  f"{t.signed_url}; unsigned refused ({unsigned.status})")
