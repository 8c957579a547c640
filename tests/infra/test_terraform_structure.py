"""infra/ is well-formed Terraform: it parses, every input and output is documented, versions are pinned.

The tflint rules terraform-aws-modules runs (documented/typed variables, documented outputs, required
version and providers, standard module structure), reproduced offline with python-hcl2 (docs/infra-testing.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import INFRA, Stack, load_hcl

TF_FILES = sorted(INFRA.rglob("*.tf"))
MODULE_DIRS = sorted({path.parent for path in TF_FILES if ".terraform" not in path.parts})


def test_there_is_terraform_to_check() -> None:
    assert INFRA / "main.tf" in TF_FILES
    assert {d.relative_to(INFRA).as_posix() for d in MODULE_DIRS} == {".", "modules/relay", "modules/webhook"}


@pytest.mark.parametrize("path", TF_FILES + [INFRA / "terraform.tfvars.example"],
                         ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_file_parses(path: Path) -> None:
    assert isinstance(load_hcl(path), dict)


@pytest.mark.parametrize("directory", MODULE_DIRS, ids=lambda p: p.relative_to(INFRA).as_posix() or "root")
def test_standard_module_layout(directory: Path) -> None:
    names = {path.name for path in directory.glob("*.tf")}
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= names
    if directory == INFRA:
        assert "providers.tf" in names
        assert "provider" not in load_hcl(directory / "main.tf"), "providers belong in providers.tf"
    else:
        assert not any("provider" in load_hcl(path) for path in directory.glob("*.tf")), (
            "local modules inherit the root's providers")


def test_every_variable_is_typed_and_described(stack: Stack) -> None:
    problems = []
    for where, module in [("root", stack.root), *stack.modules.items()]:
        for name, spec in module.variables.items():
            if not spec.get("type"):
                problems.append(f"{where}: var.{name} has no type")
            if not str(spec.get("description", "")).strip():
                problems.append(f"{where}: var.{name} has no description")
            for rule in spec.get("validation", []):
                if not rule.get("condition") or not str(rule.get("error_message", "")).strip():
                    problems.append(f"{where}: var.{name} has a validation without condition or message")
    assert not problems, "\n".join(problems)


def test_every_output_is_described(stack: Stack) -> None:
    problems = [f"{where}: output {name} has no description"
                for where, module in [("root", stack.root), *stack.modules.items()]
                for name, spec in module.outputs.items()
                if not str(spec.get("description", "")).strip()]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("filename", ["variables.tf", "outputs.tf"])
def test_variables_and_outputs_are_in_alphabetical_order(filename: str) -> None:
    kind = "variable" if filename == "variables.tf" else "output"
    for directory in MODULE_DIRS:
        names = [name for block in load_hcl(directory / filename).get(kind, []) for name in block]
        assert names == sorted(names), f"{directory / filename}: {kind}s out of order"


def test_versions_are_pinned(stack: Stack) -> None:
    for where, module in [("root", stack.root), *stack.modules.items()]:
        (block,) = module.terraform
        assert re.fullmatch(r"~> 1\.\d+(\.\d+)?", block["required_version"]), (
            f"{where}: required_version must be a pessimistic pin such as ~> 1.11")
        # Write-only arguments (value_wo) exist from Terraform 1.11 on.
        assert tuple(int(x) for x in block["required_version"][3:].split(".")[:2]) >= (1, 11)
        (providers,) = block["required_providers"]
        assert "aws" in providers, f"{where}: the aws provider must be declared"
        for name, spec in providers.items():
            assert spec["source"] == f"hashicorp/{name}"
            assert spec["version"].startswith("~> "), f"{where}: {name} must be pinned with ~>"
        assert providers["aws"]["version"].startswith("~> 6."), f"{where}: aws provider 6.x"
    root_providers = stack.root.terraform[0]["required_providers"][0]
    assert set(root_providers) == {"aws", "random"}


def test_root_passes_every_module_input_it_must(stack: Stack) -> None:
    for name, call in stack.root.calls.items():
        module = stack.modules[name]
        arguments = set(call) - {"source"}
        declared = set(module.variables)
        assert arguments <= declared, f"module.{name} gets undeclared inputs: {sorted(arguments - declared)}"
        required = {var for var, spec in module.variables.items() if "default" not in spec}
        assert required <= arguments, f"module.{name} misses required inputs: {sorted(required - arguments)}"


def test_variable_references_are_declared(stack: Stack) -> None:
    for where, module in [("root", stack.root), *stack.modules.items()]:
        text = "\n".join(path.read_text() for path in module.path.glob("*.tf"))
        used = set(re.findall(r"\bvar\.([A-Za-z_]\w*)", text))
        assert used <= set(module.variables), f"{where}: undeclared {sorted(used - set(module.variables))}"
        unused = set(module.variables) - used
        assert not unused, f"{where}: declared but never used: {sorted(unused)}"


def test_banners_between_sections() -> None:
    for path in [INFRA / "main.tf", INFRA / "modules/relay/main.tf", INFRA / "modules/webhook/main.tf"]:
        assert path.read_text().count("#" * 80) >= 4, f"{path}: sections need #### banners"


def test_terraform_fmt_is_clean() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed here: run terraform fmt -check -recursive infra where it is")
    result = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff", str(INFRA)],
                            capture_output=True, text=True, env={"TF_CLI_CONFIG_FILE": "/dev/null",
                                                                  "PATH": "/usr/bin:/bin"},
                            timeout=60)
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"
