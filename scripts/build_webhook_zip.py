"""``make webhook-zip``: build ``build/webhook-lambda.zip`` for AWS Lambda (python3.12, x86_64 or arm64).

The zip holds ``webhook_app/`` and the pinned runtime from ``requirements/webhook-lambda.txt``,
installed for the Lambda platform whatever machine builds it::

    pip install --no-deps --target DIR --platform manylinux2014_x86_64 --implementation cp
        --python-version 3.12 --only-binary=:all: -r requirements/webhook-lambda.txt

``--arch arm64`` (``make webhook-zip WEBHOOK_ARCH=arm64``) builds for Graviton functions;
it must match the function's architecture (infra/: ``webhook_architecture``). Only
MarkupSafe ships compiled code, and it falls back to pure Python if the wheel mismatches.

``--no-deps``: the requirements file lists every distribution the handler imports, and
deliberately not twilio's HTTP dependencies (requests, aiohttp, ...), which the webhook
never imports. The Lambda handler is ``webhook_app.lambda_handler.handler``.

The zip is deterministic, so the same inputs give the same bytes (Terraform keys the
deploy on ``filebase64sha256``): entries sorted, timestamps fixed at 1980-01-01, every
file mode 0644 (Lambda runs the code as another user: it must be world-readable), no
``__pycache__``, no console scripts (``bin/``). The printed ``base64 sha256`` is what
Terraform's ``source_code_hash`` compares.

Needs pip and network access to the package index (scripts/pip_run.py says plainly when there
is none). Standard library only otherwise; from the project it imports only
scripts/reproducible_zip.py and scripts/pip_run.py.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(ROOT))

from scripts import pip_run, reproducible_zip  # noqa: E402

REQUIREMENTS = ROOT / "requirements" / "webhook-lambda.txt"
CODE_DIR = ROOT / "webhook_app"
DEFAULT_OUT = ROOT / "build" / "webhook-lambda.zip"
HANDLER = "webhook_app.lambda_handler.handler"

LAMBDA_PYTHON_VERSION = "3.12"
# Lambda architecture -> the manylinux platform tag pip installs wheels for.
LAMBDA_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}

def read_pins(path: Path = REQUIREMENTS) -> list[tuple[str, str]]:
    """Return (name, version) for each line of a requirements file; refuse anything not ``name==version``."""
    try:
        return reproducible_zip.read_pins(path.read_text(), path)
    except reproducible_zip.PinError as exc:
        raise SystemExit(str(exc)) from None


def stage_code(target: Path, code_dir: Path = CODE_DIR) -> None:
    """Copy the webhook's Python sources (no caches) to ``target/webhook_app``."""
    destination = target / code_dir.name
    destination.mkdir(parents=True, exist_ok=True)
    for source in sorted(code_dir.glob("*.py")):
        shutil.copyfile(source, destination / source.name)


def pip_install(target: Path, requirements: Path = REQUIREMENTS, arch: str = "x86_64") -> None:
    """Install the pinned runtime into ``target`` for the Lambda platform of ``arch`` (PipFailed if pip fails)."""
    read_pins(requirements)  # fail early, with the line, on an unpinned requirement
    pip_run.run([
        "install", "--no-deps", "--no-compile", "--target", str(target),
        "--platform", LAMBDA_PLATFORMS[arch], "--implementation", "cp",
        "--python-version", LAMBDA_PYTHON_VERSION, "--only-binary=:all:",
        "--requirement", str(requirements),
    ], what="could not build the webhook's zip", again="make webhook-zip")


def zip_entries(source: Path) -> Iterator[tuple[str, Path]]:
    """Yield (archive name, file) for everything under ``source`` that ships, in sorted order."""
    found: list[tuple[str, Path]] = []
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if path.is_dir() or path.suffix == ".pyc" or "__pycache__" in relative.parts:
            continue
        if relative.parts[0] == "bin":  # console scripts pip --target writes (flask): unused on Lambda
            continue
        found.append((relative.as_posix(), path))
    yield from sorted(found)


def write_zip(source: Path, out: Path) -> int:
    """Write ``source`` to ``out`` deterministically; return the number of files."""
    entries = {name: path.read_bytes() for name, path in zip_entries(source)}
    reproducible_zip.write_zip(out, entries)
    return len(entries)


def digests(path: Path) -> tuple[str, str]:
    """Return (hex sha256, base64 sha256) of a file; the latter is Terraform's filebase64sha256."""
    digest = hashlib.sha256(path.read_bytes()).digest()
    return digest.hex(), base64.b64encode(digest).decode("ascii")


def build(out: Path = DEFAULT_OUT, requirements: Path = REQUIREMENTS, arch: str = "x86_64") -> int:
    """Stage the code and the pinned runtime in a fresh directory and zip them into ``out``."""
    with tempfile.TemporaryDirectory(prefix="webhook-lambda-") as staging:
        target = Path(staging)
        pip_install(target, requirements, arch)
        stage_code(target)
        return write_zip(target, out)


def main(argv: list[str] | None = None) -> int:
    """Command line: build the zip and print what Terraform needs to know about it."""
    parser = argparse.ArgumentParser(description="Build the webhook's AWS Lambda zip.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the zip")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS,
                        help="pinned runtime, installed with --no-deps")
    parser.add_argument("--arch", choices=sorted(LAMBDA_PLATFORMS), default="x86_64",
                        help="the function's Lambda architecture")
    args = parser.parse_args(argv)
    try:
        count = build(args.out, args.requirements, args.arch)
    except pip_run.PipFailed as exc:
        print(f"make webhook-zip: {exc}", file=sys.stderr)
        return 1
    hex_digest, b64_digest = digests(args.out)
    size = args.out.stat().st_size
    shown = args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out
    print(f"built {shown}: {count} files, {size / 1_000_000:.1f} MB, for python{LAMBDA_PYTHON_VERSION} "
          f"{args.arch} ({LAMBDA_PLATFORMS[args.arch]})")
    print(f"  handler          {HANDLER}")
    print(f"  sha256           {hex_digest}")
    print(f"  base64 sha256    {b64_digest}   (Terraform: filebase64sha256 / source_code_hash)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
