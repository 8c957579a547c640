"""How the simulated caller learns what the relay asked of Twilio's REST API for its call.

The relay hangs up and transfers through Twilio's REST API (an update of the Call resource),
not through the Media Stream; Twilio then acts on the call and ends the stream itself
(``stop``, then a close). Locally a stand-in plays that REST API (scripts/fakes/twilio_rest_api.py,
or the softphone's gateway, which serves it too) and lists the updates it accepted for a
call at ``GET /standin/calls/{CallSid}.json``. ``UpdateWatch`` polls that list and hands each
new update to the caller, which then ends its stream as Twilio would.

Independent of ``relay/``: the standard library reads the JSON and the TwiML.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CallUpdate:
    """One update the relay made: ``hang_up`` (Status=completed), ``transfer`` (a ``<Dial>``) or ``other``."""

    kind: str
    detail: str  # the number or SIP URI dialled; the Status; the TwiML

    def describe(self) -> str:
        """A line for the caller's timeline."""
        if self.kind == "hang_up":
            return f"the assistant hung up: Twilio's REST API got {self.detail}"
        if self.kind == "transfer":
            return f"the assistant transferred the call to {self.detail} (Twilio's REST API got <Dial>)"
        return f"the relay updated the call through Twilio's REST API: {self.detail[:120]}"


def read_update(form: dict[str, str]) -> CallUpdate:
    """What one accepted update asked for."""
    twiml = form.get("Twiml")
    if twiml is None:
        status = form.get("Status", "")
        return CallUpdate("hang_up" if status in ("completed", "canceled") else "other", f"Status={status}")
    try:
        dial = ElementTree.fromstring(twiml).find("Dial")
    except ElementTree.ParseError:
        dial = None
    if dial is None:
        return CallUpdate("other", f"Twiml={twiml}")
    sip = dial.find("Sip")
    target = sip.text if sip is not None else dial.text
    return CallUpdate("transfer", (target or "").strip())


def fetch_updates(base_url: str, call_sid: str, timeout_s: float = 2.0) -> list[dict[str, str]] | None:
    """The updates the stand-in accepted for ``call_sid``; None if it cannot be asked."""
    url = f"{base_url.rstrip('/')}/standin/calls/{call_sid}.json"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            document = json.loads(response.read())
    except (OSError, ValueError):  # unreachable, an error status, not JSON
        return None
    updates = document.get("updates") if isinstance(document, dict) else None
    return [u for u in updates if isinstance(u, dict)] if isinstance(updates, list) else None


class UpdateWatch:
    """Polls the stand-in for one call's updates until stopped; ``on_update`` gets each new one."""

    def __init__(self, base_url: str, call_sid: str, on_update: Callable[[CallUpdate], None], *,
                 interval_s: float = 0.05) -> None:
        self.base_url = base_url
        self.call_sid = call_sid
        self.on_update = on_update
        self.interval_s = interval_s
        self.reachable: bool | None = None  # unknown until the first poll
        self._seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> UpdateWatch:
        """Start polling (a thread: a greenlet once gevent has patched threading)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling (after one last look, so an update made just before the end is seen)."""
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            self.poll()
            if stopping:
                return
            self._stop.wait(self.interval_s)

    def poll(self) -> None:
        """One look at the stand-in's list."""
        updates = fetch_updates(self.base_url, self.call_sid)
        if updates is None:
            if self.reachable is None:
                self.reachable = False
            return
        self.reachable = True
        for form in updates[self._seen:]:
            self._seen += 1
            self.on_update(read_update(form))
