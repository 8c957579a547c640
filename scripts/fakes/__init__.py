"""Stand-ins for the relay's peers (Twilio, OpenAI, tool endpoints), on real sockets.

None of them imports the relay's own protocol or WebSocket code: a bug in the relay must
not be mirrored by the fake that tests it.
"""
