"""Operator and developer scripts: the simulated caller, the stand-in model, verify and bench.

Scripts test the relay from the outside: besides the standard library and the pinned
dependencies they import only the relay's pure modules (protocol builders, the frame
codec, the stream token) and its generic WebSocket transport, never its server.
"""
