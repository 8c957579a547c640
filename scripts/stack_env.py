"""What ``make run`` starts, on which ports, with which environment (scripts/local_stack.py runs it).

Every part is a process on 127.0.0.1, on a port of its own (each one a flag of
``python -m scripts.local_stack``, which ``make run RUN_ARGS="..."`` passes on):

=============  =====  ==================================================================
relay           8080  ``gunicorn -c relay/gunicorn.conf.py relay.wsgi:app``, as deployed
webhook         5050  ``gunicorn webhook_app.wsgi:app``
softphone       8070  the browser softphone and its Twilio stand-in (scripts/softphone/)
stand-in        8765  the stand-in Realtime model, only when OPENAI_API_KEY is unset
tool            8091  the example tool (scripts/fakes/example_tool.py) of the example assistant
reports         8092  the report receiver (scripts/fakes/report_receiver.py): CALL_REPORT_URL
twilio-api      8093  the stand-in for Twilio's REST API (scripts/fakes/twilio_rest_api.py)
=============  =====  ==================================================================

Secrets (a Twilio auth token to sign with, the stream token secret, the diagnostic token,
the signing secret of tool requests and call reports) are generated once and kept in
``.local/stack.env`` (0600, in a 0700 folder) with the local URLs, which ``make call``, the
softphone and the verify scripts read. Values already in the environment win, and so do
ASSISTANT_CONFIG, CALL_REPORT_URL, TWILIO_API_BASE_URL, RELAY_PUBLIC_URL and WEBHOOK_PUBLIC_URL:
with public URLs (a tunnel, for a real phone: docs/phone.md) calls come from the real Twilio,
so hang-ups and transfers go to its real REST API (the relay's default), not the stand-in.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from relay.config import is_loopback
from scripts.verify import settings

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = settings.DEFAULT_ENV_FILE
GENERATED = ("TWILIO_AUTH_TOKEN", "STREAM_TOKEN_SECRET", "DIAGNOSTIC_TOKEN", "RELAY_SIGNING_SECRET")
EXAMPLE_ASSISTANT = ROOT / "scripts" / "assets" / "assistant.local.toml"
# Which part serves Twilio's REST API to the relay (TWILIO_API_BASE_URL): the softphone's gateway, which
# plays Twilio for the page's calls and records the others' updates for make call; the stand-in on its own
# port when the softphone is off (--softphone-port 0).
# When the softphone's gateway serves it for its calls, make this "softphone" (one line).
TWILIO_REST_PART = "softphone"
DEFAULT_PORTS = {"relay": 8080, "webhook": 5050, "softphone": 8070, "stand-in": 8765, "tool": 8091,
                 "reports": 8092, "twilio-api": 8093}
FLAGS = {part: f"--{part.replace('stand-in', 'standin')}-port" for part in DEFAULT_PORTS}  # --relay-port...


@dataclass
class Stack:
    """The local stack to start: its environment, the parts that run and their ports."""

    env: dict[str, str]
    ports: dict[str, int]  # part -> port, for the parts that run (and only those)
    assistant_file: Path | None = None  # the example assistant (maybe a copy for another tool port)
    notes: list[str] = field(default_factory=list)

    @property
    def standin(self) -> bool:
        """Whether the stand-in model runs (no OPENAI_API_KEY)."""
        return "stand-in" in self.ports

    def url(self, part: str, path: str = "", scheme: str = "http") -> str:
        """``http://127.0.0.1:<port><path>`` of a part."""
        return f"{scheme}://127.0.0.1:{self.ports[part]}{path}"


def stack_environment(base: dict[str, str], ports: dict[str, int], env_file: Path = ENV_FILE) -> Stack:
    """The environment for every process, and which parts run (``write_env_file`` records it)."""
    saved = settings.read_env_file(env_file) if env_file.exists() else {}
    env = dict(base)
    for name in GENERATED:
        if not env.get(name):
            env[name] = saved.get(name) or secrets.token_urlsafe(32)
    running = {part: port for part, port in ports.items() if port}
    if env.get("OPENAI_API_KEY"):
        running.pop("stand-in", None)
    else:
        env["OPENAI_API_KEY"] = "sk-local-standin"
        env["OPENAI_REALTIME_URL"] = f"ws://127.0.0.1:{running['stand-in']}/v1/realtime"
    env["RELAY_BIND"] = f"127.0.0.1:{running['relay']}"  # make run owns its ports: choose them with the flags
    env.setdefault("RELAY_PUBLIC_URL", f"ws://127.0.0.1:{running['relay']}")
    env.setdefault("RELAY_WORKERS", "1")
    env.setdefault("WEBHOOK_PUBLIC_URL", f"http://127.0.0.1:{running['webhook']}")
    stack = Stack(env, running)
    if env.get("ASSISTANT_CONFIG"):
        running.pop("tool", None)  # the operator's own assistant, with their own tools
    else:
        stack.assistant_file = local_assistant(running["tool"], env_file.parent)
        env["ASSISTANT_CONFIG"] = str(stack.assistant_file)
    if env.get("CALL_REPORT_URL"):
        running.pop("reports", None)
    else:
        env["CALL_REPORT_URL"] = stack.url("reports", "/calls")
    if env.get("TWILIO_API_BASE_URL") or not _local(env["RELAY_PUBLIC_URL"]):
        running.pop("twilio-api", None)  # real calls through a tunnel: the relay's default is the real API
    else:
        served_by = TWILIO_REST_PART if TWILIO_REST_PART in running else "twilio-api"  # (--softphone-port 0)
        if served_by != "twilio-api":
            running.pop("twilio-api", None)
        env["TWILIO_API_BASE_URL"] = stack.url(served_by)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"  # every line reaches make run's output as it is written
    return stack


def _local(url: str) -> bool:
    return is_loopback(urlsplit(url).hostname or "")


def write_env_file(env_file: Path, stack: Stack) -> None:
    """The secrets and local URLs, for make call, the softphone and the verify scripts (0600)."""
    env = stack.env
    lines = [f"{name}={env[name]}" for name in GENERATED]
    lines += [
        f"RELAY_URL={stack.url('relay')}",
        f"RELAY_PUBLIC_URL={env['RELAY_PUBLIC_URL']}",
        f"WEBHOOK_URL={stack.url('webhook')}",
        f"WEBHOOK_PUBLIC_URL={env['WEBHOOK_PUBLIC_URL']}",
        f"CALL_REPORT_URL={env['CALL_REPORT_URL']}",
        f"TWILIO_API_BASE_URL={env.get('TWILIO_API_BASE_URL', '')}",
    ]
    if "softphone" in stack.ports:
        lines.append(f"SOFTPHONE_URL={stack.url('softphone', '/')}")
    write_private(env_file, "# written by make run (scripts/local_stack.py); local secrets only\n"
                  + "\n".join(lines) + "\n")


def write_private(path: Path, text: str) -> None:
    """Write secrets readable by this user only, from the first byte: a 0600 file in a 0700 folder."""
    created = not path.parent.exists()
    if created:
        path.parent.mkdir(mode=0o700, parents=True)
    if created or path.parent == ENV_FILE.parent:  # whatever the umask; an older run made .local/ 0755
        path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # a file left from an older run may have been 0644
        out.write(text)


def tool_urls(path: Path) -> list[str]:
    """The ``url`` of every tool an assistant file describes (its top level and its numbers)."""
    document = tomllib.loads(path.read_text())
    sections = [document, *(document.get("numbers") or {}).values()]
    return [tool["url"] for section in sections for tool in section.get("tools") or [] if "url" in tool]


def local_assistant(tool_port: int, folder: Path) -> Path:
    """The example assistant, its tool on ``tool_port``: the file itself, or a copy in ``folder``.

    The example file names the example tool at DEFAULT_PORTS["tool"]; on another port, a copy
    with that address changed (checked: every local tool URL of the copy names the new port).
    """
    default = f"127.0.0.1:{DEFAULT_PORTS['tool']}/"
    if tool_port == DEFAULT_PORTS["tool"]:
        return EXAMPLE_ASSISTANT
    copy = folder / "assistant.local.toml"
    text = EXAMPLE_ASSISTANT.read_text().replace(default, f"127.0.0.1:{tool_port}/")
    write_private(copy, f"# make run's copy of {EXAMPLE_ASSISTANT.relative_to(ROOT)}, its tool on port "
                        f"{tool_port}\n{text}")
    wrong = [url for url in tool_urls(copy) if urlsplit(url).port != tool_port]
    if wrong:
        raise ValueError(f"{EXAMPLE_ASSISTANT}: tool URLs {wrong} do not name the example tool's port")
    return copy
