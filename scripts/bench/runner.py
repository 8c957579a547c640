"""``make bench``'s runner: load-test the relay as deployed and print one table.

Starts the relay exactly as production does (``gunicorn -c relay/gunicorn.conf.py
relay.wsgi:app``; pinned with taskset to its own core when the machine has two or more),
the stand-in Realtime model in load mode, and the load generator (scripts/bench/load.py)
on the other core. For each step N of the ramp, N calls stream caller audio at 50
frames/s while the model streams 50 frames/s back, and the table reports:

- latency through the relay both ways (p50/p99/max, ms), from tags inside the audio;
- frames lost and calls failed;
- relay CPU (% of its core, and CPU-ms per call-second), RSS per call (KiB);
- time from ``start`` to first audio (ms);
- the load generator's own CPU and tick lag, so a load-generator limit is visible.

``--tls`` puts the upstream on wss://, as in production (the stand-in serves a certificate
from a test CA made for the run; the relay trusts it through OpenSSL's SSL_CERT_FILE).
``--relay-url`` aims it at any relay (then the relay's OPENAI_REALTIME_URL must point at
the stand-in this script starts: see ``--standin-host``/``--standin-port``; ``--relay-pid``
measures its CPU when it runs on this machine), ``--json`` prints the rows for
machines, ``--profile`` records a py-spy flame graph of the relay under the largest load.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from scripts.bench import stats as bench_stats
from scripts.bench.procfs import cpu_seconds, machine, rss_kib, tree

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pinned(cores: str | None, argv: list[str]) -> list[str]:
    if cores and shutil.which("taskset"):
        return ["taskset", "-c", cores, *argv]
    return argv


def _cores(spec: str) -> set[int]:
    """A taskset core list ("1", "2-3", "0,2") as a set of core numbers."""
    cores: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        cores.update(range(int(first), int(last or first) + 1))
    return cores


def _wait_up(url: str, process: subprocess.Popen[bytes], log: Path,
             context: ssl.SSLContext | None = None) -> None:
    """Poll ``url`` until it answers; exit with a plain line if ``process`` dies or 20 s pass."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1, context=context):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench: {url} did not come up; see {log}")


class Bench:
    """The processes of one benchmark run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.auth_token = secrets.token_urlsafe(24)
        self.stream_secret = secrets.token_urlsafe(32)
        self.api_key = "sk-bench-" + secrets.token_hex(8)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.relay: subprocess.Popen[bytes] | None = None
        self.log_dir = ROOT / "build" / "bench"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.ca_file: Path | None = None
        self.context: ssl.SSLContext | None = None

    def _tls_options(self) -> list[str]:
        """--tls: a test CA and a certificate for localhost (build/bench/tls/); the stand-in's options."""
        from scripts.fakes.certificates import TestCertificates  # trustme: requirements/bench.txt

        certificates = TestCertificates(self.log_dir / "tls")
        certificate = certificates.server("localhost")
        self.ca_file = certificates.ca_file
        self.context = ssl.create_default_context(cafile=str(certificates.ca_file))
        return ["--certfile", str(certificate.certfile), "--keyfile", str(certificate.keyfile),
                "--url-host", "localhost"]

    def _fetch(self, url: str, method: str = "GET") -> Any:
        """One request to the stand-in's HTTP side; its JSON answer."""
        request = urllib.request.Request(url, method=method)
        with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
            return json.loads(response.read())

    def start(self) -> None:
        """Stand-in model on the load core; the relay (unless --relay-url) on its own."""
        args = self.args
        self.standin_port = args.standin_port or _free_port()
        tls = self._tls_options() if args.tls else []
        standin_log = open(self.log_dir / "standin.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.processes.append(subprocess.Popen(
            _pinned(args.load_cores, [sys.executable, "-m", "scripts.fakes.openai", "--load",
                                      "--host", args.standin_host, "--port", str(self.standin_port),
                                      "--api-key", self.api_key, *tls]),
            cwd=ROOT, stdout=standin_log, stderr=subprocess.STDOUT))
        self.standin = self.processes[-1]
        # With --tls the stand-in's name is its certificate's; its plain HTTP side is TLS too.
        host, scheme = ("localhost", "s") if args.tls else ("127.0.0.1", "")
        self.standin_http = f"http{scheme}://{host}:{self.standin_port}"
        self.standin_ws = f"ws{scheme}://{host}:{self.standin_port}/v1/realtime"
        _wait_up(self.standin_http + "/", self.standin, self.log_dir / "standin.log", self.context)
        if args.tls and args.relay_url:
            print(f"bench: the stand-in serves {self.standin_ws}; give the relay SSL_CERT_FILE={self.ca_file}",
                  file=sys.stderr)
        if args.relay_url:
            base = args.relay_url.rstrip("/")
            self.relay_ws = "ws" + base[4:] if base.startswith("http") else base
            self.relay_http = "http" + self.relay_ws[2:]
            self.signed_url = (args.public_url or self.relay_ws).rstrip("/") + "/twilio/realtime"
            self.auth_token = os.environ.get("TWILIO_AUTH_TOKEN", self.auth_token)
            self.stream_secret = os.environ.get("STREAM_TOKEN_SECRET", self.stream_secret)
            return
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "OPENAI_"))}
        env.update({
            "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": self.api_key,
            "OPENAI_REALTIME_URL": self.standin_ws,
            "TWILIO_AUTH_TOKEN": self.auth_token, "STREAM_TOKEN_SECRET": self.stream_secret,
            "RELAY_PUBLIC_URL": f"ws://127.0.0.1:{port}", "RELAY_BIND": f"127.0.0.1:{port}",
            "RELAY_MAX_CALLS": "100000",
        })
        if args.workers:
            env["RELAY_WORKERS"] = str(args.workers)
        if self.ca_file is not None:
            env["SSL_CERT_FILE"] = str(self.ca_file)  # OpenSSL's own variable: no setting of ours
        relay_log = open(self.log_dir / "relay.log", "wb")  # noqa: SIM115
        self.relay = subprocess.Popen(
            _pinned(args.relay_cores, [sys.executable, "-m", "gunicorn", "-c", "relay/gunicorn.conf.py",
                                       "relay.wsgi:app"]),
            cwd=ROOT, env=env, stdout=relay_log, stderr=subprocess.STDOUT)
        self.processes.append(self.relay)
        self.relay_ws = f"ws://127.0.0.1:{port}"
        self.relay_http = f"http://127.0.0.1:{port}"
        self.signed_url = self.relay_ws + "/twilio/realtime"
        _wait_up(self.relay_http + "/healthz", self.relay, self.log_dir / "relay.log")
        time.sleep(1.0)  # let every worker boot

    def stop(self) -> None:
        """Stop everything this run started."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGINT if process is not self.relay else signal.SIGQUIT)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    def step(self, calls: int, *, profile_it: bool = False) -> dict[str, Any]:
        """One load step of ``calls`` calls; returns its table row (``profile_it``: under py-spy)."""
        args = self.args
        self._fetch(self.standin_http + "/reset", "POST")
        relay_pid = self.relay.pid if self.relay is not None else self.args.relay_pid
        idle_rss = rss_kib(relay_pid) if relay_pid else 0
        config = {"url": self.relay_ws + "/twilio/realtime", "signed_url": self.signed_url,
                  "auth_token": self.auth_token, "stream_secret": self.stream_secret, "calls": calls,
                  "duration_s": args.duration, "warmup_s": args.warmup, "grace_s": 1.0,
                  "start_spread_s": min(2.0, 0.01 * calls + 0.2)}
        loadgen = subprocess.Popen(
            _pinned(args.load_cores, [sys.executable, "-m", "scripts.bench.load"]),
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        # Sample the relay while the load runs: CPU over the steady window, peak RSS.
        samples: dict[str, Any] = {"peak_rss": idle_rss}
        stop_sampling = threading.Event()
        profile: subprocess.Popen[bytes] | None = None

        def sample() -> None:
            connect_s = config["start_spread_s"] + 0.5
            if stop_sampling.wait(connect_s + args.warmup):
                return
            samples["cpu0"], samples["t0"] = cpu_seconds(relay_pid), time.monotonic()  # type: ignore[arg-type]
            samples["model_cpu0"] = cpu_seconds(self.standin.pid)
            end = samples["t0"] + args.duration - args.warmup - 1.0
            while not stop_sampling.wait(0.25) and time.monotonic() < end:
                samples["peak_rss"] = max(samples["peak_rss"], rss_kib(relay_pid))  # type: ignore[arg-type]
            samples["cpu1"], samples["t1"] = cpu_seconds(relay_pid), time.monotonic()  # type: ignore[arg-type]
            samples["model_cpu1"] = cpu_seconds(self.standin.pid)

        sampler = threading.Thread(target=sample, daemon=True) if relay_pid else None
        if sampler:
            sampler.start()
        if profile_it and relay_pid:
            profile = self._start_profile(relay_pid, config["start_spread_s"] + args.warmup)
        out, err = loadgen.communicate(json.dumps(config).encode(), timeout=args.duration + 120)
        stop_sampling.set()
        if sampler:
            sampler.join()
        if profile is not None:
            profile.wait(timeout=args.duration + 30)
        if loadgen.returncode != 0:
            raise RuntimeError(f"load generator failed:\n{err.decode()[-2000:]}")
        result = json.loads(out)
        start_ns, end_ns = result["window_ns"]
        model = self._fetch(f"{self.standin_http}/stats?start={start_ns}&end={end_ns}")

        up = bench_stats.Direction(sent=result["up_sent"], received=model["up_received"])
        up.add(model["up_latencies_ms"])
        down = bench_stats.Direction(sent=model["down_sent"], received=result["down_received"])
        down.add(result["down_latencies_ms"])
        up_s, down_s = up.summary(), down.summary()
        first = sorted(result["first_audio_ms"])
        row: dict[str, Any] = {
            "calls": calls, "up_p50": up_s["p50_ms"], "up_p99": up_s["p99_ms"], "up_max": up_s["max_ms"],
            "down_p50": down_s["p50_ms"], "down_p99": down_s["p99_ms"], "down_max": down_s["max_ms"],
            "lost": up.lost + down.lost, "failed": result["failed"],
            "first_audio_ms": round(bench_stats.percentile(first, 0.5), 1) if first else None,
            "model_first_delta_ms": round(bench_stats.percentile(sorted(model["first_delta_ms"]), 0.5), 2)
            if model["first_delta_ms"] else None,
            "loadgen_cpu_pct": result["cpu_pct"], "loadgen_lag_p99": result["lag_p99_ms"],
            "up": up_s, "down": down_s, "failures": result["failures"],
            "relay_cpu_pct": None, "cpu_ms_per_call_s": None, "rss_kib_per_call": None,
        }
        if "cpu1" in samples:
            window = samples["t1"] - samples["t0"]
            cpu = samples["cpu1"] - samples["cpu0"]
            row["relay_cpu_pct"] = round(100 * cpu / window, 1)
            row["cpu_ms_per_call_s"] = round(1000 * cpu / (calls * window), 2)
            row["rss_kib_per_call"] = round((samples["peak_rss"] - idle_rss) / calls, 0)
            # The load core runs the load generator and the stand-in model: report both.
            row["loadgen_cpu_pct"] = round(
                result["cpu_pct"] + 100 * (samples["model_cpu1"] - samples["model_cpu0"]) / window, 1)
        row["verdict"] = bench_stats.verdict(row)
        if row["loadgen_cpu_pct"] > 85 or result["lag_p99_ms"] > 5:
            row["verdict"] += " (load generator at its limit)"
        return row

    def _start_profile(self, relay_pid: int, delay_s: float) -> subprocess.Popen[bytes] | None:
        workers = tree(relay_pid)[1:] or [relay_pid]
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            print("--profile needs py-spy (pip install -r requirements/bench.txt)", file=sys.stderr)
            return None
        time.sleep(delay_s)
        output = self.log_dir / "relay-profile.svg"
        print(f"profiling relay worker {workers[0]} into {output}", file=sys.stderr)
        return subprocess.Popen([py_spy, "record", "--pid", str(workers[0]), "--rate", "500", "--duration",
                                 str(max(int(self.args.duration - self.args.warmup - 2), 3)),
                                 "--output", str(output), "--nonblocking"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    """Ramp the load, print the table."""
    parser = argparse.ArgumentParser(description="Load-test the Liveline relay.")
    parser.add_argument("--steps", default="25,50,100,150,200,300",
                        help="comma-separated numbers of concurrent calls")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per step")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds left out at the start of a step")
    parser.add_argument("--relay-url", help="bench an already running relay instead of starting one")
    parser.add_argument("--public-url", help="the relay's RELAY_PUBLIC_URL, if it differs from --relay-url")
    parser.add_argument("--relay-pid", type=int,
                        help="with --relay-url on this machine: the relay's (gunicorn master's) pid, to measure "
                             "its CPU and memory")
    parser.add_argument("--standin-host", default="127.0.0.1")
    parser.add_argument("--standin-port", type=int, default=0)
    parser.add_argument("--tls", action="store_true",
                        help="the upstream over wss://, as in production: the stand-in serves a certificate from a "
                             "test CA made for the run, which the relay trusts through SSL_CERT_FILE")
    parser.add_argument("--workers", type=int, help="RELAY_WORKERS (default: one per core it is pinned to)")
    default_relay, default_load = ("0", "1") if (os.cpu_count() or 1) >= 2 else (None, None)
    parser.add_argument("--relay-cores", default=default_relay, help="taskset core list for the relay")
    parser.add_argument("--load-cores", default=default_load,
                        help="taskset core list for the load generator and stand-in")
    parser.add_argument("--profile", action="store_true", help="py-spy flame graph at the largest step")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each step this many times (a shared VM's figures vary from run to run)")
    parser.add_argument("--keep-going", action="store_true", help="run every step even after one misses")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    args.steps = [int(n) for n in args.steps.split(",")]

    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.load_cores and args.relay_cores and shutil.which("taskset"):
        # This process samples the relay while it runs: keep it off the relay's core too
        # (its children are pinned by taskset, so they do not inherit this; an unpinned
        # relay would, so then this process stays unpinned too).
        try:
            os.sched_setaffinity(0, _cores(args.load_cores))
        except (ValueError, OSError) as exc:
            parser.error(f"--load-cores {args.load_cores!r}: {exc}")

    bench = Bench(args)
    rows: list[dict[str, Any]] = []
    print(f"# {machine()}; relay on cores {args.relay_cores or 'any'}, load on {args.load_cores or 'any'}; "
          f"{args.duration:g} s per step", file=sys.stderr)
    try:
        bench.start()
        misses = 0
        for calls in args.steps:
            runs = []
            for attempt in range(args.repeat):
                # --profile: one run of the largest step, not every repeat (py-spy costs the relay CPU)
                row = bench.step(calls, profile_it=args.profile and calls == max(args.steps) and attempt == 0)
                rows.append(row)
                runs.append(row)
                if not args.json:
                    print(bench_stats.table([row]).splitlines()[-1] if len(rows) > 1
                          else bench_stats.table([row]), flush=True)
            misses += not bench_stats.step_held(runs)
            if misses >= 2 and not args.keep_going:
                break
    finally:
        bench.stop()
    summary = bench_stats.targets(rows)
    if args.json:
        print(json.dumps({"machine": machine(), "relay_cores": args.relay_cores, "rows": rows,
                          "capacity_calls": bench_stats.capacity(rows), "targets": summary}, indent=1))
    else:
        print()
        for line in summary:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
