"""The stand-in Realtime API server: where the relay connects instead of OpenAI.

``StandinModel(...).start()`` listens on a free loopback port (``ws://``, or ``wss://`` with
a certificate: ``certfile``/``keyfile``, and ``url_host`` the name it is issued for); point
the relay's OPENAI_REALTIME_URL at ``url``.
It checks the handshake as the real API does (``Authorization: Bearer``, the ``model``
query parameter; an ``OpenAI-Beta`` header gets ``beta_api_shape_disabled`` and close 4000,
as the GA API has answered since the beta was retired), then runs a ``Session`` per
socket (session.py) or, in load mode, the bench's ``LoadStreamer`` (load.py).

Tests read what each session saw (``sessions``: SessionRecords), how many handshakes were
tried (``handshakes``) and which sockets are open (``live``); they choose a fault for every
session (``behaviour``) or for the next few (``plan``), the conversation (``scenario``) and
how messages travel (``wire``). ``GET /`` describes the stand-in, ``GET /stats`` and
``POST /reset`` serve the bench, ``POST /scenario?name=order-transfer`` switches the
scenario of the sessions that open from then on (scenarios.py: ``SCENARIOS``).

Used by ``make run`` when OPENAI_API_KEY is unset, by the tests and by ``make bench``.
"""

from __future__ import annotations

import gc
import json
import logging
import ssl
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gevent.event import Event
from websockets.http11 import Response

from scripts import audio
from scripts.fakes.openai.faults import Behaviour, error_body
from scripts.fakes.openai.load import LoadStreamer
from scripts.fakes.openai.responses import Speech
from scripts.fakes.openai.scenarios import Scenario, named
from scripts.fakes.openai.session import Session, SessionRecord, Wire
from scripts.fakes.openai.transcripts import CallerWords
from scripts.fakes.websocket_server import Connection, WebSocketServer, json_response

log = logging.getLogger("standin")

REALTIME_PATH = "/v1/realtime"


class StandinModel:
    """The stand-in server. ``start()``, point OPENAI_REALTIME_URL at ``url``, ``stop()``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        behaviour: Behaviour = Behaviour.NORMAL,
        delta_ms: int = 100,
        speed: float = 4.0,
        greeting_audio: bytes | None = None,
        greeting_text: str | None = None,
        scenario: Scenario | None = None,
        wire: Wire | None = None,
        load: bool = False,
        certfile: str | None = None,
        keyfile: str | None = None,
        url_host: str | None = None,
        recv_buffer_bytes: int | None = None,
    ) -> None:
        self.host = host
        self.api_key = api_key
        self.behaviour = behaviour
        self.delta_ms = delta_ms
        self.speed = speed
        self._asset_greeting = audio.read_wav_ulaw(audio.GREETING_WAV), audio.words_of(audio.GREETING_WAV)
        self.greeting_audio = greeting_audio if greeting_audio is not None else self._asset_greeting[0]
        self.greeting_text = greeting_text  # None: the asset's words, or a description of other audio
        self.caller_words = CallerWords()
        self.scenario = scenario or Scenario()
        self.wire = wire or Wire()
        self.load = load
        self.loader = LoadStreamer()
        self.url_host = url_host or host  # the name in ``url`` (a certificate names a host, not 127.0.0.1)
        self.handshakes = 0
        self.hanging = 0  # HANG_HANDSHAKE: upgrades being held unanswered right now
        self.sessions: list[SessionRecord] = []
        self.live: set[Session] = set()
        self.session_opened = Event()
        self.resume_reading = Event()  # PAUSE_READING: sessions read again once it is set
        self._planned: deque[Behaviour] = deque()
        context = None
        if certfile is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(certfile, keyfile)
        self.secure = context is not None
        self._server = WebSocketServer(host, port, on_request=self._on_request, on_open=self._on_open,
                                       ssl_context=context, recv_buffer_bytes=recv_buffer_bytes)

    @property
    def behaviour(self) -> Behaviour:
        """The fault every session gets unless ``plan`` says otherwise."""
        return self._behaviour

    @behaviour.setter
    def behaviour(self, value: Behaviour) -> None:
        if not isinstance(value, Behaviour):  # a bare string would silently mean NORMAL
            raise TypeError(f"behaviour must be a Behaviour, not {value!r}")
        self._behaviour = value

    @property
    def greeting(self) -> Speech:
        """The greeting clip and its words (the asset's own words, unless told; a description for other audio)."""
        text = self.greeting_text
        if text is None:
            clip, words = self._asset_greeting
            text = words if self.greeting_audio == clip else \
                f"(the stand-in's greeting, {len(self.greeting_audio) / 8000:.1f} s)"
        return Speech(self.greeting_audio, text)

    def plan(self, *behaviours: Behaviour) -> None:
        """The next sessions get these faults, in order; later ones get ``behaviour``."""
        self._planned.extend(Behaviour(b) for b in behaviours)

    @property
    def port(self) -> int:
        """The port listened on (after ``start``)."""
        return self._server.port

    @property
    def url(self) -> str:
        """The ``OPENAI_REALTIME_URL`` for a relay to use."""
        return f"{'wss' if self.secure else 'ws'}://{self.url_host}:{self.port}{REALTIME_PATH}"

    @property
    def tls_failures(self) -> list[str]:
        """TLS handshakes that failed (a client that refused the certificate, often)."""
        return self._server.tls_failures

    def start(self) -> StandinModel:
        """Listen (port 0 picks a free one)."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Close every session and stop listening."""
        self._server.stop()

    # -- the handshake ---------------------------------------------------------------------------

    def _on_request(self, conn: Connection) -> Response | None:
        request = conn.request
        assert request is not None
        path = urlsplit(request.path).path
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            return self._http(request.method, request.path)
        self.handshakes += 1
        behaviour = self._planned[0] if self._planned else self.behaviour
        if behaviour is Behaviour.HANG_HANDSHAKE:
            self._take_plan()
            self.hanging += 1
            try:
                conn.hold_until_peer_leaves()
            finally:
                self.hanging -= 1
            return json_response(504, "Gateway Timeout", error_body("timeout", "stand-in: never answered"))
        refusal = behaviour.refusal
        if refusal is not None:
            self._take_plan()
            return json_response(*refusal)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or (self.api_key and auth != f"Bearer {self.api_key}"):
            return json_response(401, "Unauthorized", error_body("invalid_api_key", "Incorrect API key provided."))
        if path != REALTIME_PATH:
            return json_response(404, "Not Found", error_body("not_found", f"No such endpoint: {path}"))
        if not parse_qs(urlsplit(request.path).query).get("model"):
            return json_response(400, "Bad Request",
                                 error_body("missing_model", "Missing required parameter: 'model'."))
        return None  # websockets accepts the upgrade

    def _take_plan(self) -> Behaviour:
        return self._planned.popleft() if self._planned else self.behaviour

    # -- a session ------------------------------------------------------------------------------------

    def _on_open(self, conn: Connection) -> None:
        request = conn.request
        assert request is not None
        headers = {name.title(): value for name, value in request.headers.raw_items()
                   if name.lower() != "authorization"}
        model = parse_qs(urlsplit(request.path).query).get("model", [""])[0]
        record = SessionRecord(len(self.sessions) + 1, model, headers, behaviour=self._take_plan())
        self.sessions.append(record)
        self.session_opened.set()
        session = Session(self, conn, record)
        self.live.add(session)
        try:
            if "Openai-Beta" in headers:
                session.error("beta_api_shape_disabled", "The Realtime Beta API is no longer supported. "
                              "Please use /v1/realtime for the GA API.")
                conn.close(4000, "beta_api_shape_disabled")
                for _ in conn.messages():
                    pass  # until the relay answers the close
                return
            if self.load:
                self.loader.run(session)
            else:
                session.run()
        finally:
            session.stop_speaking()
            record.close_code, record.close_reason = conn.close_code, conn.close_reason
            record.pongs = conn.pongs
            self.live.discard(session)
            conn.abort()
            record.closed_at = time.monotonic()

    # -- plain HTTP: what the stand-in is, and the bench's measurements ----------------------------------

    def _http(self, method: str, target: str) -> Response:
        parts = urlsplit(target)
        document: dict[str, Any]
        if parts.path == "/stats":
            query = parse_qs(parts.query)
            start = int(query.get("start", ["0"])[0])
            end = int(query.get("end", [str(2**63 - 1)])[0])
            document = self.loader.stats.report(start, end)
        elif parts.path == "/reset" and method == "POST":
            self.loader.stats.reset()
            gc.collect()  # between load steps, while nothing is being measured
            document = {"reset": True}
        elif parts.path == "/scenario" and method == "POST":
            # The scenario of the sessions that open from now on (a local stand-in's switch).
            name = parse_qs(parts.query).get("name", [""])[0]
            try:
                self.scenario = named(name)
            except ValueError as exc:
                return json_response(400, "Bad Request", json.dumps({"error": str(exc)}).encode())
            document = {"scenario": self.scenario.name}
        else:
            document = {"standin": True, "behaviour": self.behaviour.value, "load": self.load,
                        "scenario": self.scenario.name, "sessions": len(self.sessions), "live": len(self.live)}
        return json_response(200, "OK", json.dumps(document).encode())
