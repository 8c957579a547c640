#!/usr/bin/python3
"""A relay instance's health as its Auto Scaling group sees it: ready at launch, alive afterwards.

The load balancer and the Auto Scaling group ask two different questions (README: Surges):

- "Send it calls?"  The load balancer's health check, GET /healthz: 503 while the relay is full or
  draining, so a full relay simply stops getting calls. The group never acts on that answer (its
  health check type is EC2), so a full relay is never replaced.
- "Is it broken?"   This script, GET /livez on the instance itself: 200 whenever a worker answers at
  all, full or draining included. It is the only custom signal the group acts on.

Usage (paths and numbers are rendered by Terraform into the unit and the install script):

  relay-health complete RESULT [options]   complete the launch lifecycle action (CONTINUE or ABANDON)
  relay-health ready [options]             wait for /healthz 200, then CONTINUE; ABANDON at the deadline
  relay-health watch [options]             probe /livez; after --failures misses in a row, mark the
                                           instance Unhealthy (aws autoscaling set-instance-health),
                                           so the group replaces it (launching the replacement first)

It talks to AWS through the aws CLI with the instance role, and prints one plain line per event
(systemd's journal keeps them). Runs on the system python3 of Amazon Linux 2023 (3.9): standard
library only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.error
import urllib.request

RESULTS = ("CONTINUE", "ABANDON")


def say(message: str) -> None:
    """One line to stderr (the journal), flushed at once."""
    sys.stderr.write("relay-health: %s\n" % message)
    sys.stderr.flush()


def probe(url: str, timeout_s: float) -> tuple[bool, str]:
    """(answered 200, what happened) for one GET of ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        return False, "HTTP %d" % error.code
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return False, "no answer (%s)" % reason
    return status == 200, "HTTP %d" % status


def instance_id(path: str) -> str:
    """The instance's id, as cloud-init recorded it."""
    with open(path) as handle:
        value = handle.read().strip()
    if not value.startswith("i-"):
        raise SystemExit("relay-health: %s does not hold an instance id" % path)
    return value


def aws(region: str, *arguments: str) -> tuple[bool, str]:
    """Run ``aws autoscaling ARGUMENTS``; (succeeded, its error text)."""
    result = subprocess.run(["aws", "autoscaling", *arguments, "--region", region],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return result.returncode == 0, result.stderr.decode(errors="replace").strip()


def complete(args: argparse.Namespace, result: str) -> bool:
    """Complete this instance's launch lifecycle action with ``result``."""
    ok, error = aws(args.region, "complete-lifecycle-action",
                    "--auto-scaling-group-name", args.group,
                    "--lifecycle-hook-name", args.hook,
                    "--instance-id", instance_id(args.instance_id_file),
                    "--lifecycle-action-result", result)
    if ok:
        say("launch lifecycle action completed: %s" % result)
    else:
        # No active action (the hook timed out, or the instance was attached by hand): nothing to do.
        say("could not complete the launch lifecycle action with %s: %s" % (result, error))
    return ok


def ready(args: argparse.Namespace) -> int:
    """Wait for the relay to take calls, then let the group put it in service (or give it up)."""
    deadline = time.monotonic() + args.deadline_s
    last = ""
    while True:
        healthy, last = probe(args.url, args.timeout_s)
        if healthy:
            say("%s answers 200: the relay takes calls" % args.url)
            complete(args, "CONTINUE")
            return 0
        if time.monotonic() >= deadline:
            say("%s still answers %s after %g s: giving this instance up" % (args.url, last, args.deadline_s))
            complete(args, "ABANDON")
            return 1
        time.sleep(args.interval_s)


def watch(args: argparse.Namespace) -> int:
    """Probe liveness until the relay is found broken, then hand the instance over for replacement."""
    failures = 0
    probes = 0
    while args.max_probes is None or probes < args.max_probes:
        probes += 1
        alive, what = probe(args.url, args.timeout_s)
        if alive:
            if failures:
                say("%s answers again after %d failed probe(s)" % (args.url, failures))
            failures = 0
        else:
            failures += 1
            say("%s: %s (%d of %d in a row)" % (args.url, what, failures, args.failures))
            if failures >= args.failures:
                ok, error = aws(args.region, "set-instance-health",
                                "--instance-id", instance_id(args.instance_id_file),
                                "--health-status", "Unhealthy")
                if ok:
                    say("marked this instance Unhealthy: the Auto Scaling group replaces it")
                    return 0
                say("could not mark this instance Unhealthy (will retry): %s" % error)
        time.sleep(args.interval_s)
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="relay-health", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    for name in ("complete", "ready", "watch"):
        command = commands.add_parser(name)
        if name == "complete":
            command.add_argument("result", choices=RESULTS)
        command.add_argument("--region", required=True)
        command.add_argument("--instance-id-file", required=True)
        if name in ("complete", "ready"):
            command.add_argument("--group", required=True, help="Auto Scaling group name")
            command.add_argument("--hook", required=True, help="launch lifecycle hook name")
        if name in ("ready", "watch"):
            command.add_argument("--url", required=True)
            command.add_argument("--interval-s", type=float, required=True)
            command.add_argument("--timeout-s", type=float, required=True)
        if name == "ready":
            command.add_argument("--deadline-s", type=float, required=True)
        if name == "watch":
            command.add_argument("--failures", type=int, required=True, help="misses in a row that mean broken")
            command.add_argument("--max-probes", type=int, default=None, help="stop after this many (tests)")
    return top


def main(argv: list[str]) -> int:
    """Entry point."""
    args = parser().parse_args(argv)
    if args.command == "complete":
        return 0 if complete(args, args.result) else 1
    if args.command == "ready":
        return ready(args)
    return watch(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
