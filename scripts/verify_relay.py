"""Check a relay layer by layer, and say in plain words why a caller would hear dead air.

    .venv/bin/python scripts/verify_relay.py http://127.0.0.1:8080      # after `make run`
    .venv/bin/python scripts/verify_relay.py https://relay.example.com  # a deployed relay
    .venv/bin/python scripts/verify_relay.py wss://relay.example.com --json

One function per layer, in the order a call needs them; each returns an Outcome,
``(ok, detail)`` plus a diagnosis and a likely fix when it fails. The run stops at the first
failing layer (the later ones depend on it); a layer skipped for a missing credential does
not stop the others. Exit codes: see scripts/checklist.py (0 passed, 1 failed, 2 usage,
3 incomplete).

 1. DNS        the name resolves (addresses printed)
 2. TCP        something accepts connections on the port
 3. TLS        https/wss: certificate valid for the host, days to expiry (Twilio 31910)
 4. plain GET  ``GET /twilio/realtime`` answers the relay's ``426 WebSocket connection expected``
 5. healthz    ``GET /healthz``: version, active calls, draining
 6. handshake  a WebSocket upgrade signed like Twilio's gets ``101`` and a correct
               ``Sec-WebSocket-Accept``; an unsigned one gets ``403``
 7. diagnostic ``GET /diagnostic/openai`` (DIAGNOSTIC_TOKEN): the relay's own path to OpenAI
 8. call       a simulated Twilio call (scripts/call.py) with a valid stream token and a
               spoken utterance: the assistant's audio must come back in ``--call-timeout``

Credentials come from flags, the environment (TWILIO_AUTH_TOKEN, RELAY_PUBLIC_URL,
DIAGNOSTIC_TOKEN, STREAM_TOKEN_SECRET, WEBHOOK_PUBLIC_URL) or ``--env-file`` (by default
``.local/stack.env`` for a loopback target, as written by ``make run``). Secrets are never
printed. The unsigned probe of layer 6 leaves one ``call.refused reason=bad_signature``
warning in the relay's log per run, by design.

Imports only the relay's pure modules and scripts/ (tests/test_layering.py). Longer than the
house's ~400 lines on purpose: the eight layers and their diagnoses are one operator's tool,
read top to bottom; what the three scripts share lives in scripts/checklist.py.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import sys
import time
import urllib.error
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twilio.request_validator import RequestValidator

from relay.errors import FrameError
from relay.ws_frames import OP_CLOSE, FrameDecoder, encode_close
from scripts import audio, checklist
from scripts.checklist import HttpAnswer, Layer, Outcome, Report, failed, passed, skipped
from scripts.fakes.twilio_caller import SimulatedCaller
from scripts.fakes.twilio_webhook import STREAM_PATH, StreamTarget, target_from_relay, target_from_webhook

HEALTH_PATH = "/healthz"
DIAGNOSTIC_PATH = "/diagnostic/openai"
RELAY_426_TEXT = "WebSocket connection expected"
# RFC 6455 section 4.2.2 (infra.md section 6 misspells it).
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
USER_AGENT = "liveline-verify-relay/1"


@dataclass(frozen=True)
class RelayTarget:
    """The relay to check and what the checks may use. No secret appears in ``repr``."""

    url: str
    host: str
    port: int
    secure: bool
    http_base: str  # http(s)://host[:port] for plain requests
    ws_base: str  # ws(s)://host[:port] for the handshake and the call
    signed_url: str  # what X-Twilio-Signature covers: wss://<public host>/twilio/realtime
    signed_url_source: str
    auth_token: str | None = None
    diagnostic_token: str | None = None
    stream_secret: str | None = None
    webhook_url: str | None = None
    webhook_public_url: str | None = None
    timeout_s: float = 5.0
    call_timeout_s: float = 10.0
    diagnostic_timeout_s: float = 30.0
    ca_file: str | None = None

    def __repr__(self) -> str:
        return f"RelayTarget({self.url!r}, signed_url={self.signed_url!r})"

    @classmethod
    def create(cls, url: str, *, public_url: str | None = None, auth_token: str | None = None,
               diagnostic_token: str | None = None, stream_secret: str | None = None,
               webhook_url: str | None = None, webhook_public_url: str | None = None,
               timeout_s: float = 5.0, call_timeout_s: float = 10.0, diagnostic_timeout_s: float = 30.0,
               ca_file: str | None = None) -> RelayTarget:
        """Parse the relay's URL (http, https, ws or wss); ValueError says what is wrong."""
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError(f"{url!r} is not a relay URL: give one like https://relay.example.com, "
                             f"wss://relay.example.com or http://127.0.0.1:8080")
        if parts.path.rstrip("/") not in ("", STREAM_PATH) or parts.query or parts.fragment:
            raise ValueError(f"{url!r}: give the relay's origin only (it serves {STREAM_PATH}, "
                             f"{HEALTH_PATH} and {DIAGNOSTIC_PATH} itself)")
        secure = scheme in ("https", "wss")
        port = parts.port or (443 if secure else 80)
        shown = checklist.host_port(parts.hostname, port, "https" if secure else "http")
        ws_base = f"{'wss' if secure else 'ws'}://{shown}"
        if public_url:
            signed_url, source = _signed_url(public_url), "from RELAY_PUBLIC_URL"
        else:
            signed_url = ws_base + STREAM_PATH
            source = "from the URL given; set RELAY_PUBLIC_URL if Twilio dials another"
        return cls(url=url, host=parts.hostname, port=port, secure=secure,
                   http_base=f"{'https' if secure else 'http'}://{shown}", ws_base=ws_base,
                   signed_url=signed_url, signed_url_source=source, auth_token=auth_token,
                   diagnostic_token=diagnostic_token, stream_secret=stream_secret, webhook_url=webhook_url,
                   webhook_public_url=webhook_public_url, timeout_s=timeout_s, call_timeout_s=call_timeout_s,
                   diagnostic_timeout_s=diagnostic_timeout_s, ca_file=ca_file)

    def ssl_context(self) -> ssl.SSLContext:
        """The public CAs, or only ``--ca-file``."""
        return ssl.create_default_context(cafile=self.ca_file)

    @property
    def host_header(self) -> str:
        """The Host header, as Twilio would send it."""
        return checklist.host_port(self.host, self.port, "https" if self.secure else "http")


def _signed_url(public_url: str) -> str:
    parts = urlsplit(public_url.strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("ws", "wss") or not parts.hostname or parts.path.rstrip("/") not in ("", STREAM_PATH):
        raise ValueError(f"RELAY_PUBLIC_URL {public_url!r} must be the relay's wss:// origin, "
                         f"like wss://relay.example.com")
    return f"{scheme}://{parts.netloc}{STREAM_PATH}"


def _seen(answer: checklist.HttpAnswer) -> str:
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
        return failed(f"no answer to {what} within {t.timeout_s:g} s",
                      f"{t.host}:{t.port} accepts connections but does not answer HTTP in time: the "
                      f"process on the port is hung or overloaded, or a proxy waits on a dead backend",
                      "look at the relay's log (journalctl -u liveline-relay) and its CPU; restart it")
    hint = " — if this port serves TLS, use https://" if not t.secure else ""
    return failed(f"{what}: {type(exc).__name__}: {exc}",
                  f"{t.host}:{t.port} accepted the connection but did not answer HTTP{hint}",
                  "check which process owns this port (ss -ltnp) and that it is the relay")


def _get(t: RelayTarget, path: str, *, headers: Mapping[str, str] | None = None,
         timeout_s: float | None = None) -> HttpAnswer | Outcome:
    """``GET path`` on the relay: its answer, or the failed Outcome saying why there was none."""
    try:
        return checklist.http_request(t.http_base + path, headers={"User-Agent": USER_AGENT, **(headers or {})},
                                      timeout_s=t.timeout_s if timeout_s is None else timeout_s,
                                      ssl_context=t.ssl_context())
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
        return failed(f"{t.host} does not resolve ({exc.strerror})",
                      f"the name {t.host} does not resolve: the DNS record is missing, misspelt or not "
                      f"yet propagated; Twilio would fail the stream with 31904 (host unreachable)",
                      f"create the record (an alias to the load balancer) or fix the URL; check with "
                      f"dig +short {t.host}")
    addresses = sorted({str(info[4][0]).split("%")[0] for info in infos})
    note = ""
    if not checklist.is_loopback(t.host) and all(ipaddress.ip_address(a).is_private for a in addresses):
        note = " (private addresses only: Twilio cannot reach them, 31904)"
    return passed(f"{t.host} → {', '.join(addresses)}{note}")


# -- 2. TCP -------------------------------------------------------------------------------------


def check_tcp(t: RelayTarget) -> Outcome:
    """Something accepts TCP connections on the port."""
    nothing = (f"nothing is listening on {t.host}:{t.port} — the relay process is not running or not "
               f"bound to this port (check the start command: the relay must own this port)")
    start_it = ("start the relay (make run locally; on a server: systemctl status liveline-relay, "
                f"journalctl -u liveline-relay) and make it bind port {t.port} (RELAY_BIND)")
    try:
        infos = socket.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return failed(f"{t.host} does not resolve ({exc.strerror})", f"{t.host} stopped resolving",
                      "check the DNS record")
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
    detail = "; ".join(problems)
    if refused:
        return failed(detail, nothing, start_it)
    if timed_out:
        return failed(detail, nothing,
                      f"{start_it}. A timeout rather than a refusal usually means a firewall or security "
                      f"group drops the packets: allow TCP {t.port} from anywhere (Twilio connects from "
                      f"any public address; it reports 31901)")
    return failed(detail, f"there is no route to {t.host}:{t.port}; Twilio would fail with 31904 "
                          f"(host unreachable)", "check that the address is public and routable")


# -- 3. TLS -------------------------------------------------------------------------------------


def check_tls(t: RelayTarget) -> Outcome:
    """https/wss: the certificate is valid for the host; days until it expires."""
    if not t.secure:
        where = "the local stack" if checklist.is_loopback(t.host) else "a relay behind its TLS terminator"
        return passed(f"not applicable: http:// target ({where}); Twilio itself needs wss://")
    try:
        raw = socket.create_connection((t.host, t.port), timeout=t.timeout_s)
    except OSError as exc:
        return failed(f"connect: {exc}", f"{t.host}:{t.port} stopped accepting connections", "re-run")
    try:
        with t.ssl_context().wrap_socket(raw, server_hostname=t.host) as tls:
            cert = tls.getpeercert() or {}
            version = tls.version()
    except ssl.SSLError as exc:
        what, fix = checklist.describe_tls_error(exc, t.host)
        return failed(f"TLS with {t.host}:{t.port} failed: {getattr(exc, 'verify_message', None) or exc}",
                      f"Twilio would fail this stream with 31910 (Stream - WebSocket - SSL Protocol "
                      f"Error): {what}", fix)
    except OSError as exc:
        return failed(f"TLS with {t.host}:{t.port} failed: {exc}",
                      "Twilio would fail this stream with 31910 (SSL Protocol Error): the TLS "
                      "handshake did not complete", "check the TLS listener (443) of the load balancer")
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


def _frontend(answer: checklist.HttpAnswer) -> str | None:
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
    answer = _get(t, STREAM_PATH)
    if isinstance(answer, Outcome):
        return answer
    status, seen = answer.status, _seen(answer)
    relay_owns = ("the relay must own this port: check the start command (gunicorn -c "
                  "relay/gunicorn.conf.py relay.wsgi:app) and what the proxy or load balancer forwards to it")
    if status == 426 and RELAY_426_TEXT in answer.text:
        return passed(f"426 Upgrade Required: {RELAY_426_TEXT} ({answer.elapsed_ms:.0f} ms)")
    frontend = _frontend(answer)
    if frontend:
        return failed(seen, f"a frontend is being served on the relay's port, overshadowing the backend: "
                            f"GET {STREAM_PATH} returned {frontend} instead of the relay's 426",
                      f"give the frontend its own port or host and route {STREAM_PATH} to the relay; "
                      + relay_owns)
    if status == 404:
        return failed(seen, f"the route is not loaded (404): a different app is running on this port, "
                            f"or the path is wrong; the relay answers GET {STREAM_PATH} with 426",
                      f"{relay_owns}; a proxy must forward {STREAM_PATH} unchanged (no prefix added "
                      f"or stripped)")
    if status in (502, 503, 504):
        return failed(seen, f"a proxy or load balancer answered ({status}) but there is no healthy relay "
                            f"behind it",
                      "check the relays behind it: target group health (GET /healthz must give 200), "
                      "is the relay running and listening on the port the proxy forwards to? "
                      "(journalctl -u liveline-relay)")
    if status == 405:
        return failed(seen, f"405 Method Not Allowed: something other than the relay handles "
                            f"{STREAM_PATH} (the relay answers GET there with 426)", relay_owns)
    if status in (301, 302, 303, 307, 308):
        return failed(f"{seen} → {answer.headers.get('location', '?')}",
                      f"{STREAM_PATH} redirects: Twilio does not follow redirects when it opens the "
                      f"WebSocket (31920)", "use the final URL (e.g. https:// directly) in RELAY_PUBLIC_URL")
    if status in (401, 403):
        return failed(seen, f"the path is behind authentication or a firewall rule ({status}): Twilio's "
                            f"only credential is X-Twilio-Signature",
                      f"exempt {STREAM_PATH} from the auth proxy or WAF rule")
    return failed(seen, f"HTTP {status} {answer.reason} where the relay answers 426 "
                        f"'{RELAY_426_TEXT}': something other than the relay answers this path", relay_owns)


# -- 5. healthz ---------------------------------------------------------------------------------


def check_healthz(t: RelayTarget) -> Outcome:
    """``GET /healthz``: version, active calls, draining."""
    answer = _get(t, HEALTH_PATH)
    if isinstance(answer, Outcome):
        return answer
    try:
        doc = json.loads(answer.body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "status" not in doc:
        return failed(_seen(answer), f"GET {HEALTH_PATH} did not answer the relay's JSON: the request was "
                                     f"routed somewhere else than GET {STREAM_PATH}",
                      "check the proxy's routing: every path must reach the relay")
    summary = (f"{doc['status']} · version {doc.get('version')} · {doc.get('active_calls')} of "
               f"{doc.get('max_calls')} calls · {'draining' if doc.get('draining') else 'not draining'}")
    if answer.status == 200 and doc["status"] == "ok":
        return passed(summary)
    if doc.get("draining"):
        return failed(summary, "the relay is draining (a deploy or scale-in is replacing it): it refuses "
                               "new calls with 503, which Twilio reports as 31920",
                      "wait for the instance refresh to finish (aws autoscaling describe-instance-refreshes); "
                      "if it never ends, look at the new instances' health")
    return failed(summary, f"the relay is at capacity ({doc.get('active_calls')} of {doc.get('max_calls')} "
                           f"calls): new calls are refused with 503",
                  "add relay instances (the Auto Scaling group's size) or raise RELAY_MAX_CALLS if CPU allows")


# -- 6. WebSocket handshake -----------------------------------------------------------------------


@dataclass(frozen=True)
class UpgradeAnswer:
    """How the relay answered a WebSocket upgrade."""

    status: int
    reason: str
    headers: dict[str, str]
    body: str
    accept_ok: bool


def sign(t: RelayTarget) -> str:
    """X-Twilio-Signature for the upgrade: the signed URL, no parameters (protocols.md 1.4)."""
    return str(RequestValidator(t.auth_token).compute_signature(t.signed_url, {}))


def websocket_upgrade(t: RelayTarget, signature: str | None) -> UpgradeAnswer:
    """One raw upgrade of ``/twilio/realtime``; on 101 the socket is closed cleanly (code 1000)."""
    key = base64.b64encode(os.urandom(16)).decode()
    expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    raw = socket.create_connection((t.host, t.port), timeout=t.timeout_s)
    sock = raw
    try:
        if t.secure:
            sock = t.ssl_context().wrap_socket(raw, server_hostname=t.host)
        lines = [f"GET {STREAM_PATH} HTTP/1.1", f"Host: {t.host_header}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                 f"User-Agent: {USER_AGENT}"]
        if signature:
            lines.append(f"X-Twilio-Signature: {signature}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the connection without answering the upgrade")
            buffer += chunk
            if len(buffer) > 65536:
                raise http.client.HTTPException("no end to the response headers")
        head, _, rest = buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        _version, status, reason = (status_line.split(" ", 2) + ["", ""])[:3]
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if not status.isdigit():
            raise http.client.BadStatusLine(status_line)
        if status == "101":
            _close_websocket(sock, rest)
            return UpgradeAnswer(101, reason, headers, "", headers.get("sec-websocket-accept") == expected)
        length = int(headers.get("content-length", "0") or 0)
        while len(rest) < min(length, 4096):
            chunk = sock.recv(4096)
            if not chunk:
                break
            rest += chunk
        return UpgradeAnswer(int(status), reason, headers, rest.decode("utf-8", "replace"), False)
    finally:
        sock.close()
        raw.close()


def _close_websocket(sock: socket.socket, pending: bytes) -> None:
    """Send close 1000 and wait briefly for the relay's answering close frame."""
    decoder = FrameDecoder(expect_masked=False, max_message_bytes=1 << 20)
    try:
        sock.sendall(encode_close(1000, "verify_relay", os.urandom(4)))
        sock.settimeout(2.0)
        data = pending
        while True:
            if any(opcode == OP_CLOSE for opcode, _ in decoder.feed(data)):
                return
            data = sock.recv(4096)
            if not data:
                return
    except (OSError, FrameError):
        return  # the socket is going away either way


def explain_refused_upgrade(t: RelayTarget, status: int, reason: str, body: str) -> tuple[str, str]:
    """(diagnosis, fix) for a signed upgrade answered with ``status`` instead of 101."""
    said = f" ({body.strip()[:160]})" if body.strip() else ""
    if status == 403:
        base = "signature check failed: RELAY_PUBLIC_URL differs from the URL Twilio uses, or the auth token is wrong"
        match = re.search(r"invalid for (\S+)", body)
        if match and match.group(1) != t.signed_url:
            expects = match.group(1)
            return (f"{base} — the relay checks signatures for {expects}, this check signed for "
                    f"{t.signed_url} ({t.signed_url_source})",
                    f"set RELAY_PUBLIC_URL on the relay and the webhook to the origin Twilio dials (the "
                    f"<Stream url> in the TwiML, without {STREAM_PATH}); if the relay is right, re-run "
                    f"this check with RELAY_PUBLIC_URL={expects.removesuffix(STREAM_PATH)}")
        if match:
            return (f"{base} — the URLs agree ({t.signed_url}), so the relay's TWILIO_AUTH_TOKEN is not "
                    f"the one this check used",
                    "give the relay the account's Auth Token (Twilio Console > Account > API keys & "
                    "tokens) as TWILIO_AUTH_TOKEN, the same value as the webhook's, and restart it")
        return (f"{base} — the 403 did not come from the relay's signature check{said}: a WAF or proxy "
                f"may refuse the upgrade", f"exempt {STREAM_PATH} from the WAF/proxy rule")
    twilio = f"Twilio would fail the stream with 31920 (handshake error): HTTP {status} {reason}{said}"
    if status == 503:
        return (f"{twilio}: the relay is draining or at capacity",
                "wait for the deploy to finish, or add relay capacity (RELAY_MAX_CALLS, instances)")
    if status == 426:
        return (f"{twilio}: the upgrade headers did not reach the relay — a proxy in front drops "
                f"Upgrade/Connection", "make the proxy pass WebSockets (nginx: proxy_http_version 1.1; "
                "proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\")")
    if status in (502, 504):
        return (f"{twilio}: a proxy answered; it has no healthy relay or does not pass WebSockets",
                "check the relays behind it and that the proxy supports WebSocket upgrades")
    if status == 404:
        return (f"{twilio}: no WebSocket endpoint at {STREAM_PATH}", "check that this is the relay")
    return (f"{twilio}: something between Twilio and the relay, or another server, refuses the upgrade",
            "check what answers the upgrade: the relay answers 101, 403 or 503")


def check_handshake(t: RelayTarget) -> Outcome:
    """101 with a correct Sec-WebSocket-Accept when signed like Twilio; 403 when unsigned."""
    try:
        unsigned = websocket_upgrade(t, None)
        signed = websocket_upgrade(t, sign(t)) if t.auth_token else None
    except (OSError, http.client.HTTPException) as exc:
        return failed(f"upgrade: {type(exc).__name__}: {exc}",
                      "the WebSocket upgrade got no answer: a proxy in the way does not pass WebSockets, "
                      "or the relay is hung; Twilio would fail with 31920", "check the proxy and the relay log")
    if unsigned.status == 101:
        return failed("an unsigned upgrade got 101 Switching Protocols",
                      "the relay accepts WebSocket upgrades without X-Twilio-Signature — anyone can open "
                      "calls on your OpenAI bill", "deploy the relay from this repository: it answers 403 "
                      "to an upgrade whose X-Twilio-Signature does not match")
    if signed is None:
        if unsigned.status == 403:
            return skipped("an unsigned upgrade is refused (403), as it should be; set TWILIO_AUTH_TOKEN "
                           "to check the signed handshake")
        diagnosis, fix = explain_refused_upgrade(t, unsigned.status, unsigned.reason, unsigned.body)
        return failed(f"unsigned upgrade answered HTTP {unsigned.status} {unsigned.reason}", diagnosis, fix)
    if signed.status != 101:
        diagnosis, fix = explain_refused_upgrade(t, signed.status, signed.reason, signed.body)
        return failed(f"signed upgrade answered HTTP {signed.status} {signed.reason}", diagnosis, fix)
    if not signed.accept_ok:
        return failed(f"101 with Sec-WebSocket-Accept {signed.headers.get('sec-websocket-accept')!r}",
                      "the Sec-WebSocket-Accept is wrong: something between Twilio and the relay answers "
                      "the upgrade itself; Twilio would drop the stream (31920)",
                      "remove or fix the intermediary that terminates WebSockets")
    return passed(f"101, Sec-WebSocket-Accept correct, signed for {t.signed_url}; unsigned refused "
                  f"({unsigned.status})")


# -- 7. OpenAI diagnostic -------------------------------------------------------------------------


def explain_openai(doc: Mapping[str, object]) -> tuple[str, str, str]:
    """(stage name, diagnosis, fix) for a failed ``/diagnostic/openai`` verdict."""
    stage, status, code = doc.get("stage"), doc.get("http_status"), doc.get("error_code")
    message, model = doc.get("error_message"), doc.get("model")
    host = urlsplit(str(doc.get("url") or "")).hostname or "the Realtime API"
    said = f": {message}" if message else ""
    refresh = "in SSM, then refresh the relays (or restart the local stack)"
    if stage == "dns":
        return "DNS", f"the relay cannot resolve {host}{said}", "check the relay's DNS resolver and OPENAI_REALTIME_URL"
    if stage == "tcp":
        return ("TCP", f"the relay cannot connect to {host}{said}: outbound HTTPS is blocked",
                "allow egress TCP 443 from the relays (security group, network ACL, NAT/internet route)")
    if stage == "tls":
        return ("TLS", f"TLS from the relay to {host} failed{said}",
                "a TLS-intercepting proxy or a missing CA bundle on the relay host: remove or trust it")
    code_text = f" {code}" if code else ""
    if stage == "handshake" and status == 401:
        return ("401", f"OpenAI refused the API key (401{code_text}){said}",
                f"set OPENAI_API_KEY to a valid key (platform.openai.com/api-keys) {refresh}")
    if stage == "handshake" and (status == 404 or code == "model_not_found" and status != 403):
        return ("model", f"OpenAI does not offer model {model} to this key ({status}{code_text}){said}",
                f"set OPENAI_REALTIME_MODEL to a realtime model the key may use {refresh}")
    if stage == "handshake" and status == 403:
        return ("403", f"OpenAI refused access (403{code_text}){said}: the key's project may not use model {model}",
                f"allow {model} for the project (platform.openai.com > project > limits), or set "
                f"OPENAI_REALTIME_MODEL to a model it may use {refresh}")
    if stage == "handshake" and status == 429:
        return ("429", f"OpenAI refused the session for quota or rate (429{code_text}){said}",
                "add credit or raise the organisation's limits (platform.openai.com/settings/organization/billing)")
    if stage == "handshake":
        return ("handshake", f"the Realtime upgrade failed (HTTP {status}{code_text}){said}",
                "check OPENAI_REALTIME_URL and the relay's log (openai.* lines)")
    return ("session", f"OpenAI opened the socket but rejected the session{code_text and f' ({code})'}{said}",
            "the relay's session.update does not suit this model: check OPENAI_REALTIME_MODEL and "
            "the relay's version")


def check_diagnostic(t: RelayTarget) -> Outcome:
    """``GET /diagnostic/openai``: OpenAI reachable, key valid, model allowed, session accepted."""
    if not t.diagnostic_token:
        return skipped("set DIAGNOSTIC_TOKEN (the relay's) to ask the relay whether it can reach OpenAI")
    answer = _get(t, DIAGNOSTIC_PATH, headers={"Authorization": f"Bearer {t.diagnostic_token}"},
                  timeout_s=t.diagnostic_timeout_s)
    if isinstance(answer, Outcome):
        return answer
    try:
        doc = json.loads(answer.body)
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    if answer.status == 401:
        return skipped("the relay refused DIAGNOSTIC_TOKEN (401): set the relay's own value")
    if answer.status == 404 and "disabled" in str(doc.get("error", "")):
        return skipped("the relay has no DIAGNOSTIC_TOKEN, so its diagnostic is disabled: set one on the relay")
    if answer.status == 200 and doc.get("ok"):
        stages = " · ".join(f"{k} {v:g}" for k, v in (doc.get("stages_ms") or {}).items()
                            if isinstance(v, (int, float)))
        return passed(f"session accepted by {doc.get('model')} in {doc.get('elapsed_ms')} ms ({stages} ms)")
    if answer.status == 502 and "stage" in doc:
        stage, diagnosis, fix = explain_openai(doc)
        return failed(f"failed at {stage}: stage {doc['stage']}, HTTP {doc.get('http_status')}, "
                      f"{doc.get('error_code')}", f"the relay cannot open a Realtime session — {diagnosis}", fix)
    return failed(_seen(answer), f"GET {DIAGNOSTIC_PATH} did not answer the relay's verdict",
                  "check that the relay is up to date and that the proxy forwards this path")


# -- 8. synthetic call ----------------------------------------------------------------------------


def _stream_target(t: RelayTarget) -> tuple[StreamTarget, str]:
    """Where the call goes and how its token was obtained; raises on a webhook failure."""
    if t.webhook_url:
        assert t.auth_token is not None
        from_webhook = target_from_webhook(t.webhook_url, auth_token=t.auth_token,
                                           public_url=t.webhook_public_url, timeout_s=t.timeout_s + 10)
        note = "token from the webhook"
        if from_webhook.url != t.signed_url:
            note += f"; its <Stream url> is {from_webhook.url}, not {t.signed_url}"
        return StreamTarget(t.ws_base + STREAM_PATH, t.signed_url, from_webhook.parameters,
                            from_webhook.call_sid, via=f"webhook {t.webhook_url}"), note
    stream = target_from_relay(t.ws_base, public_url=t.signed_url.removesuffix(STREAM_PATH),
                               stream_secret=t.stream_secret)
    return stream, "token minted with STREAM_TOKEN_SECRET"


def explain_close(code: int | None, reason: str, via_webhook: bool) -> tuple[str, str]:
    """(diagnosis, fix) for a relay that closed the stream before any audio."""
    said = f"close {code}{' ' + reason if reason else ''}"
    source = "the webhook" if via_webhook else "this check (STREAM_TOKEN_SECRET)"
    if code == 1008 and reason.startswith("token_"):
        return (f"stream token refused ({said}): STREAM_TOKEN_SECRET differs between {source} and the "
                f"relay, or the token expired",
                "give the webhook and the relay the same STREAM_TOKEN_SECRET and restart both; for "
                "token_expired check both clocks (NTP) and STREAM_TOKEN_TTL_SECONDS")
    if code == 1008:
        return (f"the relay ended the stream as a protocol violation ({said})", "see the relay's log")
    if code == 1011:
        return (f"the relay could not reach OpenAI ({said}): the caller hears silence, then the fallback",
                "run the OpenAI diagnostic (layer 7: set DIAGNOSTIC_TOKEN) to see which stage fails; the "
                "relay's log has call.ending reason=...")
    if code in (None, 1005, 1006):
        return (f"the stream dropped without a close code ({said}): a proxy cut it, or the relay process "
                f"died (Twilio 31903)", "look at the relay's log and the proxy's idle timeout")
    if code in (1001, 1013):
        return f"the relay is going away or busy ({said})", "retry; check for a deploy or saturation"
    return (f"the relay closed the stream before any audio ({said})",
            "look at the relay's log for this call (call.ending reason=...)")


def check_synthetic_call(t: RelayTarget) -> Outcome:
    """A simulated Twilio call: the assistant's audio must come back within ``call_timeout_s``."""
    if not t.auth_token:
        return skipped("set TWILIO_AUTH_TOKEN to sign the call's upgrade")
    if not t.stream_secret and not t.webhook_url:
        return skipped("set STREAM_TOKEN_SECRET (the relay's), or pass --webhook URL to get a stream token "
                       "as Twilio does")
    try:
        stream, note = _stream_target(t)
    except (OSError, ValueError, KeyError, ET.ParseError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()
        return failed(f"no stream token from the webhook: {exc}",
                      f"the webhook {t.webhook_url} did not give a stream token", "run scripts/verify_webhook.py "
                      "on it for the diagnosis, or give STREAM_TOKEN_SECRET instead of --webhook")
    utterance = audio.read_wav_ulaw(audio.CALLER_WAV)
    caller = SimulatedCaller(stream, auth_token=t.auth_token, caller_audio=utterance, wait_for_audio=False,
                             until_heard=True, hold_s=t.call_timeout_s, timeout_s=t.call_timeout_s,
                             ca_file=t.ca_file)
    result = caller.run()  # talks at once; hangs up on the first audio, or when time is up
    if result.handshake_status not in (None, 101):
        diagnosis, fix = explain_refused_upgrade(t, result.handshake_status, "", result.handshake_body)
        return failed(f"upgrade answered HTTP {result.handshake_status}", diagnosis, fix)
    if not result.connected:
        return failed("; ".join(result.errors) or "could not connect", "the call could not connect to the relay",
                      "see the earlier layers; a TLS error here means Twilio would fail too")
    if result.first_audio_ms is not None:
        return passed(f"assistant audio {result.first_audio_ms / 1000:.2f} s after connecting ({note})")
    if result.relay_hung_up:
        diagnosis, fix = explain_close(result.close_code, result.close_reason, bool(t.webhook_url))
        return failed(f"the relay closed the stream ({result.close_code} {result.close_reason}) before any "
                      f"audio ({note})", diagnosis, fix)
    return failed(f"no assistant audio within {t.call_timeout_s:g} s ({note})",
                  f"dead air: the relay took the call but no assistant audio came back in {t.call_timeout_s:g} s",
                  "run the OpenAI diagnostic (DIAGNOSTIC_TOKEN); check the relay's log for openai.* and "
                  "call.first_audio lines; raise --call-timeout if OpenAI is only slow")


# -- the run -----------------------------------------------------------------------------------------


def verify(t: RelayTarget) -> Report:
    """Run every layer against ``t``; stop at the first failure."""
    layers = [Layer("dns", "DNS", lambda: check_dns(t)),
              Layer("tcp", "TCP", lambda: check_tcp(t)),
              Layer("tls", "TLS", lambda: check_tls(t)),
              Layer("plain_get", f"GET {STREAM_PATH} → 426", lambda: check_plain_get(t)),
              Layer("healthz", f"GET {HEALTH_PATH}", lambda: check_healthz(t)),
              Layer("handshake", "WebSocket handshake", lambda: check_handshake(t)),
              Layer("diagnostic", "OpenAI diagnostic", lambda: check_diagnostic(t)),
              Layer("synthetic_call", "synthetic call", lambda: check_synthetic_call(t))]
    return Report("verify_relay", t.url, checklist.run_layers(layers))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared with verify_deploy.py."""
    parser.add_argument("--env-file", help="read credentials from this NAME=value file (default: "
                        ".local/stack.env, for a loopback target only)")
    parser.add_argument("--no-env-file", action="store_true", help="read no env file")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per network step (5)")
    parser.add_argument("--call-timeout", type=float, default=10.0,
                        help="seconds for the assistant's audio to come back in the synthetic call (10)")
    parser.add_argument("--ca-file", help="trust this CA instead of the public ones (Twilio would not)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Command line; returns the exit code (see scripts/checklist.py)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=checklist.EXIT_CODES_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="the relay: https://…, wss://…, http://127.0.0.1:8080 "
                        "(default: RELAY_URL)")
    parser.add_argument("--public-url", help="the wss:// origin Twilio dials (default: RELAY_PUBLIC_URL)")
    parser.add_argument("--webhook", help="get the call's stream token from this webhook, as Twilio does")
    parser.add_argument("--webhook-public-url", help="the origin Twilio signs webhook POSTs for (default: "
                        "WEBHOOK_PUBLIC_URL)")
    parser.add_argument("--auth-token", help="Twilio Auth Token (prefer TWILIO_AUTH_TOKEN: flags show in ps)")
    parser.add_argument("--diagnostic-token", help="prefer DIAGNOSTIC_TOKEN")
    parser.add_argument("--stream-secret", help="prefer STREAM_TOKEN_SECRET")
    add_arguments(parser)
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    # No URL: RELAY_URL from the environment, or from .local/stack.env (the local stack).
    probe = args.url or env.get("RELAY_URL") or "http://127.0.0.1"
    try:
        settings, source = checklist.gather_settings(env, args.env_file, args.no_env_file,
                                                     urlsplit(probe).hostname)
        url = args.url or settings.get("RELAY_URL")
        if not url:
            raise ValueError("give the relay's URL (or set RELAY_URL)")
        target = RelayTarget.create(
            url, public_url=args.public_url or settings.get("RELAY_PUBLIC_URL"),
            auth_token=args.auth_token or settings.get("TWILIO_AUTH_TOKEN"),
            diagnostic_token=args.diagnostic_token or settings.get("DIAGNOSTIC_TOKEN"),
            stream_secret=args.stream_secret or settings.get("STREAM_TOKEN_SECRET"),
            webhook_url=args.webhook,
            webhook_public_url=args.webhook_public_url or settings.get("WEBHOOK_PUBLIC_URL"),
            timeout_s=args.timeout, call_timeout_s=args.call_timeout, ca_file=args.ca_file)
    except ValueError as exc:
        print(f"verify_relay: {exc}", file=sys.stderr)
        return checklist.EXIT_USAGE
    report = verify(target)
    report.context = context_lines(target, source)
    print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) if args.json else report.render())
    return report.exit_code


def context_lines(t: RelayTarget, source: str) -> list[str]:
    """What the run used, without a secret in it."""
    names = {"TWILIO_AUTH_TOKEN": t.auth_token, "DIAGNOSTIC_TOKEN": t.diagnostic_token,
             "STREAM_TOKEN_SECRET": t.stream_secret}
    lines = [f"upgrades signed for {t.signed_url} ({t.signed_url_source})",
             f"credentials from {source}: {checklist.credential_summary(names)}"]
    if t.webhook_url:
        lines.append(f"stream token from the webhook {t.webhook_url}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
