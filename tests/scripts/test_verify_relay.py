"""scripts/verify_relay.py against real local stand-ins: each failure an operator meets at
2 a.m., diagnosed by its stable code (the sentences are in scripts/verify/diagnoses.py, each
checked once by test_diagnoses.py), with the exit code a cron job or a deploy pipeline reads."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from websockets.utils import accept_key

from scripts import verify_relay
from scripts.fakes.openai import Behaviour, Scenario, StandinModel
from scripts.fakes.twilio_caller import SimulatedCaller
from scripts.fakes.twilio_webhook import target_from_relay
from tests.conftest import API_KEY, AUTH_TOKEN, ROOT, STREAM_SECRET, RunningRelay, free_port
from tests.helpers import wait_until
from tests.scripts.conftest import (
    SECRETS,
    Certificate,
    Report,
    Serve,
    failure,
    layer,
    relay_app,
    static_app,
    statuses,
)

Run = Callable[..., tuple[int, str]]
RunJson = Callable[..., tuple[int, Report]]

LAYERS = ["dns", "tcp", "tls", "plain_get", "healthz", "handshake", "diagnostic", "synthetic_call"]

NEXT_JS_404 = """<!DOCTYPE html><html><head><meta charSet="utf-8"/><title>404: This page could not be found</title>
<script src="/_next/static/chunks/webpack-8fa1640cc84ba8fe.js" defer=""></script></head>
<body><div id="__next"><h1>404</h1><h2>This page could not be found.</h2></div>
<script id="__NEXT_DATA__" type="application/json">{"props":{"pageProps":{"statusCode":404}},"page":"/_error",
"buildId":"hP2xQ3","nextExport":true,"isFallback":false,"gip":true,"scriptLoader":[]}</script></body></html>"""
SPA_INDEX = """<!doctype html><html lang="en"><head><title>Liveline console</title>
<script type="module" crossorigin src="/assets/index-4f8a9c.js"></script></head>
<body><div id="root"></div></body></html>"""
WERKZEUG_404 = """<!doctype html>
<html lang=en>
<title>404 Not Found</title>
<h1>Not Found</h1>
<p>The requested URL was not found on the server.</p>
"""
NGINX_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
             "</h1></center>\r\n</body>\r\n</html>\r\n")


# -- where nothing or something else answers --------------------------------------------------


def test_nothing_listening(run_json: RunJson) -> None:
    port = free_port()
    code, report = run_json(verify_relay.main, f"http://127.0.0.1:{port}")
    assert code == 1 and failure(report) == ("tcp", "tcp_refused")
    assert layer(report, "tcp")["detail"] == f"connection refused by 127.0.0.1:{port}"
    assert f"127.0.0.1:{port}" in layer(report, "tcp")["diagnosis"]  # the facts fill the table's sentence
    assert statuses(report) == {"dns": "passed", "tcp": "failed", **{name: "not_run" for name in LAYERS[2:]}}


def test_a_failure_reads_as_a_checklist_for_people(run_script: Run) -> None:
    """The human report: the failed layer, then why and fix from the diagnosis table."""
    port = free_port()
    code, out = run_script(verify_relay.main, f"http://127.0.0.1:{port}")
    assert code == 1
    assert "✓ DNS" in out and f"✗ TCP connection refused by 127.0.0.1:{port}" in out
    assert "– TLS not run: TCP failed" in out
    assert out.index("FAILED at TCP (exit 1)") < out.index("why: nothing is listening") < out.index("fix: start")


@pytest.mark.parametrize("status,page,kind", [
    ("404 Not Found", NEXT_JS_404, "a Next.js page"),
    ("200 OK", SPA_INDEX, "a single-page-app page (index.html)"),
])
def test_a_frontend_on_the_relays_port(run_json: RunJson, serve: Serve, status: str, page: str, kind: str) -> None:
    port = serve(static_app(status, page, headers={"X-Powered-By": "Next.js"}))
    code, report = run_json(verify_relay.main, f"http://127.0.0.1:{port}")
    assert code == 1 and failure(report) == ("plain_get", "frontend_on_relay_port")
    assert kind in layer(report, "plain_get")["diagnosis"]


@pytest.mark.parametrize("page,content_type", [
    ("Not Found\n", "text/plain"),
    (WERKZEUG_404, "text/html; charset=utf-8"),  # an error page is HTML too: still "route not loaded"
])
def test_an_app_that_404s_the_route(run_json: RunJson, serve: Serve, page: str, content_type: str) -> None:
    port = serve(static_app("404 Not Found", page, content_type))
    code, report = run_json(verify_relay.main, f"http://127.0.0.1:{port}")
    assert code == 1 and failure(report) == ("plain_get", "route_not_loaded")


def test_a_proxy_with_no_healthy_relay_behind_it(run_json: RunJson, serve: Serve) -> None:
    port = serve(static_app("502 Bad Gateway", NGINX_502, "text/html", headers={"Server": "awselb/2.0"}))
    code, report = run_json(verify_relay.main, f"http://127.0.0.1:{port}")
    assert code == 1 and failure(report) == ("plain_get", "proxy_no_healthy_relay")
    plain_get = layer(report, "plain_get")
    assert plain_get["ok"] is False and plain_get["skipped"] is False
    assert "Server: awselb/2.0" in plain_get["detail"] and "502 Bad Gateway" in plain_get["detail"]
    assert [item["status"] for item in report["layers"]][3:] == ["failed"] + ["not_run"] * 4


@pytest.mark.parametrize("status,code", [
    ("405 Method Not Allowed", "path_method_not_allowed"),
    ("200 OK", "not_the_relay"),
    ("301 Moved Permanently", "path_redirects"),
    ("401 Unauthorized", "path_behind_auth"),
])
def test_other_answers_said_plainly(run_json: RunJson, serve: Serve, status: str, code: str) -> None:
    port = serve(static_app(status, "nope\n", "text/plain", headers={"Location": "https://elsewhere/"}))
    exit_code, report = run_json(verify_relay.main, f"http://127.0.0.1:{port}")
    assert exit_code == 1 and failure(report) == ("plain_get", code)


def test_a_proxy_that_drops_the_upgrade_headers(run_json: RunJson, serve: Serve, standin: StandinModel) -> None:
    """The relay's app behind a plain HTTP server: the upgrade arrives as a plain GET (nginx without
    ``proxy_set_header Upgrade``)."""
    port = serve(None, bind=lambda port: relay_app(standin.url, f"ws://127.0.0.1:{port}"))
    code, report = run_json(verify_relay.main, f"http://127.0.0.1:{port}", env=SECRETS)
    assert code == 1 and failure(report) == ("handshake", "upgrade_headers_dropped")
    assert layer(report, "healthz")["ok"]


# -- a relay that is up but misconfigured ---------------------------------------------------------


@pytest.fixture
def relay_before(make_relay: Any) -> Iterator[Callable[..., RunningRelay]]:
    """Factory: ``relay_before(**options)`` -> a relay whose OpenAI is ``StandinModel(**options)``."""
    models: list[StandinModel] = []

    def make(**options: Any) -> RunningRelay:
        models.append(StandinModel(api_key=API_KEY, **options).start())
        return make_relay(models[-1].url)  # type: ignore[no-any-return]

    yield make
    for model in models:
        model.stop()


@pytest.fixture
def relay_with_a_refused_key(relay_before: Callable[..., RunningRelay]) -> RunningRelay:
    """A relay whose OpenAI (the stand-in) refuses its key with 401."""
    return relay_before(behaviour=Behaviour.REJECT_401)


def test_openai_refuses_the_relays_key(run_json: RunJson, relay_with_a_refused_key: RunningRelay) -> None:
    code, report = run_json(verify_relay.main, relay_with_a_refused_key.http_url, env=SECRETS)
    assert code == 1 and failure(report) == ("diagnostic", "openai_key_refused")
    assert layer(report, "handshake")["ok"]
    diagnostic = layer(report, "diagnostic")
    assert diagnostic["detail"] == "failed at 401: stage handshake, HTTP 401, invalid_api_key"
    assert "Incorrect API key provided" in diagnostic["diagnosis"]  # OpenAI's own words, passed on
    assert layer(report, "synthetic_call")["status"] == "not_run"


def test_without_the_diagnostic_the_call_says_openai_is_unreachable(
    run_json: RunJson, relay_with_a_refused_key: RunningRelay
) -> None:
    env = {k: v for k, v in SECRETS.items() if k != "DIAGNOSTIC_TOKEN"}
    code, report = run_json(verify_relay.main, relay_with_a_refused_key.http_url, env=env)
    assert code == 1 and failure(report) == ("synthetic_call", "call_upstream_failed")
    assert layer(report, "diagnostic")["status"] == "skipped"
    assert "close 1011 openai_handshake_failed" in layer(report, "synthetic_call")["diagnosis"]


@pytest.fixture
def silent_relay(relay_before: Callable[..., RunningRelay]) -> RunningRelay:
    """A relay whose OpenAI (the stand-in) opens the session and never says a word."""
    return relay_before(greeting_audio=b"", scenario=Scenario(echo=False))


def test_a_model_that_never_speaks_is_dead_air(run_json: RunJson, silent_relay: RunningRelay) -> None:
    """The session opens and the call stays up, but no audio ever comes back: dead air, said as such."""
    code, report = run_json(verify_relay.main, silent_relay.http_url, "--call-timeout", "2", env=SECRETS)
    assert code == 1 and failure(report) == ("synthetic_call", "dead_air")
    assert "in 2 s" in layer(report, "synthetic_call")["diagnosis"]


def test_the_simulated_caller_hears_silence_as_silence_not_as_a_drop(silent_relay: RunningRelay) -> None:
    """A relay that sends nothing for longer than the caller's socket timeout has not hung up.

    The caller keeps listening until its own hold time is up, then hangs up and the relay answers the
    close: before, the reader took the receive timeout for a dropped stream, and the dead-air check
    above came out as "dropped without a close code" in about half the runs.
    """
    relay = silent_relay
    target = target_from_relay(relay.ws_url, public_url=relay.ws_url, stream_secret=STREAM_SECRET)
    result = SimulatedCaller(target, auth_token=AUTH_TOKEN, caller_audio=b"", hold_s=1.5, timeout_s=0.6).run()
    assert result.first_audio_ms is None
    assert result.errors == []
    assert not result.relay_hung_up
    assert result.close_code == 1000  # the relay's answer to the caller's own close
    assert result.closed_at_ms is not None and result.closed_at_ms >= 1500


def test_relay_behind_a_wrong_public_url(run_json: RunJson, make_relay: Any, standin: StandinModel) -> None:
    """The relay was told another RELAY_PUBLIC_URL than the one Twilio (and the operator) uses."""
    relay = make_relay(standin.url, RELAY_PUBLIC_URL="wss://relay.example.com")
    code, report = run_json(verify_relay.main, relay.http_url, env=SECRETS)
    assert code == 1 and failure(report) == ("handshake", "signature_url_mismatch")
    why, fix = layer(report, "handshake")["diagnosis"], layer(report, "handshake")["fix"]
    assert "wss://relay.example.com/twilio/realtime" in why and f"{relay.ws_url}/twilio/realtime" in why
    assert "RELAY_PUBLIC_URL=wss://relay.example.com" in fix


def test_a_wrong_auth_token(run_script: Run, run_json: RunJson, relay: RunningRelay) -> None:
    env = {**SECRETS, "TWILIO_AUTH_TOKEN": "not-the-account-auth-token"}
    code, report = run_json(verify_relay.main, relay.http_url, env=env)
    assert code == 1 and failure(report) == ("handshake", "signature_token_mismatch")
    assert "not-the-account-auth-token" not in run_script(verify_relay.main, relay.http_url, env=env)[1]


def test_stream_token_secret_differs(run_json: RunJson, make_relay: Any, standin: StandinModel) -> None:
    relay = make_relay(standin.url, STREAM_TOKEN_SECRET="another-stream-secret-0123456789abcdefgh")
    code, report = run_json(verify_relay.main, relay.http_url, env=SECRETS)
    assert code == 1 and failure(report) == ("synthetic_call", "stream_token_refused")
    assert "close 1008 token_mismatch" in layer(report, "synthetic_call")["diagnosis"]


def test_a_draining_relay(run_json: RunJson, relay: RunningRelay) -> None:
    relay.app.begin_drain()
    code, report = run_json(verify_relay.main, relay.http_url, env=SECRETS)
    assert code == 1 and failure(report) == ("healthz", "relay_draining")
    assert layer(report, "healthz")["detail"].startswith("draining · version")


# -- the close handshake ----------------------------------------------------------------------------


def _upgrade_then(conn: socket.socket, after_close: Callable[[socket.socket], None]) -> None:
    """Answer one signed upgrade with 101 (correct Sec-WebSocket-Accept), read up to the client's close frame.

    An unsigned one gets 403, as from the relay.
    """
    with conn:
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        if b"x-twilio-signature:" not in request.lower():
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept_key(key.decode()).encode() + b"\r\n\r\n")
        conn.recv(4096)  # the client's (masked) close frame
        after_close(conn)
        while conn.recv(4096):  # hold the TCP connection open until the client lets go
            pass


@pytest.fixture
def websocket_front(relay: RunningRelay) -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """Factory: a port where upgrades are answered by hand and everything else by the relay.

    Plain requests (the 426, /healthz, the diagnostic) are proxied to ``relay``; each upgrade
    gets a 101 and then ``after_close(conn)`` once the client's close frame has arrived.
    """
    listeners: list[socket.socket] = []
    workers: list[gevent.Greenlet] = []

    def start(after_close: Callable[[socket.socket], None]) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            while True:
                conn, _ = listener.accept()
                head = conn.recv(65536, socket.MSG_PEEK)
                if b"upgrade: websocket" in head.lower():
                    workers.append(gevent.spawn(_upgrade_then, conn, after_close))
                else:
                    workers.append(gevent.spawn(_proxy, conn, relay.port))

        workers.append(gevent.spawn(serve))
        return int(listener.getsockname()[1])

    yield start
    gevent.killall(workers)
    for listener in listeners:
        listener.close()


def _proxy(client: socket.socket, port: int) -> None:
    with client, socket.create_connection(("127.0.0.1", port)) as backend:
        request = client.recv(65536)
        backend.sendall(request)
        while data := backend.recv(65536):
            client.sendall(data)


def test_a_close_frame_answered_on_a_connection_left_open_is_seen_at_once(
        run_json: RunJson, websocket_front: Callable[..., int]) -> None:
    """The answering close frame is read as a frame; the server need not drop TCP for it to count.

    Before, the check read data messages only: a close frame on a connection kept open was never
    seen (it waited out its timeout, then let go without knowing whether the close was answered).
    """
    port = websocket_front(lambda conn: conn.sendall(bytes([0x88, 0x0C]) + (1000).to_bytes(2, "big") + b"bye, Twilio"))
    code, report = run_json(verify_relay.main, f"http://127.0.0.1:{port}", env={"TWILIO_AUTH_TOKEN": AUTH_TOKEN})
    handshake = layer(report, "handshake")
    assert handshake["status"] == "passed", handshake
    assert "close answered (1000)" in handshake["detail"]


def test_a_close_frame_never_answered_is_a_finding(run_json: RunJson, websocket_front: Callable[..., int]) -> None:
    port = websocket_front(lambda conn: None)
    code, report = run_json(verify_relay.main, f"http://127.0.0.1:{port}", env={"TWILIO_AUTH_TOKEN": AUTH_TOKEN})
    assert code == 1 and failure(report) == ("handshake", "close_unanswered")


# -- TLS --------------------------------------------------------------------------------------------


def test_a_self_signed_certificate(run_json: RunJson, relay: RunningRelay, tls_front: Callable[[int], int]) -> None:
    port = tls_front(relay.port)
    code, report = run_json(verify_relay.main, f"https://localhost:{port}")
    assert code == 1 and failure(report) == ("tls", "tls_self_signed")
    assert "31910" in layer(report, "tls")["diagnosis"]


def test_tls_trusted_then_a_host_the_certificate_does_not_name(
        run_json: RunJson, relay: RunningRelay, certificate: Certificate, tls_front: Callable[[int], int]) -> None:
    port = tls_front(relay.port)
    trust = ("--ca-file", str(certificate.cert))
    env = {**SECRETS, "RELAY_PUBLIC_URL": relay.ws_url}
    del env["STREAM_TOKEN_SECRET"]
    code, report = run_json(verify_relay.main, f"wss://localhost:{port}", *trust, env=env)
    # TLS, the 426, the signed handshake and the diagnostic pass through the TLS front; the call is skipped.
    assert code == 3, report
    tls = layer(report, "tls")["detail"]
    assert tls.startswith("certificate valid for localhost, issued by localhost")
    assert "expires in 30 days" in tls and "trusted through --ca-file" in tls
    assert layer(report, "handshake")["detail"].startswith(
        f"101, Sec-WebSocket-Accept correct, close answered (1000), signed for {relay.ws_url}/twilio/realtime")
    assert layer(report, "diagnostic")["detail"].startswith("session accepted")
    assert layer(report, "synthetic_call")["status"] == "skipped"

    code, report = run_json(verify_relay.main, f"https://127.0.0.1:{port}", *trust)
    assert code == 1 and failure(report) == ("tls", "tls_wrong_host")
    assert "127.0.0.1" in layer(report, "tls")["diagnosis"]


def test_a_relay_serving_tls_itself_takes_a_whole_call(
        run_script: Run, serve: Serve, standin: StandinModel, certificate: Certificate) -> None:
    # gunicorn given a certificate: the upgraded stream is read through TLS, not the raw socket.
    from relay.server import RelayHandler

    apps: list[Any] = []

    def bind(port: int) -> Any:
        apps.append(relay_app(standin.url, f"wss://localhost:{port}"))
        return apps[0]

    port = serve(None, handler_class=RelayHandler, ssl_context=certificate.server_context(), bind=bind)
    code, out = run_script(verify_relay.main, f"wss://localhost:{port}", "--ca-file", str(certificate.cert),
                           env={**SECRETS, "RELAY_PUBLIC_URL": f"wss://localhost:{port}"})
    assert code == 0, out
    assert "✓ synthetic call" in out
    assert wait_until(lambda: apps[0].counter.total() == 0, 3), "a call slot was never released"


# -- all well ----------------------------------------------------------------------------------------


def test_a_healthy_relay_passes_every_layer(run_script: Run, relay: RunningRelay) -> None:
    code, out = run_script(verify_relay.main, relay.http_url, env=SECRETS)
    assert code == 0, out
    assert out.count("✓") == 8 and "✗" not in out
    assert "✓ synthetic call assistant audio " in out
    assert "(token minted with STREAM_TOKEN_SECRET)" in out
    assert "✓ WebSocket handshake 101, Sec-WebSocket-Accept correct, close answered (1000)" in out
    assert out.rstrip().endswith("PASSED: all 8 layers (exit 0)")
    for secret in SECRETS.values():
        assert secret not in out

    code, out = run_script(verify_relay.main, relay.ws_url, "--json", env=SECRETS)
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["exit_code"] == 0
    assert [item["name"] for item in report["layers"]] == LAYERS
    for item in report["layers"]:
        assert set(item) >= {"name", "ok", "skipped", "detail", "code", "diagnosis", "fix"}
        assert item["ok"] is True and item["skipped"] is False and item["status"] == "passed"
        if item["name"] != "diagnostic":
            assert item["code"] is None and item["diagnosis"] is None


def test_a_relay_on_the_stand_in_model_passes_and_says_it_is_not_openai(run_script: Run, run_json: RunJson,
                                                                        relay: RunningRelay,
                                                                        standin: StandinModel) -> None:
    """The stand-in answers as OpenAI would: the check must not let anyone think they reached gpt-realtime."""
    code, out = run_script(verify_relay.main, relay.http_url, env=SECRETS)
    where = standin.url.split("/")[2]
    assert code == 0, out
    assert f"✓ OpenAI diagnostic session accepted by a LOCAL model server at {where}, NOT OpenAI, in " in out
    assert "accepted by gpt-realtime" not in out
    assert f"ms) note: the relay's OPENAI_REALTIME_URL is a model server on its own machine ({where})" in out
    assert "to talk to gpt-realtime, export OPENAI_API_KEY" in out

    code, report = run_json(verify_relay.main, relay.http_url, env=SECRETS)
    diagnostic = layer(report, "diagnostic")
    assert code == 0 and diagnostic["status"] == "passed" and diagnostic["code"] == "openai_local_model"


def test_without_a_greeting_the_assistant_answers_the_spoken_utterance(
        run_script: Run, make_relay: Any, standin: StandinModel) -> None:
    """No greeting: the first audio is the stand-in's reply to the bundled WAV, after the caller's turn."""
    relay = make_relay(standin.url, ASSISTANT_GREETING="")
    code, out = run_script(verify_relay.main, relay.http_url, env=SECRETS)
    assert code == 0, out
    heard = re.search(r"✓ synthetic call assistant audio ([0-9.]+) s after connecting", out)
    assert heard is not None, out
    assert float(heard.group(1)) > 3.0  # the 4.2 s utterance is streamed in real time before the caller's turn ends
    (session,) = standin.sessions[1:]  # [0] is the diagnostic's session
    assert len(session.appended) > 150  # 20 ms frames of the utterance reached the model


def test_the_token_can_come_from_the_webhook(run_script: Run, relay: RunningRelay,
                                             start_webhook: Callable[..., str]) -> None:
    webhook = start_webhook(relay.ws_url)
    env = {"TWILIO_AUTH_TOKEN": SECRETS["TWILIO_AUTH_TOKEN"]}  # no STREAM_TOKEN_SECRET: the webhook mints
    code, out = run_script(verify_relay.main, relay.http_url, "--webhook", webhook, env=env)
    assert "✓ synthetic call" in out and "(token from the webhook)" in out
    assert code == 3  # the diagnostic was skipped: no DIAGNOSTIC_TOKEN


def test_missing_credentials_skip_layers_and_exit_3(run_script: Run, relay: RunningRelay) -> None:
    code, out = run_script(verify_relay.main, relay.http_url)
    assert code == 3
    assert "– WebSocket handshake an unsigned upgrade is refused (403), as it should be; set " \
           "TWILIO_AUTH_TOKEN" in out
    assert "– OpenAI diagnostic set DIAGNOSTIC_TOKEN" in out
    assert "– synthetic call set TWILIO_AUTH_TOKEN" in out
    assert "INCOMPLETE: nothing failed, but 3 of 8 layers were skipped" in out


def test_the_env_file_make_run_writes_is_enough(relay: RunningRelay, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """As after `make run`: secrets and RELAY_PUBLIC_URL from the file, nothing in the environment."""
    env_file = tmp_path / "stack.env"
    env_file.write_text("# written by make run\n" + "".join(f"{k}={v}\n" for k, v in SECRETS.items())
                        + f"RELAY_URL={relay.http_url}\nRELAY_PUBLIC_URL={relay.ws_url}\n")
    assert verify_relay.main(["--env-file", str(env_file)], environ={}) == 0  # the URL comes from RELAY_URL
    out = capsys.readouterr().out
    assert f"credentials from environment + {env_file}" in out and "PASSED: all 8 layers" in out


def test_usage_errors_exit_2(run_script: Run) -> None:
    assert run_script(verify_relay.main, "ftp://relay.example.com")[0] == 2
    assert run_script(verify_relay.main, "https://relay.example.com/some/path")[0] == 2
    assert run_script(verify_relay.main)[0] == 2


@pytest.mark.parametrize("how", [["scripts/verify_relay.py"], ["-m", "scripts.verify_relay"]])
def test_runs_as_a_file_and_as_a_module(relay: RunningRelay, how: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "TWILIO_", "STREAM_", "DIAGNOSTIC_"))}
    env.update(SECRETS)
    env["STREAM_TOKEN_SECRET"] = STREAM_SECRET
    done = subprocess.run([sys.executable, *how, relay.http_url, "--no-env-file"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED: all 8 layers" in done.stdout


@pytest.mark.parametrize("doc,detail,code", [
    ({"url": "wss://api.openai.com/v1/realtime", "upstream": "openai"}, "session accepted by gpt-realtime in ", ""),
    ({"url": "wss://proxy.example.com/v1/realtime", "upstream": "other"},
     "session accepted by proxy.example.com (not api.openai.com) for model gpt-realtime in ", ""),
    ({"url": "ws://127.0.0.1:8765/v1/realtime", "upstream": "local"},
     "session accepted by a LOCAL model server at 127.0.0.1:8765, NOT OpenAI, in ", "openai_local_model"),
    # A relay from before the upstream field: its URL says the same.
    ({"url": "ws://127.0.0.1:8765/v1/realtime"},
     "session accepted by a LOCAL model server at 127.0.0.1:8765, NOT OpenAI, in ", "openai_local_model"),
])
def test_who_accepted_the_session(doc: dict[str, Any], detail: str, code: str) -> None:
    from scripts.verify.relay_session import session_accepted

    outcome = session_accepted({"ok": True, "model": "gpt-realtime", "elapsed_ms": 3.0,
                                "stages_ms": {"tcp": 0.2}, **doc})
    assert outcome.ok and outcome.detail.startswith(detail) and outcome.code == code
