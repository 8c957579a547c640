"""A stand-in for Twilio's REST API: the Call resource's update, as the relay uses it.

``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with a form body: ``Status=completed``
hangs the call up, ``Twiml=<Response>...</Response>`` redirects it
(https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource). The stand-in records
every request (path, basic-auth user, form fields, when), answers with the Call resource's JSON,
and refuses what Twilio would refuse: wrong credentials (401, code 20003), TwiML that is not
well-formed XML or longer than 4,000 characters (400, code 12100 or 21232), and any update of a
call it has already completed (400, code 21220). ``on_update`` lets a gateway react to an
accepted update (the softphone's gateway ends its stream, as Twilio would); ``wsgi`` is the app,
for a gateway to mount under ``/2010-04-01/`` and ``/standin/``.

Twilio's side of a call learns of an update the way the stand-in can tell it: ``GET
/standin/calls/{CallSid}.json`` (the stand-in's own, not Twilio's) lists the updates it
accepted for that call, ``{"call_sid", "updates": [{"Status": "completed"} | {"Twiml": ...}]}``;
the simulated caller (scripts/fakes/twilio_caller.py) polls it to end its stream as Twilio would.

Modes for tests: ``slow`` (answers after ``delay_s``), ``fail`` (``fail_status``, with Twilio's
error JSON) and ``refuse`` (the port stays taken but nothing listens: connections are refused).

    python -m scripts.fakes.twilio_rest_api --port 8093 [--mode fail]

Independent of ``relay/``: it parses the requests with the standard library.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import socket
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import gevent
from gevent.pywsgi import WSGIServer

MODES = ("normal", "slow", "fail", "refuse")
_CALL_PATH = re.compile(r"/2010-04-01/Accounts/(AC[0-9A-Za-z]+)/Calls/(CA[0-9A-Za-z]+)\.json")
_UPDATES_PATH = re.compile(r"/standin/calls/(CA[0-9A-Za-z]+)\.json")
TWIML_MAX_CHARS = 4000


@dataclass
class RestRequest:
    """One request the stand-in received."""

    method: str
    path: str
    user: str  # the basic-auth user name ("" without basic auth)
    form: dict[str, str]
    account_sid: str = ""
    call_sid: str = ""
    status: int = 0  # what the stand-in answered
    at: float = 0.0  # when it arrived (time.monotonic)


class TwilioRestApi:
    """The stand-in on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 credentials: Mapping[str, str] | None = None, mode: str = "normal", delay_s: float = 10.0,
                 fail_status: int = 500, on_update: Callable[[RestRequest], None] | None = None) -> None:
        self.host = host
        self.port = port
        self.credentials = dict(credentials) if credentials is not None else None  # None: any
        self.mode = mode
        self.delay_s = delay_s
        self.fail_status = fail_status
        self.on_update = on_update
        self.requests: list[RestRequest] = []
        self.completed: set[str] = set()
        self._server: WSGIServer | None = None
        self._refusing: socket.socket | None = None

    @property
    def base_url(self) -> str:
        """The relay's ``TWILIO_API_BASE_URL``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> TwilioRestApi:
        """Listen (or, in ``refuse`` mode, hold the port without listening)."""
        self._server = WSGIServer((self.host, self.port), self._app, log=None)
        self._server.start()
        self.port = self._server.server_port
        if self.mode == "refuse":
            self.refuse()
        return self

    def refuse(self) -> None:
        """From now on, connections are refused: the port is held, nobody listens."""
        self.mode = "refuse"
        if self._server is not None:
            self._server.stop(timeout=1)
            self._server = None
        if self._refusing is None:
            self._refusing = socket.socket()
            self._refusing.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._refusing.bind((self.host, self.port))

    def stop(self) -> None:
        """Stop listening and let go of the port."""
        if self._server is not None:
            self._server.stop(timeout=1)
            self._server = None
        if self._refusing is not None:
            self._refusing.close()
            self._refusing = None

    def updates(self, call_sid: str) -> list[dict[str, str]]:
        """The form of every update of ``call_sid``, in order."""
        return [request.form for request in self.requests if request.call_sid == call_sid]

    def accepted(self, call_sid: str) -> list[dict[str, str]]:
        """The form of every update of ``call_sid`` the stand-in accepted (answered 200), in order."""
        return [request.form for request in self.requests if request.call_sid == call_sid and request.status == 200]

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The stand-in as a WSGI app (its own server runs it; a gateway may mount it)."""
        return self._app(environ, start_response)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        listing = _UPDATES_PATH.fullmatch(path)
        if listing is not None and environ["REQUEST_METHOD"] == "GET":
            data = json.dumps({"call_sid": listing.group(1), "updates": self.accepted(listing.group(1))}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        body = environ["wsgi.input"].read()
        form = {name: values[0] for name, values in parse_qs(body.decode("utf-8", "replace")).items()}
        user, password = _basic_auth(environ.get("HTTP_AUTHORIZATION", ""))
        request = RestRequest(environ["REQUEST_METHOD"], path, user, form, at=time.monotonic())
        self.requests.append(request)
        status, document = self._answer(request, password)
        request.status = status
        print(f"twilio rest api: {request.method} {request.path} {sorted(form)} -> {status}", flush=True)
        if status == 200 and self.on_update is not None:
            self.on_update(request)
        data = json.dumps(document).encode()
        start_response(f"{status} {'OK' if status == 200 else 'Error'}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def _answer(self, request: RestRequest, password: str) -> tuple[int, dict[str, Any]]:
        match = _CALL_PATH.fullmatch(request.path)
        if request.method != "POST" or match is None:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        request.account_sid, request.call_sid = match.groups()
        if self.credentials is not None and self.credentials.get(request.user) != password:
            return _error(401, 20003, "Authenticate")
        if self.mode == "slow":
            gevent.sleep(self.delay_s)
        if self.mode == "fail":
            return _error(self.fail_status, 20500, "Internal Server Error")
        if request.call_sid in self.completed:
            return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
        twiml = request.form.get("Twiml")
        if twiml is not None:
            if len(twiml) > TWIML_MAX_CHARS:
                return _error(400, 21232, "Twiml is over 4000 characters")
            try:
                ElementTree.fromstring(twiml)
            except ElementTree.ParseError:
                return _error(400, 12100, "Document parse failure")
        elif request.form.get("Status") not in ("completed", "canceled"):
            return _error(400, 21218, "Invalid Status, Url or Twiml")
        if request.form.get("Status") == "completed":
            self.completed.add(request.call_sid)
        return 200, {
            "sid": request.call_sid, "account_sid": request.account_sid, "api_version": "2010-04-01",
            "status": "completed" if request.call_sid in self.completed else "in-progress",
            "direction": "inbound", "uri": request.path,
        }


def _basic_auth(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return user, password


def _error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    """Twilio's error document (https://www.twilio.com/docs/usage/twilios-response#response-formats-exceptions)."""
    return status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                    "status": status}


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument("--mode", choices=MODES, default="normal")
    args = parser.parse_args(argv)
    api = TwilioRestApi(host=args.host, port=args.port, mode=args.mode).start()
    print(f"stand-in Twilio REST API on {api.base_url} (TWILIO_API_BASE_URL)", flush=True)
    try:
        while True:  # in refuse mode nothing listens, so there is nothing for gevent.wait() to wait on
            gevent.sleep(3600)
    except KeyboardInterrupt:
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
