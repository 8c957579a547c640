"""Liveline relay: bridges Twilio Media Streams to the OpenAI Realtime API (GA).

Start it with ``gunicorn -c relay/gunicorn.conf.py relay.wsgi:app``. Module map (each
module's docstring says what it owns and what it must not import):

- pure (no I/O): ``config``, ``errors``, ``stream_token``, ``replay_guard``, ``ws_frames``,
  ``twilio_protocol``, ``openai_protocol``, ``bridge``, ``capacity``
- I/O: ``transport`` (one WebSocket), ``upstream`` (opening OpenAI), ``live_call`` (one
  call's greenlets), ``diagnostic``, ``server`` (WSGI app + handler), ``worker``
  (gunicorn worker), ``wsgi`` (entry point), ``log``
"""

__version__ = "0.1.0"
