"""Check the webhook as Twilio calls it, and say in plain words what a caller would hear.

    .venv/bin/python scripts/verify_webhook.py http://127.0.0.1:5050 --relay ws://127.0.0.1:8080
    .venv/bin/python scripts/verify_webhook.py https://abc.lambda-url.eu-west-1.on.aws --relay wss://relay.example.com

Layers, in order; the run stops at the first failure (exit codes: scripts/checklist.py):

 1. unsigned POST   a form POST without X-Twilio-Signature gets ``403`` (otherwise anyone can
                    start calls on your OpenAI bill); also proves the URL answers at all
 2. signed POST     the incoming-call POST signed exactly as Twilio signs it gets ``200 text/xml``
 3. TwiML           the answer parses, with ``<Response>`` at the root (Twilio 12100)
 4. <Stream> URL    ``<Connect><Stream url>`` is ``wss://`` (``ws://`` only for loopback, flagged),
                    ``/twilio/realtime``, with no query string
 5. relay           that URL points at the expected relay (``--relay`` or RELAY_PUBLIC_URL)
 6. stream token    ``<Parameter name="streamToken">`` is present, unexpired, and verifies with
                    STREAM_TOKEN_SECRET when that is known
 7. status callback ``statusCallback`` on the ``<Stream>`` (stream errors get logged)
 8. fallback        ``<Say>``/``<Hangup>`` after ``</Connect>``: what a caller hears if the relay fails

Credentials: TWILIO_AUTH_TOKEN, WEBHOOK_PUBLIC_URL (the origin Twilio signs; by default the
URL given), RELAY_PUBLIC_URL, STREAM_TOKEN_SECRET; from flags, the environment or an env file.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import ssl
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twilio.request_validator import RequestValidator

from relay import stream_token
from scripts import checklist
from scripts.checklist import HttpAnswer, Layer, Outcome, Report, failed, passed, skipped
from scripts.fakes.twilio_messages import new_sid
from scripts.fakes.twilio_webhook import STREAM_PATH, call_form

VOICE_PATH = "/twilio/voice"
STATUS_PATH = "/twilio/status"
UNSIGNED_DIAGNOSIS = "the webhook accepts unsigned requests — anyone can start calls on your OpenAI bill"
USER_AGENT = "TwilioProxy/1.1 (liveline-verify-webhook)"
# Twilio waits at most 15 s for the answer (error 11200, protocols.md 1.7).
TWILIO_WAIT_S = 15.0


@dataclass(frozen=True)
class WebhookTarget:
    """The webhook to check and what the checks may use."""

    voice_url: str  # where the POST goes
    signed_url: str  # what the signature covers: WEBHOOK_PUBLIC_URL + /twilio/voice
    signed_url_source: str
    public_origin: str  # the origin Twilio calls (for the status callback check)
    relay_origin: str | None = None  # the expected <Stream> origin, ws(s)://host[:port]
    auth_token: str | None = None
    stream_secret: str | None = None
    timeout_s: float = TWILIO_WAIT_S
    ca_file: str | None = None

    def __repr__(self) -> str:
        return f"WebhookTarget({self.voice_url!r}, signed_url={self.signed_url!r})"

    @classmethod
    def create(cls, url: str, *, public_url: str | None = None, relay: str | None = None,
               auth_token: str | None = None, stream_secret: str | None = None,
               timeout_s: float = TWILIO_WAIT_S, ca_file: str | None = None) -> WebhookTarget:
        """Parse the webhook URL (its origin or the full /twilio/voice URL)."""
        base = _origin(url, "the webhook URL", ("http", "https"), VOICE_PATH)
        if public_url:
            public, source = _origin(public_url, "WEBHOOK_PUBLIC_URL", ("http", "https")), "from WEBHOOK_PUBLIC_URL"
        else:
            public, source = base, "from the URL given; set WEBHOOK_PUBLIC_URL if Twilio calls another"
        relay_origin = None
        if relay:
            relay_origin = _origin(relay, "the relay URL", ("http", "https", "ws", "wss"), STREAM_PATH)
            relay_origin = re.sub(r"^http", "ws", relay_origin)
        return cls(base + VOICE_PATH, public + VOICE_PATH, source, public, relay_origin, auth_token,
                   stream_secret, timeout_s, ca_file)

    def ssl_context(self) -> ssl.SSLContext:
        """The public CAs, or only ``--ca-file``."""
        return ssl.create_default_context(cafile=self.ca_file)


def _origin(url: str, what: str, schemes: tuple[str, ...], path: str = "") -> str:
    """``scheme://host[:port]`` of ``url``, which may end with ``path``; ValueError otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in schemes or not parts.hostname or parts.query \
            or parts.path.rstrip("/") not in ("", path):
        raise ValueError(f"{what} {url!r} must be an origin like {schemes[-1]}://host[:port]")
    return f"{parts.scheme.lower()}://{parts.netloc}"


class WebhookCheck:
    """The layers, one method each; later layers read the signed POST's TwiML."""

    def __init__(self, t: WebhookTarget) -> None:
        self.t = t
        self.call_sid = new_sid("CA")
        self.answer: HttpAnswer | None = None
        self.root: ET.Element | None = None
        self.stream: ET.Element | None = None

    def post(self, signed: bool) -> HttpAnswer:
        """POST the incoming-call form, signed as Twilio signs it or not at all."""
        form = call_form(self.call_sid if signed else new_sid("CA"))
        headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT}
        if signed:
            validator = RequestValidator(self.t.auth_token)
            headers["X-Twilio-Signature"] = str(validator.compute_signature(self.t.signed_url, form))
        return checklist.http_request(self.t.voice_url, method="POST", headers=headers, timeout_s=self.t.timeout_s,
                                      body=urllib.parse.urlencode(form).encode(), ssl_context=self.t.ssl_context())

    def _unreachable(self, exc: BaseException) -> Outcome:
        _scheme, host, port = checklist.origin(self.t.voice_url)
        if isinstance(exc, ConnectionRefusedError):
            return failed(f"connection refused by {host}:{port}",
                          f"nothing is listening on {host}:{port} — the webhook is not running or not bound "
                          f"to this port; Twilio would log 11205 and the caller hears an application error",
                          "start it (make run locally) or check the Function URL")
        if isinstance(exc, ssl.SSLError):
            what, fix = checklist.describe_tls_error(exc, host)
            return failed(f"TLS failed: {exc}",
                          f"Twilio cannot fetch the TwiML (11205 HTTP connection failure): {what}", fix)
        if isinstance(exc, TimeoutError):
            return failed(f"no answer within {self.t.timeout_s:g} s",
                          "the webhook is too slow: Twilio gives up after 15 s (11200)",
                          "look at its logs (a Lambda cold start, or a network call while answering)")
        return failed(f"{type(exc).__name__}: {exc}", f"the webhook at {host}:{port} did not answer HTTP",
                      "check the URL and that the webhook runs")

    def _status_problem(self, answer: HttpAnswer) -> Outcome:
        seen = f"HTTP {answer.status} {answer.reason}: {answer.text.strip()[:120]}"
        if answer.status == 404:
            return failed(seen, f"no webhook at {self.t.voice_url} (404): wrong path, or another app",
                          f"point Twilio at …{VOICE_PATH} of the webhook (terraform output webhook_url)")
        if answer.status == 405:
            return failed(seen, "POST is not allowed here (405)", "the webhook must take POST: check the URL")
        if answer.status >= 500:
            return failed(seen, f"the webhook failed (HTTP {answer.status}): Twilio would log 11200 and the "
                                f"caller hears an application error",
                          "read its log (Lambda: aws logs tail /aws/lambda/<function> --follow); a 502 from a "
                          "Function URL means the function crashed or timed out")
        return failed(seen, f"HTTP {answer.status} where Twilio needs 200 TwiML", "check what answers this URL")

    # -- the layers ------------------------------------------------------------------------

    def unsigned_post(self) -> Outcome:
        """An unsigned POST must be refused with 403."""
        try:
            answer = self.post(signed=False)
        except (OSError, http.client.HTTPException) as exc:
            return self._unreachable(exc)
        if answer.status == 403:
            return passed(f"refused with 403 ({answer.elapsed_ms:.0f} ms)")
        if 200 <= answer.status < 300:
            return failed(f"HTTP {answer.status} {answer.content_type} to a POST without X-Twilio-Signature",
                          UNSIGNED_DIAGNOSIS,
                          "check X-Twilio-Signature on every request (twilio's RequestValidator over "
                          "WEBHOOK_PUBLIC_URL + path and the form) and answer 403 when it fails: webhook_app "
                          "does; make sure it is what runs at this URL")
        return self._status_problem(answer)

    def signed_post(self) -> Outcome:
        """Twilio's signed POST gets 200 text/xml in time."""
        if not self.t.auth_token:
            return skipped("set TWILIO_AUTH_TOKEN to sign the POST as Twilio does")
        try:
            answer = self.post(signed=True)
        except (OSError, http.client.HTTPException) as exc:
            return self._unreachable(exc)
        if answer.status == 403:
            return failed(f"HTTP 403: {answer.text.strip()[:160]}", *self._signature_problem(answer.text))
        if answer.status != 200:
            return self._status_problem(answer)
        if answer.content_type not in ("text/xml", "application/xml"):
            return failed(f"200 with Content-Type {answer.content_type or '(none)'}",
                          "Twilio needs TwiML as text/xml (12300 Invalid Content-Type)",
                          "answer with Content-Type: text/xml")
        self.answer = answer
        slow = " — slow: Twilio gives up at 15 s (11200)" if answer.elapsed_ms > 5000 else ""
        return passed(f"200 {answer.content_type} in {answer.elapsed_ms:.0f} ms, signed for "
                      f"{self.t.signed_url}{slow}")

    def _signature_problem(self, body: str) -> tuple[str, str]:
        if '"Message":"Forbidden"' in body.replace(" ", ""):
            return ("the Function URL itself refused the request (AWS_IAM auth): Twilio cannot sign with AWS "
                    "credentials", "set the Function URL's authorization type to NONE: the app checks "
                    "Twilio's signature itself")
        match = re.search(r"does not match (\S+):", body)
        if match and match.group(1) != self.t.signed_url:
            return (f"signature check failed: WEBHOOK_PUBLIC_URL differs from the URL Twilio calls, or the "
                    f"auth token is wrong — the webhook checks signatures for {match.group(1)}, this check "
                    f"signed for {self.t.signed_url} ({self.t.signed_url_source})",
                    "set WEBHOOK_PUBLIC_URL on the webhook to the origin configured in the Twilio Console")
        return ("signature check failed: TWILIO_AUTH_TOKEN on the webhook is not the one this check used",
                "give the webhook the account's Auth Token (Twilio Console > Account > API keys & tokens)")

    def twiml(self) -> Outcome:
        """The answer is TwiML: XML with <Response> at the root."""
        assert self.answer is not None
        try:
            root = ET.fromstring(self.answer.body)
        except ET.ParseError as exc:
            return failed(f"not XML: {exc}", "Twilio cannot parse the answer (12100 Document parse failure)",
                          "build TwiML with twilio's VoiceResponse (it escapes values)")
        if root.tag != "Response":
            return failed(f"root element <{root.tag}>", "TwiML must have <Response> at the root (12100)",
                          "build TwiML with twilio's VoiceResponse")
        self.root = root
        return passed(f"<Response> with {', '.join('<' + child.tag + '>' for child in root)}")

    def stream_url(self) -> Outcome:
        """<Connect><Stream url> is wss://…/twilio/realtime with no query string."""
        assert self.root is not None
        self.stream = self.root.find("./Connect/Stream")
        if self.stream is None:
            return failed("no <Connect><Stream>", "the call is never streamed to the relay: the caller hears "
                          "only what the TwiML says", "answer <Connect><Stream url=\"wss://…/twilio/realtime\">")
        url = self.stream.get("url", "")
        parts = urlsplit(url)
        flag = ""
        if parts.scheme == "ws" and checklist.is_loopback(parts.hostname or ""):
            flag = " (ws:// accepted for a loopback relay only: Twilio needs wss://)"
        elif parts.scheme != "wss":
            return failed(f"<Stream url=\"{url}\">", "Twilio streams only to wss:// URLs (31922 URL Schema Not "
                          "Supported)", "set RELAY_PUBLIC_URL to the relay's wss:// origin")
        if parts.query or parts.fragment:
            return failed(f"<Stream url=\"{url}\">", "the <Stream> URL has a query string: Twilio drops it (values "
                          "must travel as <Parameter>)", "remove the query string from RELAY_PUBLIC_URL")
        if parts.path != STREAM_PATH:
            return failed(f"<Stream url=\"{url}\">", f"the relay streams at {STREAM_PATH}: Twilio would get 404 "
                          f"(31920)", f"RELAY_PUBLIC_URL must be the origin only; the webhook adds {STREAM_PATH}")
        if self.stream.get("track", "inbound_track") != "inbound_track":
            return failed(f"track=\"{self.stream.get('track')}\"", "with <Connect> only inbound_track is valid "
                          "(31941)", "drop the track attribute")
        return passed(url + flag)

    def relay(self) -> Outcome:
        """The <Stream> URL points at the expected relay."""
        assert self.stream is not None
        if not self.t.relay_origin:
            return skipped("pass --relay wss://… (or set RELAY_PUBLIC_URL) to check where calls go")
        url = self.stream.get("url", "")
        expected = self.t.relay_origin + STREAM_PATH
        if url != expected:
            return failed(f"<Stream url> is {url}, expected {expected}",
                          "the webhook sends calls to another relay than the one you expect",
                          "set RELAY_PUBLIC_URL on the webhook to the relay's origin (terraform output "
                          "relay_public_url)")
        return passed(f"calls go to {expected}")

    def stream_token(self) -> Outcome:
        """<Parameter name="streamToken"> is present and unexpired; verified when the secret is known."""
        assert self.stream is not None
        params = {p.get("name"): p.get("value", "") for p in self.stream.findall("Parameter")}
        token = params.get(stream_token.PARAMETER_NAME)
        if not token:
            return failed(f"parameters: {', '.join(str(name) for name in params) or 'none'}",
                          f"no <Parameter name=\"{stream_token.PARAMETER_NAME}\">: the relay refuses every call "
                          f"(close 1008)", "deploy webhook_app from this repository: it mints one per call")
        now = time.time()
        if not self.t.stream_secret:
            match = re.fullmatch(r"v1\.(\d+)\.[A-Za-z0-9_-]+", token)
            if match is None or int(match.group(1)) < now:
                return failed("the token is malformed or expired", "the relay would refuse it (close 1008)",
                              "check the webhook's clock and STREAM_TOKEN_TTL_SECONDS")
            return passed(f"present, expires in {int(match.group(1)) - now:.0f} s (set STREAM_TOKEN_SECRET to "
                          f"verify it)")
        try:
            expires = stream_token.verify(self.t.stream_secret, token, self.call_sid, now)
        except stream_token.StreamTokenError as exc:
            return failed(f"the token does not verify: {exc.reason}",
                          "the relay would refuse this token (close 1008): STREAM_TOKEN_SECRET differs between "
                          "the webhook and the relay, or the webhook's clock is off",
                          "give both the same STREAM_TOKEN_SECRET (one SSM parameter) and restart them")
        return passed(f"verifies with STREAM_TOKEN_SECRET for this CallSid, expires in {expires - now:.0f} s")

    def status_callback(self) -> Outcome:
        """The <Stream> has a statusCallback, so stream errors reach the webhook's log."""
        assert self.stream is not None
        url = self.stream.get("statusCallback", "")
        if not url:
            return failed("no statusCallback", "stream errors (31920 and the like) would never reach your logs",
                          f"add statusCallback=\"…{STATUS_PATH}\" to <Stream>")
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and checklist.is_loopback(parts.hostname or "")):
            return failed(f"statusCallback=\"{url}\"", "the status callback must be https://",
                          "set WEBHOOK_PUBLIC_URL to the https:// origin")
        method = self.stream.get("statusCallbackMethod", "POST")
        expected = self.t.public_origin + STATUS_PATH
        note = "" if url == expected else f" (not {expected}: WEBHOOK_PUBLIC_URL differs?)"
        return passed(f"{method} {url}{note}")

    def fallback(self) -> Outcome:
        """<Say>/<Hangup> after </Connect>: what a caller hears when the relay fails."""
        assert self.root is not None
        tags = [child.tag for child in self.root]
        after = tags[tags.index("Connect") + 1:] if "Connect" in tags else []
        if not any(tag in ("Say", "Play", "Redirect", "Dial", "Enqueue") for tag in after):
            return failed(f"after </Connect>: {', '.join(after) or 'nothing'}",
                          "when the relay fails or closes, the caller hears silence and the call drops",
                          "add <Say>…</Say><Hangup/> after </Connect> (FALLBACK_MESSAGE)")
        say = self.root.find("Say")
        words = (say.text or "").strip() if say is not None else ""
        text = f" “{words if len(words) <= 60 else words[:57].rstrip() + '…'}”" if words else ""
        return passed(f"{' then '.join('<' + tag + '>' for tag in after)}{text}")


def verify(t: WebhookTarget) -> Report:
    """Run every layer against ``t``; stop at the first failure."""
    c = WebhookCheck(t)
    layers = [Layer("unsigned_post", "unsigned POST → 403", c.unsigned_post),
              Layer("signed_post", "signed POST → 200 TwiML", c.signed_post),
              Layer("twiml", "TwiML parses", c.twiml, needs="signed_post"),
              Layer("stream_url", "<Stream> URL", c.stream_url, needs="twiml"),
              Layer("relay", "points at the relay", c.relay, needs="stream_url"),
              Layer("stream_token", "stream token", c.stream_token, needs="stream_url"),
              Layer("status_callback", "status callback", c.status_callback, needs="stream_url"),
              Layer("fallback", "fallback after </Connect>", c.fallback, needs="twiml")]
    return Report("verify_webhook", t.voice_url, checklist.run_layers(layers))


def context_lines(t: WebhookTarget, source: str) -> list[str]:
    """What the run used, without a secret in it."""
    names = {"TWILIO_AUTH_TOKEN": t.auth_token, "STREAM_TOKEN_SECRET": t.stream_secret}
    return [f"POST signed for {t.signed_url} ({t.signed_url_source})",
            f"expected relay: {t.relay_origin or '(not given)'}",
            f"credentials from {source}: {checklist.credential_summary(names)}"]


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Command line; returns the exit code (see scripts/checklist.py)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=checklist.EXIT_CODES_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="the webhook origin or its /twilio/voice URL (default: WEBHOOK_URL)")
    parser.add_argument("--relay", help="the relay origin the TwiML must point at (default: RELAY_PUBLIC_URL)")
    parser.add_argument("--public-url", help="the origin Twilio calls and signs (default: WEBHOOK_PUBLIC_URL)")
    parser.add_argument("--auth-token", help="Twilio Auth Token (prefer TWILIO_AUTH_TOKEN: flags show in ps)")
    parser.add_argument("--stream-secret", help="prefer STREAM_TOKEN_SECRET")
    parser.add_argument("--env-file", help="read credentials from this file (default: .local/stack.env, "
                        "for a loopback target only)")
    parser.add_argument("--no-env-file", action="store_true", help="read no env file")
    parser.add_argument("--timeout", type=float, default=TWILIO_WAIT_S, help="seconds per request (15, Twilio's)")
    parser.add_argument("--ca-file", help="trust this CA instead of the public ones (Twilio would not)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    probe = args.url or env.get("WEBHOOK_URL") or "http://127.0.0.1"
    try:
        settings, source = checklist.gather_settings(env, args.env_file, args.no_env_file,
                                                     urlsplit(probe).hostname)
        url = args.url or settings.get("WEBHOOK_URL")
        if not url:
            raise ValueError("give the webhook's URL (or set WEBHOOK_URL)")
        target = WebhookTarget.create(
            url, public_url=args.public_url or settings.get("WEBHOOK_PUBLIC_URL"),
            relay=args.relay or settings.get("RELAY_PUBLIC_URL"),
            auth_token=args.auth_token or settings.get("TWILIO_AUTH_TOKEN"),
            stream_secret=args.stream_secret or settings.get("STREAM_TOKEN_SECRET"),
            timeout_s=args.timeout, ca_file=args.ca_file)
    except ValueError as exc:
        print(f"verify_webhook: {exc}", file=sys.stderr)
        return checklist.EXIT_USAGE
    report = verify(target)
    report.context = context_lines(target, source)
    print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) if args.json else report.render())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
