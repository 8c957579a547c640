"""The verify scripts: is a relay, a webhook or a whole deploy ready for a real call, and if not why.

- ``relay``, ``webhook``, ``deploy``: each script's layers in order and its command line
  (the entry points are scripts/verify_relay.py, verify_webhook.py, verify_deploy.py);
- ``relay_checks``, ``relay_session``: the relay's layers, one function each;
- ``diagnoses``: every failure as data, a stable code -> why and fix;
- ``checklist``: outcomes, the report, exit codes; ``settings``: credentials and URLs;
- ``targets``: what is checked, parsed once; ``probes``: HTTP, the WebSocket upgrade, TLS.
"""
