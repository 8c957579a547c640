"""The architecture, enforced: who may import whom, and who may read the environment.

- relay/ and webhook_app/ are separate deployables and never import each other.
- The relay's pure modules (protocol parsing, the frame codec, the state machine, the
  config) import only the standard library, orjson and other pure relay modules: no
  gevent, sockets of a library, Flask, twilio or websocket-client.
- Only ``config.py`` reads the environment (entry points hand ``os.environ`` to it).
- scripts/ test the relay from outside: they may import its pure modules, never its server,
  its per-call machinery or a private name. The stand-ins (scripts/fakes/) import nothing of
  the relay but the stream token's minting (Liveline's own contract with the webhook): no
  protocol or WebSocket code, so a relay bug cannot be mirrored by the fake that tests it.
  The relay's WebSocket transport is reused by the bench alone (scripts/bench/), for speed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RELAY_PURE = {"relay.config", "relay.errors", "relay.stream_token", "relay.replay_guard", "relay.ws_frames",
              "relay.json_text", "relay.twilio_protocol", "relay.openai_protocol", "relay.bridge", "relay.actions",
              "relay.limits", "relay.playout", "relay.comfort_tone", "relay.conversation", "relay.call_settings",
              "relay.peer_guard", "relay.call_record", "relay.bridge_state", "relay.bridge_twilio",
              "relay.bridge_openai",
              "relay.assistant", "relay.assistant_file", "relay.signing",
              "relay.handshake", "relay.log_limit", "relay.request_limits", "relay.redact", "relay.model_server"}
SCRIPT_MAY_USE = RELAY_PURE | {"relay"}
FAKES_MAY_USE = {"relay.stream_token"}
BENCH_MAY_USE = SCRIPT_MAY_USE | {"relay.transport"}
ENTRY_POINTS = {"relay/wsgi.py", "relay/gunicorn.conf.py", "webhook_app/wsgi.py", "webhook_app/lambda_handler.py",
                "webhook_app/__init__.py"}


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import statement in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder,other", [("relay", "webhook_app"), ("webhook_app", "relay")])
def test_the_two_deployables_never_import_each_other(folder: str, other: str) -> None:
    for path in python_files(folder):
        for module, _ in imports(path):
            assert module.split(".")[0] != other, f"{path.relative_to(ROOT)} imports {module}"


def test_pure_relay_modules_import_no_io() -> None:
    import sys

    stdlib = sys.stdlib_module_names
    for path in python_files("relay"):
        name = module_name(path)
        if name not in RELAY_PURE:
            continue
        for module, _ in imports(path):
            top = module.split(".")[0]
            # msgspec parses JSON and websockets.speedups masks frames: pure C helpers. jsonschema
            # checks a tool's schema and arguments (it fetches no remote $ref: relay/assistant_file.py).
            allowed = (top in stdlib or top in ("msgspec", "jsonschema", "__future__")
                       or module == "websockets.speedups"
                       or module in RELAY_PURE or module == "relay")
            assert allowed, f"{name} (pure) imports {module}"
            assert top not in ("socket", "ssl", "select", "selectors", "threading"), f"{name} imports {module}"


def test_only_config_reads_the_environment() -> None:
    for folder in ("relay", "webhook_app"):
        for path in python_files(folder):
            relative = str(path.relative_to(ROOT))
            if relative.endswith("config.py") or relative in ENTRY_POINTS:
                continue
            text = path.read_text()
            for needle in ("os.environ", "os.getenv", "getenv("):
                assert needle not in text, f"{relative} reads the environment ({needle})"


def relay_imports(path: Path) -> list[tuple[str, list[str]]]:
    """The relay modules ``path`` imports, with the names (``from relay import x`` counts as relay.x)."""
    found = []
    for module, names in imports(path):
        if module == "relay":
            found += [(f"relay.{name}", []) for name in names]
        elif module.split(".")[0] == "relay":
            found.append((module, names))
    return found


def allowed_relay_imports(path: Path) -> set[str]:
    parts = path.relative_to(ROOT).parts
    if parts[:2] == ("scripts", "fakes"):
        return FAKES_MAY_USE
    if parts[:2] == ("scripts", "bench"):
        return BENCH_MAY_USE
    return SCRIPT_MAY_USE


def test_scripts_use_only_the_relays_public_pure_parts() -> None:
    for path in python_files("scripts"):
        may_use = allowed_relay_imports(path)
        for module, _names in imports(path):
            assert module.split(".")[0] != "webhook_app", f"{path.relative_to(ROOT)} imports {module}"
        for module, names in relay_imports(path):
            assert module in may_use, f"{path.relative_to(ROOT)} imports {module}"
            private = [n for n in names if n.startswith("_")]
            assert not private, f"{path.relative_to(ROOT)} imports private {private} from {module}"


def test_the_relays_transport_is_reused_by_the_bench_alone() -> None:
    users = sorted(str(path.relative_to(ROOT)) for path in python_files("scripts")
                   if any(module == "relay.transport" for module, _ in relay_imports(path)))
    assert users and all(user.startswith("scripts/bench/") for user in users), users


def test_the_stand_ins_share_no_code_with_the_relay() -> None:
    """Not its protocol modules, not its frame codec or transport: the stand-ins are independent."""
    for path in python_files("scripts/fakes"):
        for module, _ in relay_imports(path):
            assert module in FAKES_MAY_USE, f"{path.relative_to(ROOT)} imports {module}"
