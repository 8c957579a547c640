"""The stand-in for the OpenAI Realtime API (GA interface), on a real WebSocket.

- ``server``: ``StandinModel``, the server: handshake checks and refusals, records, plain HTTP;
- ``session``: one socket's protocol behaviour, and the ``Scenario`` it plays out;
- ``faults``: fault injection, as named behaviours (``Behaviour``);
- ``load``: the load mode ``make bench`` measures the relay with.

Run alone: ``python -m scripts.fakes.openai --port 8765 [--load] [--certfile F --keyfile K]``.
"""

from scripts.fakes.openai.faults import Behaviour
from scripts.fakes.openai.server import StandinModel
from scripts.fakes.openai.session import Scenario, SessionRecord, Wire

__all__ = ["Behaviour", "Scenario", "SessionRecord", "StandinModel", "Wire"]
