"""The production upstream is TLS: the relay against a wss:// stand-in, with a CA made here.

In production the relay always speaks wss:// to OpenAI. Here the stand-in serves wss:// with
a certificate from a test CA made at test time (trustme), and the relay trusts that CA the
standard OpenSSL way, ``SSL_CERT_FILE`` in its environment, as an operator would give it a
private CA; no setting of Liveline's is involved (docs/openai-realtime.md). Covered: a whole
call in-process and under gunicorn; the diagnostic's ``tls`` stage in plain words for a
self-signed certificate and for one issued to another host (in ``/diagnostic/openai`` and in
verify_relay's diagnosis); and the relay's TLS write path (relay/transport.py's TLSIO) under
backpressure: a stand-in that pauses reading loses nothing, one that stops reading ends that
call while another call flows.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from relay import stream_token
from relay.limits import Limits
from scripts.fakes.certificates import ServerCertificate, TestCertificates
from scripts.fakes.openai import Behaviour, StandinModel
from scripts.fakes.twilio_caller import SimulatedCaller
from scripts.fakes.twilio_messages import InboundStream, new_sid
from scripts.fakes.twilio_webhook import target_from_relay
from scripts.fakes.websocket_client import ClientConnection, ConnectionClosed
from scripts.verify import relay as verify_relay
from tests.conftest import API_KEY, AUTH_TOKEN, DIAGNOSTIC_TOKEN, STREAM_SECRET, RunningRelay
from tests.hardening.support import GoodCall, fd_count, settle, signature_for
from tests.helpers import QUIET, get, wait_until

GREETING = bytes((i * 7 + 1) % 256 for i in range(3200))  # 400 ms: four 100 ms deltas
BIG_FRAME = bytes((i * 3) % 256 for i in range(24_000))  # 3 s of audio in one media message (32 KB of base64)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return TestCertificates(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def wss_standin(certificates: TestCertificates) -> Iterator[Callable[..., StandinModel]]:
    """Factory: ``wss_standin(certificate=None, **options)`` -> a stand-in serving wss://localhost."""
    started: list[StandinModel] = []

    def start(certificate: ServerCertificate | None = None, **options: Any) -> StandinModel:
        certificate = certificate or certificates.server("localhost")
        options.setdefault("greeting_audio", GREETING)
        model = StandinModel(api_key=API_KEY, speed=8.0, certfile=str(certificate.certfile),
                             keyfile=str(certificate.keyfile), url_host="localhost", **options).start()
        started.append(model)
        return model

    yield start
    for model in started:
        model.stop()


@pytest.fixture
def trust_test_ca(certificates: TestCertificates) -> None:
    """The relay's process trusts the test CA, as any OpenSSL program would: SSL_CERT_FILE."""
    os.environ["SSL_CERT_FILE"] = str(certificates.ca_file)  # restored after the test (conftest)


def call(relay: RunningRelay, **kwargs: Any) -> SimulatedCaller:
    target = target_from_relay(relay.ws_url, public_url=relay.ws_url, stream_secret=STREAM_SECRET)
    kwargs.setdefault("hold_s", 1.0)
    kwargs.setdefault("caller_audio", QUIET * 3)
    return SimulatedCaller(target, auth_token=AUTH_TOKEN, **kwargs)


def diagnostic(relay: RunningRelay) -> tuple[int, dict[str, Any]]:
    status, _, body = get(relay.http_url + "/diagnostic/openai", {"Authorization": f"Bearer {DIAGNOSTIC_TOKEN}"})
    return status, json.loads(body)


# -- a whole call over TLS ------------------------------------------------------------------------


@pytest.mark.usefixtures("trust_test_ca")
def test_a_whole_call_over_tls(make_relay: Any, wss_standin: Callable[..., StandinModel]) -> None:
    model = wss_standin()
    assert model.url.startswith("wss://localhost:")
    relay = make_relay(model.url)
    result = call(relay).run()
    (session,) = model.sessions
    assert result.received_audio == GREETING and session.appended == result.sent_payloads
    assert result.close_code == 1000 and model.tls_failures == []
    status, verdict = diagnostic(relay)
    assert status == 200 and verdict["ok"] and "tls" in verdict["stages_ms"]


def test_without_the_ca_the_relay_refuses_the_certificate(make_relay: Any,
                                                          wss_standin: Callable[..., StandinModel]) -> None:
    """The control: it is SSL_CERT_FILE, and nothing else, that makes the relay trust the stand-in."""
    os.environ.pop("SSL_CERT_FILE", None)
    model = wss_standin()
    relay = make_relay(model.url)
    result = call(relay, hold_s=3).run()
    assert (result.close_code, result.close_reason) == (1011, "openai_tls_failed")
    assert model.sessions == [] and model.tls_failures  # the relay hung up in the TLS handshake


@pytest.mark.slow
def test_a_whole_call_over_tls_under_gunicorn(gunicorn_relay: Any, certificates: TestCertificates,
                                              wss_standin: Callable[..., StandinModel]) -> None:
    model = wss_standin()
    relay = gunicorn_relay(model.url, SSL_CERT_FILE=str(certificates.ca_file))
    target = target_from_relay(relay.ws_url, public_url=relay.ws_url, stream_secret=STREAM_SECRET)
    result = SimulatedCaller(target, auth_token=AUTH_TOKEN, caller_audio=QUIET * 3, hold_s=1.0).run()
    (session,) = model.sessions
    assert result.received_audio == GREETING and session.appended == result.sent_payloads
    assert result.close_code == 1000


# -- the diagnostic's tls stage, in plain words --------------------------------------------------------


@pytest.mark.usefixtures("trust_test_ca")
@pytest.mark.parametrize("case,said,code", [
    ("self_signed", "self-signed certificate", "openai_tls_self_signed"),
    ("another_host", "not valid for 'localhost'", "openai_tls_wrong_host"),
])
def test_the_diagnostic_names_the_certificates_problem(
        make_relay: Any, wss_standin: Callable[..., StandinModel], certificates: TestCertificates,
        capsys: pytest.CaptureFixture[str], case: str, said: str, code: str) -> None:
    certificate = (certificates.self_signed() if case == "self_signed"
                   else certificates.server("realtime.example.com", name="another-host"))
    relay = make_relay(wss_standin(certificate).url)
    status, verdict = diagnostic(relay)
    assert status == 502 and verdict["stage"] == "tls" and said in verdict["error_message"], verdict
    # verify_relay says it in words, with the fix
    exit_code = verify_relay.main([relay.http_url, "--json", "--no-env-file"],
                                  environ={"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "DIAGNOSTIC_TOKEN": DIAGNOSTIC_TOKEN})
    report = json.loads(capsys.readouterr().out)
    (layer,) = [item for item in report["layers"] if item["name"] == "diagnostic"]
    assert exit_code == 1 and layer["code"] == code, layer
    assert said in layer["diagnosis"]


# -- backpressure on the relay's TLS writes -----------------------------------------------------------


def _start_call(relay: RunningRelay) -> tuple[ClientConnection, InboundStream]:
    """A signed stream that has sent ``connected`` and a ``start`` with a valid token."""
    ws = ClientConnection.connect(relay.ws_url + "/twilio/realtime",
                                  headers={"X-Twilio-Signature": signature_for(relay.ws_url)}, timeout_s=5)
    stream = InboundStream(new_sid("CA"))
    ws.send(stream.connected())
    ws.send(stream.start({stream_token.PARAMETER_NAME: stream_token.mint(STREAM_SECRET, stream.call_sid,
                                                                        time.time(), 300)}))
    return ws, stream


def _caller_up(relay: RunningRelay) -> tuple[ClientConnection, InboundStream]:
    """A call whose greeting has started (the session is up: the relay forwards the caller's audio)."""
    ws, stream = _start_call(relay)
    while '"media"' not in ws.recv(timeout=5):
        pass
    return ws, stream


def _upstream_blocked(relay: RunningRelay) -> bool:
    """The relay has data waiting for the stand-in to read (read from the in-process relay)."""
    return any(call.openai is not None and call.openai.blocked_since for call in list(relay.app.registry.calls))


# These callers pour audio far faster than real time on purpose: no flood verdict here, only
# the send path is judged.
POURING = Limits(flood_messages_per_s=10**6, flood_audio_ratio=10.0**6)


@pytest.mark.usefixtures("trust_test_ca")
def test_partial_writes_over_tls_lose_nothing(make_relay: Any, wss_standin: Callable[..., StandinModel]) -> None:
    """The stand-in stops reading while the caller keeps sending: the relay's TLS writes back up
    (a partial write, then a queue), then drain in order, byte for byte, once it reads again."""
    model = wss_standin(behaviour=Behaviour.PAUSE_READING, recv_buffer_bytes=16_384)
    relay = make_relay(model.url, POURING)
    ws, stream = _caller_up(relay)
    try:
        sent = [stream.media(QUIET)]  # the stand-in reads this one, then pauses
        ws.send(sent[0])
        assert wait_until(lambda: model.sessions[0].fault_at is not None, 3)
        while not _upstream_blocked(relay) and len(sent) < 160:  # at most 5 MB: the kernel's buffers, then ours
            sent.append(stream.media(BIG_FRAME))
            ws.send(sent[-1])
            wait_until(lambda: _upstream_blocked(relay), 0.02)
        assert _upstream_blocked(relay), f"the relay's writes never backed up ({len(sent)} messages sent)"
        model.resume_reading.set()
        (session,) = model.sessions
        assert wait_until(lambda: len(session.appended) == len(sent), 5), f"{len(session.appended)} of {len(sent)}"
        assert session.appended == [json.loads(message)["media"]["payload"] for message in sent]
        assert session.fault_at is not None
        ws.send(stream.stop())
    finally:
        ws.close()


@pytest.mark.usefixtures("trust_test_ca")
def test_a_stand_in_that_stops_reading_over_tls_ends_that_call_while_another_flows(
        make_relay: Any, wss_standin: Callable[..., StandinModel]) -> None:
    model = wss_standin(recv_buffer_bytes=16_384)
    model.plan(Behaviour.STOP_READING)  # the first session only
    relay = make_relay(model.url, POURING)
    stalled, stream = _caller_up(relay)
    other: GoodCall | None = None
    try:
        stalled.send(stream.media(QUIET))  # the stand-in reads this one, then no more
        other = GoodCall(relay.ws_url).begin()
        for _ in range(600):  # up to 19 MB: the relay gives up long before (its queue is capped)
            if stalled.ended.is_set():
                break
            try:
                stalled.send(stream.media(BIG_FRAME))
            except ConnectionClosed:
                break
        closed = None
        try:
            while True:
                stalled.recv(timeout=8)
        except ConnectionClosed as exc:
            closed = exc.rcvd
        assert closed is not None and closed.code == 1011, closed
        assert closed.reason in ("openai_closed", "openai_stalled")
        other.stream_for(10)  # the other call carried on meanwhile, and ends well
        assert other.hang_up().code == 1000
        other.assert_lossless(model)
        assert model.sessions[0].fault_at is not None and model.sessions[0].behaviour is Behaviour.STOP_READING
    finally:
        stalled.abort()
        if other is not None:
            other.abort()


# -- a call that ends while the relay's TLS handshake is in progress ---------------------------------


def test_a_call_that_ends_during_the_tls_handshake_leaves_no_socket_behind(make_relay: Any) -> None:
    """The relay pre-connects to OpenAI (TCP, then TLS) while ``start`` is on its way; a caller who
    leaves then ends the call, and the pre-connect is stopped mid-handshake. Its socket must be
    closed there and then, not left for the garbage collector (a descriptor per call meanwhile:
    upgrades that hang up at once could run a worker out of them)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def never_answer_tls() -> None:
        while True:
            conn, _ = listener.accept()
            held.append(conn)  # the ClientHello arrives; no ServerHello ever goes back

    acceptor = gevent.spawn(never_answer_tls)
    relay = make_relay(f"wss://localhost:{listener.getsockname()[1]}/v1/realtime",
                       OPENAI_CONNECT_TIMEOUT_SECONDS="20", OPENAI_SESSION_TIMEOUT_SECONDS="25")
    gc.collect()
    gc.disable()  # only an explicit close may free the socket here
    try:
        before = fd_count()
        for n in range(5):
            ws, stream = _start_call(relay)
            assert wait_until(lambda n=n: len(held) > n, 3), "the relay never began its TLS handshake"
            ws.abort()  # the caller is gone while the handshake waits
            assert wait_until(lambda ws=ws: ws.ended.is_set() and not relay.app.registry.calls, 3)
        for conn in held:
            conn.close()
        assert settle(fd_count, before) <= before, f"descriptors {before} -> {fd_count()}"
    finally:
        gc.enable()
        acceptor.kill()
        listener.close()
