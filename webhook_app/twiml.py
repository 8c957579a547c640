"""The TwiML that sends a call to the relay, built with twilio's ``VoiceResponse``.

::

    <Response>
      <Connect>
        <Stream url="$RELAY_PUBLIC_URL/twilio/realtime"
                statusCallback="$WEBHOOK_PUBLIC_URL/twilio/status" statusCallbackMethod="POST">
          <Parameter name="streamToken" value="..."/>
          <Parameter name="callerNumber" value="$From"/>
          <Parameter name="calledNumber" value="$To"/>
        </Stream>
      </Connect>
      <Say>$FALLBACK_MESSAGE</Say>
      <Hangup/>
    </Response>

Why this shape (docs/twilio-media-streams.md#the-twiml-connectstream):

- ``<Connect><Stream>`` is bidirectional and synchronous: Twilio runs the verbs after
  ``</Connect>`` only once the relay's socket closes (or never opened), so the ``<Say>``
  is what a caller hears instead of silence when the relay fails.
- No ``track`` attribute: with ``<Connect>`` only ``inbound_track`` is valid (error 31941).
- Values travel as ``<Parameter>`` (they arrive in ``start.customParameters``), never in
  the URL: Twilio drops query strings.

The ``<Parameter>`` names are fixed: the relay and scripts/call.py read them.
Pure: builds a string; no Flask, no clock, no environment. XML is never hand-rolled
(``VoiceResponse`` escapes attribute values; a raw ``&`` would be error 12100).
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.twiml.voice_response import Connect, VoiceResponse

__all__ = ["CALLED_NUMBER", "CALLER_NUMBER", "connect_stream"]

# <Parameter> names besides stream_token.PARAMETER_NAME ("streamToken").
CALLER_NUMBER = "callerNumber"
CALLED_NUMBER = "calledNumber"


def connect_stream(
    *,
    stream_url: str,
    status_callback_url: str,
    parameters: Mapping[str, str],
    fallback_message: str,
) -> str:
    """TwiML: stream the call to ``stream_url`` with ``parameters``; then say the fallback and hang up.

    Parameters with an empty value are left out (``start.customParameters`` then simply
    lacks the key), so a caller with no caller ID does not produce an odd empty attribute.
    """
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(
        url=stream_url,
        status_callback=status_callback_url,
        status_callback_method="POST",
    )
    for name, value in parameters.items():
        if value:
            stream.parameter(name=name, value=value)
    response.append(connect)
    response.say(fallback_message)
    response.hangup()
    return str(response)
