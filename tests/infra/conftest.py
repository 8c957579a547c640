"""The Terraform under infra/, read offline with python-hcl2, and a tiny evaluator for its wiring.

Nothing here runs terraform (no binary or provider is needed). ``Stack`` parses the root module and
its local modules; ``Stack.resolve`` follows the references the design's invariants depend on
(``var.*`` through module calls to defaults and to terraform.tfvars.example, ``local.*``,
``module.*.*`` outputs, string interpolation, attribute access into objects, the one conditional
shape the modules use for optional inputs, ``REF == null ? A : B``, and ``REF - N``). Any other expression raises
``Unresolvable``, so a test never passes by silently skipping a value it could not compute.
``render`` is the subset of Terraform's ``templatefile`` the templates use (``${name}`` only).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
RELAY_TEMPLATES = INFRA / "modules" / "relay" / "templates"
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)

# Values terraform would only know at plan time (data sources, resource attributes). Tests use them
# where an invariant does not depend on them.
TEST_REGION = "us-east-1"


def load_hcl(path: Path) -> dict[str, Any]:
    """Parse one HCL file with python-hcl2 v8 in v7-shaped output."""
    with path.open() as handle:
        return hcl2.load(handle, serialization_options=OPTIONS)  # type: ignore[no-any-return]


class Unresolvable(Exception):
    """An expression the offline evaluator does not compute."""


@dataclass
class Module:
    """One Terraform module directory, its blocks merged across files."""

    path: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Module:
        """Parse every .tf file of ``path``."""
        module = cls(path)
        for tf in sorted(path.glob("*.tf")):
            parsed = load_hcl(tf)
            module.files[tf.name] = parsed
            for block in parsed.get("variable", []):
                module.variables.update(block)
            for block in parsed.get("output", []):
                module.outputs.update(block)
            for block in parsed.get("locals", []):
                module.locals.update(block)
            for block in parsed.get("module", []):
                module.calls.update(block)
            for kind, target in (("resource", module.resources), ("data", module.data)):
                for block in parsed.get(kind, []):
                    for type_name, named in block.items():
                        target.setdefault(type_name, {}).update(named)
            module.terraform += parsed.get("terraform", [])
        return module

    def resource(self, type_name: str, name: str) -> dict[str, Any]:
        """The body of ``resource "type_name" "name"``."""
        try:
            return self.resources[type_name][name]
        except KeyError:
            raise AssertionError(f"{self.path.name}: no resource {type_name}.{name}") from None


REFERENCE = re.compile(r"\$\{([^{}]*)\}")
SIMPLE_REF = re.compile(r"(var|local|module)\.[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*")
# `var.x == null ? A : B`, where A and B are references or literals (no nested conditionals).
NULL_CONDITIONAL = re.compile(r"(?P<test>\S+) == null \? (?P<then>\S+) : (?P<else>\S+)")
# `var.x - 60`: a reference plus or minus a whole number.
OFFSET = re.compile(r"(?P<reference>\S+) (?P<sign>[-+]) (?P<number>\d+)")


class Stack:
    """The root module, its local modules and the example tfvars."""

    def __init__(self, root: Path) -> None:
        self.root = Module.load(root)
        self.modules = {name: Module.load(root / call["source"]) for name, call in self.root.calls.items()}
        self.tfvars = load_hcl(root / "terraform.tfvars.example")

    def module(self, name: str | None) -> Module:
        """The root module for None, else the local module called ``name``."""
        return self.root if name is None else self.modules[name]

    # -- evaluation -------------------------------------------------------------------------

    def resolve(self, where: str | None, value: Any) -> Any:
        """Evaluate ``value`` (as python-hcl2 returns it) in module ``where`` (None = root)."""
        if isinstance(value, dict):
            return {key: self.resolve(where, item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(where, item) for item in value]
        if not isinstance(value, str):
            return value
        whole = REFERENCE.fullmatch(value)
        if whole:
            return self.reference(where, whole.group(1).strip())
        if "${" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            resolved = self.reference(where, match.group(1).strip())
            if resolved is None:
                raise Unresolvable(f"null interpolated into {value!r}")
            return terraform_string(resolved)

        return REFERENCE.sub(substitute, value)

    def reference(self, where: str | None, expression: str) -> Any:
        """Evaluate one reference such as ``var.x``, ``local.y.z`` or ``module.m.o``."""
        conditional = NULL_CONDITIONAL.fullmatch(expression)
        if conditional:
            branch = "then" if self.operand(where, conditional["test"]) is None else "else"
            return self.operand(where, conditional[branch])
        offset = OFFSET.fullmatch(expression)
        if offset:
            base = self.reference(where, offset["reference"])
            number = int(offset["number"])
            return base - number if offset["sign"] == "-" else base + number
        if not SIMPLE_REF.fullmatch(expression):
            raise Unresolvable(f"{expression!r} in {where or 'root'}")
        kind, name, *path = expression.split(".")
        module = self.module(where)
        if kind == "var":
            value = self.variable(where, name)
        elif kind == "local":
            if name not in module.locals:
                raise AssertionError(f"local.{name} is not defined in {where or 'root'}")
            value = self.resolve(where, module.locals[name])
        else:  # module.<call>.<output>
            if where is not None:
                raise Unresolvable("nested module references")
            output, *path = path
            value = self.resolve(name, self.modules[name].outputs[output]["value"])
        for attribute in path:
            if not isinstance(value, dict) or attribute not in value:
                raise AssertionError(f"{expression}: no attribute {attribute!r} in {value!r}")
            value = value[attribute]
        return value

    def operand(self, where: str | None, text: str) -> Any:
        """A conditional's operand: null, true/false, a number, a quoted string or a reference."""
        literals: dict[str, Any] = {"null": None, "true": True, "false": False}
        if text in literals:
            return literals[text]
        if re.fullmatch(r'"[^"\\$]*"', text):
            return text[1:-1]
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            return float(text) if "." in text else int(text)
        return self.reference(where, text)

    def variable(self, where: str | None, name: str) -> Any:
        """A variable's value: the module call's argument, the example tfvars, or its default."""
        module = self.module(where)
        if name not in module.variables:
            raise AssertionError(f"var.{name} is not declared in {where or 'root'}")
        if where is not None and name in self.root.calls[where]:
            return self.resolve(None, self.root.calls[where][name])
        if where is None and name in self.tfvars:
            return self.tfvars[name]
        spec = module.variables[name]
        if "default" not in spec:
            raise Unresolvable(f"var.{name} has no default")
        return self.resolve(where, spec["default"])


def terraform_string(value: Any) -> str:
    """How Terraform turns a value into a string in an interpolation."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        raise Unresolvable(f"cannot interpolate {value!r}")
    return str(value)


# -- templatefile -------------------------------------------------------------------------

TEMPLATE_TOKEN = re.compile(r"\$\$\{|%%\{|%\{|\$\{\s*([A-Za-z_]\w*)\s*\}|\$\{")


def template_names(text: str) -> set[str]:
    """The ``${name}`` placeholders of a template."""
    return {m.group(1) for m in TEMPLATE_TOKEN.finditer(text) if m.group(1)}


def render(text: str, variables: dict[str, Any]) -> str:
    """Terraform's templatefile for templates that use only ``${name}`` (and the $${ / %%{ escapes)."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        if token == "%%{":
            return "%{"
        name = match.group(1)
        if name is None:
            raise AssertionError(f"template uses a directive or expression not rendered here: {token}")
        if name not in variables:
            raise AssertionError(f"template variable {name!r} is not passed to templatefile")
        return terraform_string(variables[name])

    return TEMPLATE_TOKEN.sub(replace, text)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values in order]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"unit line outside a section: {line!r}"
        assert "=" in line, f"not a key=value unit line: {line!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_env_file(text: str) -> dict[str, str]:
    """A systemd EnvironmentFile with ``KEY="value"`` lines (as infra writes it)."""
    env = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r'([A-Z][A-Z0-9_]*)="([^"\\]*)"', line)
        assert match, f"environment file line systemd would not take literally: {line!r}"
        env[match.group(1)] = match.group(2)
    return env


def exec_argv(value: str) -> list[str]:
    """Split an Exec*= line (after systemd's prefix characters) into argv."""
    return shlex.split(value.lstrip("-+!@:"))


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The whole infra/ configuration, parsed once."""
    return Stack(INFRA)


@pytest.fixture(scope="session")
def relay_env_values(stack: Stack) -> dict[str, Any]:
    """The relay's non-secret environment exactly as modules/relay builds it (nulls dropped)."""
    env = stack.resolve("relay", stack.modules["relay"].locals["relay_env"])
    return {key: value for key, value in env.items() if value is not None}


def relay_env_here(stack: Stack, env: dict[str, Any]) -> dict[str, str]:
    """The relay's environment as strings, with the assistant file read from this checkout.

    On an instance ASSISTANT_CONFIG is the installed copy of the file Terraform ships
    (assistant_config_file); here it is that file itself, so the relay's own start-up checks can run.
    """
    here = {key: terraform_string(value) for key, value in env.items()}
    if "ASSISTANT_CONFIG" in here:
        assert here["ASSISTANT_CONFIG"] == stack.resolve("relay", "${local.assistant_path}")
        here["ASSISTANT_CONFIG"] = str(INFRA / stack.resolve("relay", "${var.assistant_config_path}"))
    return here


def relay_env_file(env: dict[str, Any]) -> str:
    """modules/relay's local.relay_env_file, in Python: sorted ``KEY="value"`` lines."""
    return "".join(f'{key}="{terraform_string(env[key])}"\n' for key in sorted(env))
