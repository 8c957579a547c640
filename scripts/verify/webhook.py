"""verify_webhook: check the webhook as Twilio calls it, and say in plain words what a caller would hear.

    .venv/bin/python scripts/verify_webhook.py http://127.0.0.1:5050 --relay ws://127.0.0.1:8080
    .venv/bin/python scripts/verify_webhook.py https://abc.lambda-url.eu-west-1.on.aws --relay wss://relay.example.com

Layers, in order; the run stops at the first failure (exit codes: checklist.py), and a
failure is reported with a stable diagnosis code (``--json``: ``"code"``; diagnoses.py):

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
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

from relay import stream_token
from scripts.fakes.twilio_messages import new_sid
from scripts.fakes.twilio_webhook import call_form
from scripts.verify import checklist, settings
from scripts.verify.checklist import Layer, Outcome, Report, failed, passed, skipped
from scripts.verify.diagnoses import STATUS_PATH, STREAM_PATH, WEBHOOK_TLS_IMPACT
from scripts.verify.probes import HttpAnswer, http_request, tls_problem
from scripts.verify.targets import TWILIO_WAIT_S, WebhookTarget

USER_AGENT = "TwilioProxy/1.1 (liveline-verify-webhook)"


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
        return http_request(self.t.voice_url, method="POST", headers=headers, timeout_s=self.t.timeout_s,
                                      body=urllib.parse.urlencode(form).encode(), ssl_context=self.t.ssl_context())

    def _unreachable(self, exc: BaseException) -> Outcome:
        _scheme, host, port = settings.origin(self.t.voice_url)
        if isinstance(exc, ConnectionRefusedError):
            return failed(f"connection refused by {host}:{port}", "webhook_refused", host=host, port=port)
        if isinstance(exc, ssl.SSLError):
            code, facts = tls_problem(exc)
            return failed(f"TLS failed: {exc}", code, impact=WEBHOOK_TLS_IMPACT, host=host, **facts)
        if isinstance(exc, TimeoutError):
            return failed(f"no answer within {self.t.timeout_s:g} s", "webhook_too_slow")
        return failed(f"{type(exc).__name__}: {exc}", "webhook_not_http", host=host, port=port)

    def _status_problem(self, answer: HttpAnswer) -> Outcome:
        seen = f"HTTP {answer.status} {answer.reason}: {answer.text.strip()[:120]}"
        if answer.status == 404:
            return failed(seen, "webhook_not_found", url=self.t.voice_url)
        if answer.status == 405:
            return failed(seen, "webhook_method_not_allowed")
        if answer.status >= 500:
            return failed(seen, "webhook_failed", status=answer.status)
        return failed(seen, "webhook_unexpected_status", status=answer.status)

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
                          "webhook_accepts_unsigned")
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
            code, facts = self._signature_problem(answer.text)
            return failed(f"HTTP 403: {answer.text.strip()[:160]}", code, **facts)
        if answer.status != 200:
            return self._status_problem(answer)
        if answer.content_type not in ("text/xml", "application/xml"):
            return failed(f"200 with Content-Type {answer.content_type or '(none)'}", "twiml_wrong_content_type")
        self.answer = answer
        slow = " — slow: Twilio gives up at 15 s (11200)" if answer.elapsed_ms > 5000 else ""
        return passed(f"200 {answer.content_type} in {answer.elapsed_ms:.0f} ms, signed for "
                      f"{self.t.signed_url}{slow}")

    def _signature_problem(self, body: str) -> tuple[str, dict[str, str]]:
        if '"Message":"Forbidden"' in body.replace(" ", ""):
            return "function_url_iam", {}
        match = re.search(r"does not match (\S+):", body)
        if match and match.group(1) != self.t.signed_url:
            return "webhook_signature_url_mismatch", {"expects": match.group(1), "signed_url": self.t.signed_url,
                                                      "source": self.t.signed_url_source}
        return "webhook_signature_token_mismatch", {}

    def twiml(self) -> Outcome:
        """The answer is TwiML: XML with <Response> at the root."""
        assert self.answer is not None
        try:
            root = ET.fromstring(self.answer.body)
        except ET.ParseError as exc:
            return failed(f"not XML: {exc}", "twiml_not_xml")
        if root.tag != "Response":
            return failed(f"root element <{root.tag}>", "twiml_no_response")
        self.root = root
        return passed(f"<Response> with {', '.join('<' + child.tag + '>' for child in root)}")

    def stream_url(self) -> Outcome:
        """<Connect><Stream url> is wss://…/twilio/realtime with no query string."""
        assert self.root is not None
        self.stream = self.root.find("./Connect/Stream")
        if self.stream is None:
            return failed("no <Connect><Stream>", "twiml_no_stream")
        url = self.stream.get("url", "")
        parts = urlsplit(url)
        flag = ""
        if parts.scheme == "ws" and settings.is_loopback(parts.hostname or ""):
            flag = " (ws:// accepted for a loopback relay only: Twilio needs wss://)"
        elif parts.scheme != "wss":
            return failed(f"<Stream url=\"{url}\">", "stream_url_not_wss")
        if parts.query or parts.fragment:
            return failed(f"<Stream url=\"{url}\">", "stream_url_has_query")
        if parts.path != STREAM_PATH:
            return failed(f"<Stream url=\"{url}\">", "stream_url_wrong_path")
        if self.stream.get("track", "inbound_track") != "inbound_track":
            return failed(f"track=\"{self.stream.get('track')}\"", "stream_track_invalid")
        return passed(url + flag)

    def relay(self) -> Outcome:
        """The <Stream> URL points at the expected relay."""
        assert self.stream is not None
        if not self.t.relay_origin:
            return skipped("pass --relay wss://… (or set RELAY_PUBLIC_URL) to check where calls go")
        url = self.stream.get("url", "")
        expected = self.t.relay_origin + STREAM_PATH
        if url != expected:
            return failed(f"<Stream url> is {url}, expected {expected}", "stream_to_another_relay")
        return passed(f"calls go to {expected}")

    def stream_token(self) -> Outcome:
        """<Parameter name="streamToken"> is present and unexpired; verified when the secret is known."""
        assert self.stream is not None
        params = {p.get("name"): p.get("value", "") for p in self.stream.findall("Parameter")}
        token = params.get(stream_token.PARAMETER_NAME)
        if not token:
            return failed(f"parameters: {', '.join(str(name) for name in params) or 'none'}", "stream_token_missing",
                          parameter=stream_token.PARAMETER_NAME)
        now = time.time()
        if not self.t.stream_secret:
            match = re.fullmatch(r"v2\.(\d+)\.[A-Za-z0-9_-]+", token)
            if match is None or int(match.group(1)) < now:
                return failed("the token is malformed or expired", "stream_token_unusable")
            return passed(f"present, expires in {int(match.group(1)) - now:.0f} s (set STREAM_TOKEN_SECRET to "
                          f"verify it)")
        try:
            expires = stream_token.verify_parameters(self.t.stream_secret, params, self.call_sid, now).expires
        except stream_token.StreamTokenError as exc:
            return failed(f"the token does not verify: {exc.reason}", "stream_token_mismatch")
        return passed(f"verifies with STREAM_TOKEN_SECRET for this CallSid, expires in {expires - now:.0f} s")

    def status_callback(self) -> Outcome:
        """The <Stream> has a statusCallback, so stream errors reach the webhook's log."""
        assert self.stream is not None
        url = self.stream.get("statusCallback", "")
        if not url:
            return failed("no statusCallback", "status_callback_missing")
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and settings.is_loopback(parts.hostname or "")):
            return failed(f"statusCallback=\"{url}\"", "status_callback_not_https")
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
            return failed(f"after </Connect>: {', '.join(after) or 'nothing'}", "fallback_missing")
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
            f"credentials from {source}: {settings.credential_summary(names)}"]


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Command line; returns the exit code (see checklist.py)."""
    parser = argparse.ArgumentParser(prog="verify_webhook.py", description=__doc__.split("\n\n")[0],
                                     epilog=checklist.EXIT_CODES_HELP,
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
        values, source = settings.gather_settings(env, args.env_file, args.no_env_file, urlsplit(probe).hostname)
        url = args.url or values.get("WEBHOOK_URL")
        if not url:
            raise ValueError("give the webhook's URL (or set WEBHOOK_URL)")
        target = WebhookTarget.create(
            url, public_url=args.public_url or values.get("WEBHOOK_PUBLIC_URL"),
            relay=args.relay or values.get("RELAY_PUBLIC_URL"),
            auth_token=args.auth_token or values.get("TWILIO_AUTH_TOKEN"),
            stream_secret=args.stream_secret or values.get("STREAM_TOKEN_SECRET"),
            timeout_s=args.timeout, ca_file=args.ca_file)
    except ValueError as exc:
        print(f"verify_webhook: {exc}", file=sys.stderr)
        return checklist.EXIT_USAGE
    report = verify(target)
    report.context = context_lines(target, source)
    print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) if args.json else report.render())
    return report.exit_code

