"""Twilio's REST API for the softphone's calls, served by its gateway.

The relay hangs up and transfers through Twilio's REST API (an update of the Call resource). With
``TWILIO_API_BASE_URL`` pointed at the gateway (``http://127.0.0.1:8070``), the gateway plays
that part too: it serves the REST stand-in (scripts/fakes/twilio_rest_api.py) under
``/2010-04-01/`` (and its list of a call's updates under ``/standin/``), and when the relay
completes or redirects one of the page's calls, the gateway ends that call as Twilio would:
``stop`` and a close to the relay, then the page is told why ("the assistant hung up",
"transferred to +15550100001"). Updates of calls the page did not place (``make call``'s) are
accepted and listed all the same, so one stand-in serves both.

Credentials are not checked: the gateway answers only on 127.0.0.1, to its own address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gevent

from scripts.fakes.twilio_call_updates import read_update
from scripts.fakes.twilio_rest_api import RestRequest, TwilioRestApi
from scripts.softphone import page_messages as pm

if TYPE_CHECKING:
    from scripts.softphone.gateway import Gateway


def serve_rest_api(gateway: Gateway) -> TwilioRestApi:
    """Mount the REST stand-in on ``gateway``; it ends the gateway's calls the relay updates."""

    def act(request: RestRequest) -> None:
        call = gateway.calls.get(request.call_sid)
        if call is None:
            return  # not one of the page's calls: recorded and listed only
        update = read_update(request.form)
        if update.kind == "hang_up":
            reason = f"the assistant hung up (Twilio's REST API got {update.detail})"
        elif update.kind == "transfer":
            reason = f"transferred to {update.detail} (Twilio would now dial it)"
        else:
            reason = "the relay redirected the call elsewhere through Twilio's REST API"
        # Twilio answers the request first and ends the stream on its own time: so does the gateway.
        gevent.spawn(call.end, reason, by=pm.ENDED_BY_API)

    api = TwilioRestApi(on_update=act)
    gateway.mount("/2010-04-01/", api.wsgi)
    gateway.mount("/standin/", api.wsgi)
    return api
