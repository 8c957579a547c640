"""The stand-in for the OpenAI Realtime API (GA interface), on a real WebSocket.

- ``server``: ``StandinModel``, the server: handshake checks and refusals, records, plain HTTP;
- ``session``: one socket's protocol behaviour;
- ``scenarios``: the conversations it acts out (``Scenario``: greet and echo; ``Script``: a
  tool call, its answer, then ``end_call`` or ``transfer_call``), by name in ``SCENARIOS``;
- ``responses``: how a response is streamed (``Speech`` with its words, ``FunctionCall``);
- ``transcripts``: the words it gives for audio, honestly (it does no speech recognition);
- ``faults``: fault injection, as named behaviours (``Behaviour``);
- ``load``: the load mode ``make bench`` measures the relay with.

Run alone: ``python -m scripts.fakes.openai --port 8765 [--scenario order-hangup] [--load]
[--certfile F --keyfile K]``.
"""

from scripts.fakes.openai.faults import Behaviour
from scripts.fakes.openai.responses import FunctionCall, Speech
from scripts.fakes.openai.scenarios import SCENARIOS, Lines, Scenario, Script, named
from scripts.fakes.openai.server import StandinModel
from scripts.fakes.openai.session import CallerTurn, SessionRecord, Wire

__all__ = ["SCENARIOS", "Behaviour", "CallerTurn", "FunctionCall", "Lines", "Scenario", "Script", "SessionRecord",
           "Speech", "StandinModel", "Wire", "named"]
