"""``python -m scripts.fakes.openai``: run the stand-in Realtime model until interrupted."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

from scripts.fakes.openai.faults import Behaviour  # noqa: E402
from scripts.fakes.openai.scenarios import ENDINGS, SCENARIOS, named  # noqa: E402
from scripts.fakes.openai.server import StandinModel  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m scripts.fakes.openai",
                                     description="A local stand-in for the OpenAI Realtime API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", help="accept only this key (default: any)")
    parser.add_argument("--behaviour", type=Behaviour, choices=list(Behaviour), default=Behaviour.NORMAL,
                        metavar="{" + ",".join(b.value for b in Behaviour) + "}")
    parser.add_argument("--scenario", choices=list(SCENARIOS), default="echo",
                        help="the conversation it acts out (default: greet, then play the caller's words back)")
    parser.add_argument("--tool", help="the tool a scripted scenario calls (default lookup_order)")
    parser.add_argument("--arguments", help='its arguments, as JSON (default {"order_id": "1001"})')
    parser.add_argument("--then", choices=[*ENDINGS, "none"], help="how a scripted scenario ends the call")
    parser.add_argument("--destination", help="the transfer_call destination name (default sales)")
    parser.add_argument("--load", action="store_true",
                        help="benchmark mode: stream tagged frames at 50/s, measure appended ones")
    parser.add_argument("--certfile", help="serve wss:// with this certificate (PEM, chain included)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")
    parser.add_argument("--url-host", help="the host name clients use (the certificate's), for the printed URL")
    args = parser.parse_args(argv)
    changes: dict[str, object] = {}
    if args.tool is not None:
        changes["tool"] = args.tool
    if args.arguments is not None:
        changes["arguments"] = args.arguments
    if args.then is not None:
        changes["then"] = None if args.then == "none" else args.then
    if args.destination is not None:
        changes["destination"] = args.destination
    try:
        scenario = named(args.scenario, **changes)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s standin %(message)s")
    logging.getLogger("standin.websocket").setLevel(logging.WARNING)
    if args.load:
        # A full collection over the samples of a load step stalls this process for tens
        # of milliseconds, measured as relay latency: collect between steps instead.
        gc.disable()
    model = StandinModel(host=args.host, port=args.port, api_key=args.api_key, behaviour=args.behaviour,
                         scenario=scenario, load=args.load, certfile=args.certfile, keyfile=args.keyfile,
                         url_host=args.url_host).start()
    print(f"stand-in Realtime model listening on {model.url} (scenario {scenario.name})", flush=True)
    try:
        gevent.wait()
    except KeyboardInterrupt:
        model.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
