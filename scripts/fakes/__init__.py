"""Stand-ins for the relay's peers (Twilio, OpenAI), on real sockets.

- ``twilio_messages``: ``InboundStream``, the one builder of Twilio's inbound Media Streams
  messages (every caller, test and the bench use it);
- ``twilio_caller``: the simulated caller (``SimulatedCaller``), Twilio's side of a call;
- ``twilio_webhook``: where a call goes, found as Twilio finds it (the signed webhook POST);
- ``openai/``: the stand-in Realtime model (server, session behaviour, faults, load mode);
- ``websocket_server``, ``websocket_client``: websockets' Sans-I/O protocol on sockets;
- ``certificates``: a test CA and the certificates it signs, for ``wss://``.

None of them imports the relay's protocol or WebSocket code (tests/test_layering.py): a bug
in the relay must not be mirrored by the fake that tests it.
"""
