"""The relay's last two layers: its own path to OpenAI, and a whole call.

7. diagnostic: ``GET /diagnostic/openai`` (DIAGNOSTIC_TOKEN): the relay opens a Realtime
   session with its own URL, key and model; a failure names the stage (dns, tcp, tls,
   handshake, session) and OpenAI's answer.
8. call: a simulated Twilio call (scripts/fakes/twilio_caller.py) with a valid stream token
   and a spoken utterance: the assistant's audio must come back in ``call_timeout_s``.
"""

from __future__ import annotations

import json
import urllib.error
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from relay import model_server
from scripts import audio
from scripts.fakes.twilio_caller import SimulatedCaller
from scripts.fakes.twilio_webhook import StreamTarget, target_from_relay, target_from_webhook
from scripts.verify.checklist import Outcome, failed, noted, passed, skipped
from scripts.verify.diagnoses import STREAM_PATH
from scripts.verify.relay_checks import get, refused_upgrade, seen
from scripts.verify.targets import DIAGNOSTIC_PATH, RelayTarget

# -- 7. OpenAI diagnostic -------------------------------------------------------------------------


def explain_openai(doc: Mapping[str, object]) -> tuple[str, str, dict[str, Any]]:
    """(stage name for people, diagnosis code, facts) for a failed ``/diagnostic/openai`` verdict."""
    stage, status, code = doc.get("stage"), doc.get("http_status"), doc.get("error_code")
    message = str(doc.get("error_message") or "no detail given")
    host = urlsplit(str(doc.get("url") or "")).hostname or "the Realtime API"
    answer = " ".join(str(part) for part in (status, code) if part) or "no status"
    facts: dict[str, Any] = {"host": host, "message": message, "model": doc.get("model"), "answer": answer,
                             "error_code": code or "no code"}
    if stage == "dns":
        return "DNS", "openai_dns", facts
    if stage == "tcp":
        return "TCP", "openai_tcp", facts
    if stage == "tls":
        lower = message.lower()
        tls_code = ("openai_tls_self_signed" if "self-signed" in lower or "self signed" in lower
                    else "openai_tls_wrong_host" if "mismatch" in lower or "not valid for" in lower
                    else "openai_tls_untrusted" if "local issuer" in lower or "unable to get" in lower
                    else "openai_tls")
        return "TLS", tls_code, facts
    if stage == "handshake" and status == 401:
        return "401", "openai_key_refused", facts
    if stage == "handshake" and (status == 404 or code == "model_not_found" and status != 403):
        return "model", "openai_model_unavailable", facts
    if stage == "handshake" and status == 403:
        return "403", "openai_forbidden", facts
    if stage == "handshake" and status == 429:
        return "429", "openai_quota", facts
    if stage == "handshake":
        return "handshake", "openai_handshake_failed", facts
    return "session", "openai_session_rejected", facts


def check_diagnostic(t: RelayTarget) -> Outcome:
    """``GET /diagnostic/openai``: OpenAI reachable, key valid, model allowed, session accepted."""
    if not t.diagnostic_token:
        return skipped("set DIAGNOSTIC_TOKEN (the relay's) to ask the relay whether it can reach OpenAI")
    answer = get(t, DIAGNOSTIC_PATH, headers={"Authorization": f"Bearer {t.diagnostic_token}"},
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
        return session_accepted(doc)
    if answer.status == 502 and "stage" in doc:
        stage, code, facts = explain_openai(doc)
        return failed(f"failed at {stage}: stage {doc['stage']}, HTTP {doc.get('http_status')}, "
                      f"{doc.get('error_code')}", code, **facts)
    return failed(seen(answer), "diagnostic_unexpected")


def session_accepted(doc: Mapping[str, Any]) -> Outcome:
    """A session accepted: by OpenAI, or said plainly, by a model server on the relay's machine (a stand-in)."""
    stages = " · ".join(f"{k} {v:g}" for k, v in (doc.get("stages_ms") or {}).items() if isinstance(v, (int, float)))
    timing = f"in {doc.get('elapsed_ms')} ms ({stages} ms)"
    url = str(doc.get("url") or "")
    where = urlsplit(url).netloc or url
    # The relay says who answered (relay/model_server.py); an older relay only its URL.
    upstream = doc.get("upstream") or model_server.kind(url)
    if upstream == model_server.LOCAL:
        return noted(f"session accepted by a LOCAL model server at {where}, NOT OpenAI, {timing}",
                     "openai_local_model", where=where, model=doc.get("model"))
    if upstream == model_server.OTHER:
        return passed(f"session accepted by {where} (not api.openai.com) for model {doc.get('model')} {timing}")
    return passed(f"session accepted by {doc.get('model')} {timing}")


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


def explain_close(code: int | None, reason: str, via_webhook: bool) -> tuple[str, dict[str, Any]]:
    """(diagnosis code, facts) for a relay that closed the stream before any audio."""
    facts: dict[str, Any] = {"close": f"close {code}{' ' + reason if reason else ''}",
                             "source": "the webhook" if via_webhook else "this check (STREAM_TOKEN_SECRET)"}
    if code == 1008 and reason.startswith("token_"):
        return "stream_token_refused", facts
    if code == 1008:
        return "call_protocol_violation", facts
    if code == 1011:
        return "call_upstream_failed", facts
    if code in (None, 1005, 1006):
        return "call_dropped", facts
    if code in (1001, 1013):
        return "call_relay_busy", facts
    return "call_closed_early", facts


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
        return failed(f"no stream token from the webhook: {exc}", "webhook_gave_no_token", webhook=t.webhook_url)
    utterance = audio.read_wav_ulaw(audio.CALLER_WAV)
    caller = SimulatedCaller(stream, auth_token=t.auth_token, caller_audio=utterance, wait_for_audio=False,
                             until_heard=True, hold_s=t.call_timeout_s, timeout_s=t.call_timeout_s,
                             ca_file=t.ca_file)
    result = caller.run()  # talks at once; hangs up on the first audio, or when time is up
    if result.handshake_status not in (None, 101):
        code, facts = refused_upgrade(t, result.handshake_status, "", result.handshake_body)
        return failed(f"upgrade answered HTTP {result.handshake_status}", code, **facts)
    if not result.connected:
        return failed("; ".join(result.errors) or "could not connect", "call_could_not_connect")
    if result.first_audio_ms is not None:
        return passed(f"assistant audio {result.first_audio_ms / 1000:.2f} s after connecting ({note})")
    if result.relay_hung_up:
        code, facts = explain_close(result.close_code, result.close_reason, bool(t.webhook_url))
        return failed(f"the relay closed the stream ({result.close_code} {result.close_reason}) before any "
                      f"audio ({note})", code, **facts)
    return failed(f"no assistant audio within {t.call_timeout_s:g} s ({note})", "dead_air",
                  timeout_s=t.call_timeout_s)
