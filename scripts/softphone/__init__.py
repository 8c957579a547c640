"""The browser softphone: talk to the assistant from a page, through a local stand-in for Twilio.

- ``gateway``: the page's server on 127.0.0.1 and the registry of live calls;
- ``phone_call``: one call, doing what Twilio does between the page and the relay;
- ``incoming_call``: the signed webhook POST and the TwiML's ``<Stream>``;
- ``playout``: which marks the page has played (pure);
- ``page_messages``: what the page and the gateway say to each other (pure);
- ``static/``: the page (no build step): ``softphone.js`` on the main thread,
  ``worklet.js`` (capture and playback AudioWorklets), ``dsp.js`` (mu-law, the resampler).

``make run`` starts it; alone: ``python -m scripts.softphone --help``.
"""
