"""Operator and developer scripts: they test the relay and the webhook from the outside.

    scripts/fakes/    stand-ins for the relay's peers, on real sockets: the simulated Twilio
                      caller (and the one builder of Twilio's inbound messages), the OpenAI
                      Realtime stand-in (server, session behaviour, faults, load mode)
    scripts/verify/   verify_relay / verify_webhook / verify_deploy: targets, probes, the
                      per-layer checks, and the diagnoses as a table of data
    scripts/bench/    make bench: runner, load generator, statistics
    call.py, local_stack.py, verify_*.py, bench_relay.py, build_*.py: the entry points
    stack_env.py, ports.py          make run's parts, ports and environment; who holds a port
    wav_input.py, resample.py       make call --wav: any WAV to the line's 8 kHz mu-law
    call_problems.py, pip_run.py    the plain answers of make call and the build scripts

Besides the standard library and the pinned dependencies they import only the relay's pure
modules (the stream token, the config's loopback test). The stand-ins share no protocol or
WebSocket code with the relay (they use the websockets library); only the bench's load
generator reuses the relay's transport, for speed. tests/test_layering.py holds them to it.
"""
