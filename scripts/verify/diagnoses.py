"""Every failure the verify scripts can report, as data: a stable code -> (why, fix).

A failing layer names its diagnosis by code (``--json`` reports carry it: ``"code"``), with
the facts it found as parameters; the sentence an operator reads is the template here,
filled in. Tests assert on codes, and tests/scripts/test_diagnoses.py holds one golden
text per diagnosis, so the wording lives in one place and any change to it is seen.

Codes never change meaning once published (a cron job or a pipeline may match on them);
a new situation gets a new code. The Twilio error numbers cited (319xx, 11200, 12100...)
are the ones Twilio's debugger shows (docs/twilio-media-streams.md).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

STREAM_PATH = "/twilio/realtime"
VOICE_PATH = "/twilio/voice"
STATUS_PATH = "/twilio/status"
RELAY_TLS_IMPACT = "Twilio would fail this stream with 31910 (Stream - WebSocket - SSL Protocol Error)"
WEBHOOK_TLS_IMPACT = "Twilio cannot fetch the TwiML (11205 HTTP connection failure)"
_HANDSHAKE = "Twilio would fail the stream with 31920 (handshake error): {answer}"
_NO_SESSION = "the relay cannot open a Realtime session — "
_REFRESH = "in SSM, then refresh the relays (or restart the local stack)"
_RELAY_OWNS = ("the relay must own this port: check the start command (gunicorn -c relay/gunicorn.conf.py "
               "relay.wsgi:app) and what the proxy or load balancer forwards to it")
_START_RELAY = ("start the relay (make run locally; on a server: systemctl status liveline-relay, "
                "journalctl -u liveline-relay) and make it bind port {port} (RELAY_BIND)")
_NOTHING_LISTENING = ("nothing is listening on {host}:{port} — the relay process is not running or not bound to "
                      "this port (check the start command: the relay must own this port)")
_SIGNATURE = "signature check failed: RELAY_PUBLIC_URL differs from the URL Twilio uses, or the auth token is wrong"
_WEBHOOK_SIGNATURE = ("signature check failed: WEBHOOK_PUBLIC_URL differs from the URL Twilio calls, or the auth "
                      "token is wrong")


@dataclass(frozen=True)
class Diagnosis:
    """What a failure means (``why``) and the likely fix, as ``str.format`` templates."""

    why: str
    fix: str

    def fields(self) -> set[str]:
        """The parameters the templates need."""
        return {name for template in (self.why, self.fix)
                for _text, name, _spec, _conv in string.Formatter().parse(template) if name}


DIAGNOSES: dict[str, Diagnosis] = {
    # -- reaching a port (both scripts) ------------------------------------------------------------------
    "dns_unresolved": Diagnosis(
        "the name {host} does not resolve: the DNS record is missing, misspelt or not yet propagated; Twilio "
        "would fail the stream with 31904 (host unreachable)",
        "create the record (an alias to the load balancer) or fix the URL; check with dig +short {host}"),
    "dns_stopped_resolving": Diagnosis("{host} stopped resolving", "check the DNS record"),
    "tcp_refused": Diagnosis(_NOTHING_LISTENING, _START_RELAY),
    "tcp_timeout": Diagnosis(
        _NOTHING_LISTENING,
        _START_RELAY + ". A timeout rather than a refusal usually means a firewall or security group drops the "
        "packets: allow TCP {port} from anywhere (Twilio connects from any public address; it reports 31901)"),
    "tcp_unreachable": Diagnosis("there is no route to {host}:{port}; Twilio would fail with 31904 (host unreachable)",
                                 "check that the address is public and routable"),
    "tcp_gone": Diagnosis("{host}:{port} stopped accepting connections", "re-run"),
    "http_timeout": Diagnosis(
        "{host}:{port} accepts connections but does not answer HTTP in time: the process on the port is hung or "
        "overloaded, or a proxy waits on a dead backend",
        "look at the relay's log (journalctl -u liveline-relay) and its CPU; restart it"),
    "http_not_http": Diagnosis("{host}:{port} accepted the connection but did not answer HTTP",
                               "check which process owns this port (ss -ltnp) and that it is the relay"),
    "http_not_http_maybe_tls": Diagnosis(
        "{host}:{port} accepted the connection but did not answer HTTP — if this port serves TLS, use https://",
        "check which process owns this port (ss -ltnp) and that it is the relay"),
    # -- TLS (``impact``: what Twilio would do, per script) --------------------------------------------------
    "tls_self_signed": Diagnosis(
        "{impact}: the certificate is self-signed ({message}); Twilio accepts only certificates from a public CA",
        "serve a certificate from a public CA for {host}: ACM on the load balancer, or Let's Encrypt"),
    "tls_wrong_host": Diagnosis(
        "{impact}: the certificate is not valid for {host} ({message})",
        "issue the certificate for {host} (or add it as a subject alternative name), or use the host name the "
        "certificate names"),
    "tls_expired": Diagnosis("{impact}: the certificate has expired ({message})",
                             "renew it (ACM renews automatically only while its DNS validation record exists)"),
    "tls_untrusted_chain": Diagnosis(
        "{impact}: the certificate chain does not lead to a trusted CA ({message}): the server does not send its "
        "intermediate certificates, or the CA is private",
        "serve the full chain (fullchain.pem, not cert.pem) from a public CA"),
    "tls_rejected": Diagnosis("{impact}: the certificate was rejected ({message})",
                              "serve a valid certificate from a public CA for {host}"),
    "tls_not_tls": Diagnosis(
        "{impact}: the port does not speak TLS ({reason}): https:// points at a plain-HTTP port",
        "point https:// (wss://) at the TLS listener (443 on the load balancer), or use http:// when checking a "
        "relay instance directly"),
    "tls_handshake_failed": Diagnosis("{impact}: the TLS handshake failed ({reason})",
                                      "check the TLS listener for {host}: protocol versions, ciphers, certificate"),
    "tls_incomplete": Diagnosis("{impact}: the TLS handshake did not complete ({reason})",
                                "check the TLS listener (443) of the load balancer"),
    # -- the relay: plain GET on the stream route ---------------------------------------------------------------
    "frontend_on_relay_port": Diagnosis(
        "a frontend is being served on the relay's port, overshadowing the backend: GET " + STREAM_PATH
        + " returned {kind} instead of the relay's 426",
        "give the frontend its own port or host and route " + STREAM_PATH + " to the relay; " + _RELAY_OWNS),
    "route_not_loaded": Diagnosis(
        "the route is not loaded (404): a different app is running on this port, or the path is wrong; the relay "
        "answers GET " + STREAM_PATH + " with 426",
        _RELAY_OWNS + "; a proxy must forward " + STREAM_PATH + " unchanged (no prefix added or stripped)"),
    "proxy_no_healthy_relay": Diagnosis(
        "a proxy or load balancer answered ({status}) but there is no healthy relay behind it",
        "check the relays behind it: target group health (GET /healthz must give 200), is the relay running and "
        "listening on the port the proxy forwards to? (journalctl -u liveline-relay)"),
    "path_method_not_allowed": Diagnosis(
        "405 Method Not Allowed: something other than the relay handles " + STREAM_PATH + " (the relay answers GET "
        "there with 426)", _RELAY_OWNS),
    "path_redirects": Diagnosis(
        STREAM_PATH + " redirects: Twilio does not follow redirects when it opens the WebSocket (31920)",
        "use the final URL (e.g. https:// directly) in RELAY_PUBLIC_URL"),
    "path_behind_auth": Diagnosis(
        "the path is behind authentication or a firewall rule ({status}): Twilio's only credential is "
        "X-Twilio-Signature", "exempt " + STREAM_PATH + " from the auth proxy or WAF rule"),
    "not_the_relay": Diagnosis(
        "HTTP {status} {reason} where the relay answers 426 'WebSocket connection expected': something other than "
        "the relay answers this path", _RELAY_OWNS),
    # -- the relay: /healthz ----------------------------------------------------------------------------------
    "healthz_not_relay": Diagnosis(
        "GET /healthz did not answer the relay's JSON: the request was routed somewhere else than GET "
        + STREAM_PATH, "check the proxy's routing: every path must reach the relay"),
    "relay_draining": Diagnosis(
        "the relay is draining (a deploy or scale-in is replacing it): it refuses new calls with 503, which Twilio "
        "reports as 31920",
        "wait for the instance refresh to finish (aws autoscaling describe-instance-refreshes); if it never ends, "
        "look at the new instances' health"),
    "relay_saturated": Diagnosis(
        "the relay is at capacity ({active_calls} of {max_calls} calls): new calls are refused with 503",
        "add relay instances (the Auto Scaling group's size) or raise RELAY_MAX_CALLS if CPU allows"),
    # -- the relay: the WebSocket handshake --------------------------------------------------------------------
    "upgrade_no_answer": Diagnosis(
        "the WebSocket upgrade got no answer: a proxy in the way does not pass WebSockets, or the relay is hung; "
        "Twilio would fail with 31920", "check the proxy and the relay log"),
    "unsigned_upgrade_accepted": Diagnosis(
        "the relay accepts WebSocket upgrades without X-Twilio-Signature — anyone can open calls on your OpenAI "
        "bill", "deploy the relay from this repository: it answers 403 to an upgrade whose X-Twilio-Signature "
        "does not match"),
    "bad_accept_header": Diagnosis(
        "the Sec-WebSocket-Accept is wrong: something between Twilio and the relay answers the upgrade itself; "
        "Twilio would drop the stream (31920)", "remove or fix the intermediary that terminates WebSockets"),
    "close_unanswered": Diagnosis(
        "the relay took the WebSocket but did not answer its close frame within {timeout_s:g} s: a proxy in "
        "between does not pass WebSocket frames, or the relay is hung; Twilio's hang-ups would go unanswered",
        "check that the proxy passes WebSocket frames both ways, and the relay's log"),
    "signature_url_mismatch": Diagnosis(
        _SIGNATURE + " — the relay checks signatures for {expects}, this check signed for {signed_url} ({source})",
        "set RELAY_PUBLIC_URL on the relay and the webhook to the origin Twilio dials (the <Stream url> in the "
        "TwiML, without " + STREAM_PATH + "); if the relay is right, re-run this check with "
        "RELAY_PUBLIC_URL={expects_origin}"),
    "signature_token_mismatch": Diagnosis(
        _SIGNATURE + " — the URLs agree ({signed_url}), so the relay's TWILIO_AUTH_TOKEN is not the one this check "
        "used", "give the relay the account's Auth Token (Twilio Console > Account > API keys & tokens) as "
        "TWILIO_AUTH_TOKEN, the same value as the webhook's, and restart it"),
    "forbidden_not_by_relay": Diagnosis(
        "the upgrade was refused with 403, but not by the relay's signature check ({answer}): a WAF or proxy may "
        "refuse the upgrade", "exempt " + STREAM_PATH + " from the WAF/proxy rule"),
    "upgrade_relay_busy": Diagnosis(_HANDSHAKE + ": the relay is draining or at capacity",
                                    "wait for the deploy to finish, or add relay capacity (RELAY_MAX_CALLS, "
                                    "instances)"),
    "upgrade_headers_dropped": Diagnosis(
        _HANDSHAKE + ": the upgrade headers did not reach the relay — a proxy in front drops Upgrade/Connection",
        "make the proxy pass WebSockets (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; "
        "proxy_set_header Connection \"upgrade\")"),
    "upgrade_proxy_failed": Diagnosis(
        _HANDSHAKE + ": a proxy answered; it has no healthy relay or does not pass WebSockets",
        "check the relays behind it and that the proxy supports WebSocket upgrades"),
    "upgrade_not_found": Diagnosis(_HANDSHAKE + ": no WebSocket endpoint at " + STREAM_PATH,
                                   "check that this is the relay"),
    "upgrade_refused": Diagnosis(
        _HANDSHAKE + ": something between Twilio and the relay, or another server, refuses the upgrade",
        "check what answers the upgrade: the relay answers 101, 403 or 503"),
    # -- the relay: its own path to OpenAI (/diagnostic/openai) --------------------------------------------------
    "openai_dns": Diagnosis(_NO_SESSION + "the relay cannot resolve {host} ({message})",
                            "check the relay's DNS resolver and OPENAI_REALTIME_URL"),
    "openai_tcp": Diagnosis(
        _NO_SESSION + "the relay cannot connect to {host} ({message}): outbound HTTPS is blocked",
        "allow egress TCP 443 from the relays (security group, network ACL, NAT/internet route)"),
    "openai_tls": Diagnosis(_NO_SESSION + "TLS from the relay to {host} failed ({message})",
                            "a TLS-intercepting proxy or a missing CA bundle on the relay host: remove or trust it"),
    "openai_tls_self_signed": Diagnosis(
        _NO_SESSION + "{host} presented a self-signed certificate, which the relay does not trust ({message}): "
        "something between the relay and OpenAI intercepts TLS, or OPENAI_REALTIME_URL points at a server of your "
        "own",
        "point OPENAI_REALTIME_URL at OpenAI (wss://api.openai.com/v1/realtime); to trust a CA of your own, give "
        "the relay SSL_CERT_FILE=<a PEM bundle with it> in its environment (docs/openai-realtime.md)"),
    "openai_tls_wrong_host": Diagnosis(
        _NO_SESSION + "the certificate {host} presented is for another host name ({message}): OPENAI_REALTIME_URL "
        "names a host that server is not, or something in between answers for it",
        "check the host in OPENAI_REALTIME_URL (api.openai.com for OpenAI) and what the relay host's DNS resolves "
        "it to"),
    "openai_tls_untrusted": Diagnosis(
        _NO_SESSION + "the certificate {host} presented is not from a CA the relay trusts ({message}): a "
        "TLS-intercepting proxy, or no CA bundle on the relay host",
        "install the CA bundle (ca-certificates) on the relay host; for a CA of your own, give the relay "
        "SSL_CERT_FILE=<a PEM bundle with it> (docs/openai-realtime.md)"),
    "openai_key_refused": Diagnosis(
        _NO_SESSION + "OpenAI refused the API key ({answer}): {message}",
        "set OPENAI_API_KEY to a valid key (platform.openai.com/api-keys) " + _REFRESH),
    "openai_model_unavailable": Diagnosis(
        _NO_SESSION + "OpenAI does not offer model {model} to this key ({answer}): {message}",
        "set OPENAI_REALTIME_MODEL to a realtime model the key may use " + _REFRESH),
    "openai_forbidden": Diagnosis(
        _NO_SESSION + "OpenAI refused access ({answer}): {message}: the key's project may not use model {model}",
        "allow {model} for the project (platform.openai.com > project > limits), or set OPENAI_REALTIME_MODEL to a "
        "model it may use " + _REFRESH),
    "openai_quota": Diagnosis(
        _NO_SESSION + "OpenAI refused the session for quota or rate ({answer}): {message}",
        "add credit or raise the organisation's limits (platform.openai.com/settings/organization/billing)"),
    "openai_handshake_failed": Diagnosis(_NO_SESSION + "the Realtime upgrade failed ({answer}): {message}",
                                         "check OPENAI_REALTIME_URL and the relay's log (openai.* lines)"),
    "openai_session_rejected": Diagnosis(
        _NO_SESSION + "OpenAI opened the socket but rejected the session ({error_code}): {message}",
        "the relay's session.update does not suit this model: check OPENAI_REALTIME_MODEL and the relay's version"),
    "openai_local_model": Diagnosis(  # a note on a passed layer: the relay works, but not with OpenAI
        "the relay's OPENAI_REALTIME_URL is a model server on its own machine ({where}), not OpenAI: calls hear "
        "that model (make run's stand-in when OPENAI_API_KEY is unset: a scripted imitation, not a language "
        "model), not {model}",
        "to talk to {model}, export OPENAI_API_KEY (platform.openai.com/api-keys) and restart make run; on a "
        "server, unset OPENAI_REALTIME_URL"),
    "diagnostic_unexpected": Diagnosis("GET /diagnostic/openai did not answer the relay's verdict",
                                       "check that the relay is up to date and that the proxy forwards this path"),
    # -- the relay: a synthetic call -----------------------------------------------------------------------------
    "webhook_gave_no_token": Diagnosis(
        "the webhook {webhook} did not give a stream token",
        "run scripts/verify_webhook.py on it for the diagnosis, or give STREAM_TOKEN_SECRET instead of --webhook"),
    "call_could_not_connect": Diagnosis("the call could not connect to the relay",
                                        "see the earlier layers; a TLS error here means Twilio would fail too"),
    "stream_token_refused": Diagnosis(
        "stream token refused ({close}): STREAM_TOKEN_SECRET differs between {source} and the relay, or the token "
        "expired", "give the webhook and the relay the same STREAM_TOKEN_SECRET and restart both; for token_expired "
        "check both clocks (NTP) and STREAM_TOKEN_TTL_SECONDS"),
    "call_protocol_violation": Diagnosis("the relay ended the stream as a protocol violation ({close})",
                                         "see the relay's log"),
    "call_upstream_failed": Diagnosis(
        "the relay could not reach OpenAI ({close}): the caller hears silence, then the fallback",
        "run the OpenAI diagnostic (layer 7: set DIAGNOSTIC_TOKEN) to see which stage fails; the relay's log has "
        "call.ending reason=..."),
    "call_dropped": Diagnosis(
        "the stream dropped without a close code ({close}): a proxy cut it, or the relay process died (Twilio "
        "31903)", "look at the relay's log and the proxy's idle timeout"),
    "call_relay_busy": Diagnosis("the relay is going away or busy ({close})",
                                 "retry; check for a deploy or saturation"),
    "call_closed_early": Diagnosis("the relay closed the stream before any audio ({close})",
                                   "look at the relay's log for this call (call.ending reason=...)"),
    "dead_air": Diagnosis(
        "dead air: the relay took the call but no assistant audio came back in {timeout_s:g} s",
        "run the OpenAI diagnostic (DIAGNOSTIC_TOKEN); check the relay's log for openai.* and call.first_audio "
        "lines; raise --call-timeout if OpenAI is only slow"),
    # -- the webhook ---------------------------------------------------------------------------------------------
    "webhook_refused": Diagnosis(
        "nothing is listening on {host}:{port} — the webhook is not running or not bound to this port; Twilio would "
        "log 11205 and the caller hears an application error", "start it (make run locally) or check the Function URL"),
    "webhook_too_slow": Diagnosis("the webhook is too slow: Twilio gives up after 15 s (11200)",
                                  "look at its logs (a Lambda cold start, or a network call while answering)"),
    "webhook_not_http": Diagnosis("the webhook at {host}:{port} did not answer HTTP",
                                  "check the URL and that the webhook runs"),
    "webhook_not_found": Diagnosis(
        "no webhook at {url} (404): wrong path, or another app",
        "point Twilio at …" + VOICE_PATH + " of the webhook (terraform output webhook_url)"),
    "webhook_method_not_allowed": Diagnosis("POST is not allowed here (405)",
                                            "the webhook must take POST: check the URL"),
    "webhook_failed": Diagnosis(
        "the webhook failed (HTTP {status}): Twilio would log 11200 and the caller hears an application error",
        "read its log (Lambda: aws logs tail /aws/lambda/<function> --follow); a 502 from a Function URL means the "
        "function crashed or timed out"),
    "webhook_unexpected_status": Diagnosis("HTTP {status} where Twilio needs 200 TwiML",
                                           "check what answers this URL"),
    "webhook_accepts_unsigned": Diagnosis(
        "the webhook accepts unsigned requests — anyone can start calls on your OpenAI bill",
        "check X-Twilio-Signature on every request (twilio's RequestValidator over WEBHOOK_PUBLIC_URL + path and the "
        "form) and answer 403 when it fails: webhook_app does; make sure it is what runs at this URL"),
    "function_url_iam": Diagnosis(
        "the Function URL itself refused the request (AWS_IAM auth): Twilio cannot sign with AWS credentials",
        "set the Function URL's authorization type to NONE: the app checks Twilio's signature itself"),
    "webhook_signature_url_mismatch": Diagnosis(
        _WEBHOOK_SIGNATURE + " — the webhook checks signatures for {expects}, this check signed for {signed_url} "
        "({source})", "set WEBHOOK_PUBLIC_URL on the webhook to the origin configured in the Twilio Console"),
    "webhook_signature_token_mismatch": Diagnosis(
        "signature check failed: TWILIO_AUTH_TOKEN on the webhook is not the one this check used",
        "give the webhook the account's Auth Token (Twilio Console > Account > API keys & tokens)"),
    "twiml_wrong_content_type": Diagnosis("Twilio needs TwiML as text/xml (12300 Invalid Content-Type)",
                                          "answer with Content-Type: text/xml"),
    "twiml_not_xml": Diagnosis("Twilio cannot parse the answer (12100 Document parse failure)",
                               "build TwiML with twilio's VoiceResponse (it escapes values)"),
    "twiml_no_response": Diagnosis("TwiML must have <Response> at the root (12100)",
                                   "build TwiML with twilio's VoiceResponse"),
    "twiml_no_stream": Diagnosis("the call is never streamed to the relay: the caller hears only what the TwiML says",
                                 "answer <Connect><Stream url=\"wss://…" + STREAM_PATH + "\">"),
    "stream_url_not_wss": Diagnosis("Twilio streams only to wss:// URLs (31922 URL Schema Not Supported)",
                                    "set RELAY_PUBLIC_URL to the relay's wss:// origin"),
    "stream_url_has_query": Diagnosis(
        "the <Stream> URL has a query string: Twilio drops it (values must travel as <Parameter>)",
        "remove the query string from RELAY_PUBLIC_URL"),
    "stream_url_wrong_path": Diagnosis(
        "the relay streams at " + STREAM_PATH + ": Twilio would get 404 (31920)",
        "RELAY_PUBLIC_URL must be the origin only; the webhook adds " + STREAM_PATH),
    "stream_track_invalid": Diagnosis("with <Connect> only inbound_track is valid (31941)", "drop the track attribute"),
    "stream_to_another_relay": Diagnosis(
        "the webhook sends calls to another relay than the one you expect",
        "set RELAY_PUBLIC_URL on the webhook to the relay's origin (terraform output relay_public_url)"),
    "stream_token_missing": Diagnosis(
        "no <Parameter name=\"{parameter}\">: the relay refuses every call (close 1008)",
        "deploy webhook_app from this repository: it mints one per call"),
    "stream_token_unusable": Diagnosis("the relay would refuse it (close 1008)",
                                       "check the webhook's clock and STREAM_TOKEN_TTL_SECONDS"),
    "stream_token_mismatch": Diagnosis(
        "the relay would refuse this token (close 1008): STREAM_TOKEN_SECRET differs between the webhook and the "
        "relay, or the webhook's clock is off",
        "give both the same STREAM_TOKEN_SECRET (one SSM parameter) and restart them"),
    "status_callback_missing": Diagnosis(
        "stream errors (31920 and the like) would never reach your logs",
        "add statusCallback=\"…" + STATUS_PATH + "\" to <Stream>"),
    "status_callback_not_https": Diagnosis("the status callback must be https://",
                                           "set WEBHOOK_PUBLIC_URL to the https:// origin"),
    "fallback_missing": Diagnosis(
        "when the relay fails or closes, the caller hears silence and the call drops",
        "add <Say>…</Say><Hangup/> after </Connect> (FALLBACK_MESSAGE)"),
    # -- the scripts themselves -------------------------------------------------------------------------------
    "check_crashed": Diagnosis("this is a bug in the verify script, not a finding about the stack",
                               "report it with the traceback printed above"),
}


def explain(code: str, **params: Any) -> tuple[str, str]:
    """(why, fix) for ``code``, filled in with ``params``; KeyError for an unknown code."""
    diagnosis = DIAGNOSES[code]
    return diagnosis.why.format(**params), diagnosis.fix.format(**params)
