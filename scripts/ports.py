"""Local ports for ``make run``: is each one free, and if not, which program holds it.

``make run`` checks every port it needs before it starts anything, so a taken port is one
plain line ("port 8080 (relay) is taken by nginx (pid 812)") instead of a stack that says it
is running and then dies. Who holds a port is found, best first:

1. Linux: the listening socket's inode in ``/proc/net/tcp`` and ``tcp6``, then the process
   whose ``/proc/<pid>/fd`` holds it (only this user's processes are readable);
2. ``lsof`` where it exists (macOS);
3. otherwise, what the port answers to an HTTP request (a ``Server`` header, a page title).

Standard library only.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


@dataclass(frozen=True)
class Taken:
    """A port ``make run`` cannot have: whose it is (when known) and why."""

    role: str  # "relay", "webhook", ...
    port: int
    holder: str | None  # "nginx (pid 812)", or what it answers to HTTP
    reason: str = "in use"  # or "needs root"

    def describe(self) -> str:
        """``port 8080 (relay) is taken by nginx (pid 812: nginx: master process)``."""
        if self.reason != "in use":
            return f"port {self.port} ({self.role}) {self.reason}"
        return f"port {self.port} ({self.role}) is taken" + (f" by {self.holder}" if self.holder else "")


def bind_problem(port: int, host: str = HOST) -> OSError | None:
    """Why ``port`` cannot be listened on now, or None. SO_REUSEADDR as servers set it (TIME_WAIT is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc
    return None


def check(ports: dict[str, int], host: str = HOST) -> list[Taken]:
    """Every port of ``ports`` (role -> port) that cannot be had, with its holder when it can be told."""
    taken = []
    for role, port in ports.items():
        problem = bind_problem(port, host)
        if problem is None:
            continue
        if problem.errno in (errno.EACCES, errno.EPERM):
            taken.append(Taken(role, port, None, "needs root: choose a port above 1023"))
        else:
            taken.append(Taken(role, port, holder(port, host)))
    return taken


def free_near(port: int, avoid: set[int], host: str = HOST) -> int:
    """A free port just above ``port`` (for the suggestion), or ``port + 100`` if none is found quickly."""
    for candidate in range(port + 1, min(port + 200, 65536)):
        if candidate not in avoid and bind_problem(candidate, host) is None:
            return candidate
    return port + 100


# -- who holds a port ------------------------------------------------------------------------------


def holder(port: int, host: str = HOST) -> str | None:
    """``name (pid N: command line)`` of the program listening on ``port``, or what it answers, or None."""
    pid = _pid_from_proc(port) or _pid_from_lsof(port)
    if pid is not None:
        return describe_process(pid)
    return _http_answer(host, port)


def describe_process(pid: int) -> str:
    """``python3 (pid 42: python -m gunicorn … relay.wsgi:app)``; Liveline's own parts are named as such."""
    command = _cmdline(pid)
    name = _process_name(pid) or (command.split()[0].rsplit("/", 1)[-1] if command else "a program")
    liveline = next((part for marker, part in _LIVELINE_PARTS if marker in command), None)
    if liveline:
        where = _cwd(pid)
        return f"another Liveline stack's {liveline} (pid {pid}{', started in ' + where if where else ''})"
    shown = command if len(command) <= 90 else command[:87] + "..."
    return f"{name} (pid {pid}{': ' + shown if shown and shown != name else ''})"


_LIVELINE_PARTS = (("relay.wsgi:app", "relay"), ("webhook_app.wsgi:app", "webhook"),
                   ("scripts.fakes.openai", "stand-in model"), ("scripts.softphone", "softphone"),
                   ("scripts.fakes.example_tool", "example tool"), ("scripts.fakes.report_receiver", "report receiver"),
                   ("scripts.fakes.twilio_rest_api", "Twilio REST API stand-in"), ("scripts.local_stack", "make run"))


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes - {"0"}


def _pid_from_proc(port: int) -> int | None:
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(entry.name)
        except OSError:  # another user's process, or one that just ended
            continue
    return None


def _pid_from_lsof(port: int) -> int | None:
    lsof = shutil.which("lsof")
    if lsof is None or Path("/proc/net/tcp").exists():  # on Linux /proc said all it can
        return None
    try:
        out = subprocess.run([lsof, "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-Fp"], capture_output=True,
                             text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^p(\d+)$", out, re.M)
    return int(match.group(1)) if match else None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        pass
    try:
        return subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True,
                              timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _process_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or None
    except OSError:
        return None


def _cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def _http_answer(host: str, port: int) -> str | None:
    """What answers HTTP there, for a port whose process this user cannot see."""
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/", headers={"User-Agent": "liveline-make-run"})
        response = connection.getresponse()
        body = response.read(4096).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return "a program that does not answer HTTP (another user's, or a system service)"
    finally:
        connection.close()
    title = re.search(r"<title[^>]*>(.*?)</title>", body, re.I | re.S)
    server = response.getheader("Server")
    what = ", ".join(part for part in (server and f"Server: {server}", title and title.group(1).strip()[:60]) if part)
    return f"a web server ({what})" if what else f"a web server (it answers HTTP {response.status})"
