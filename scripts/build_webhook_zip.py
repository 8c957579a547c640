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

Needs pip and network access to the package index. Standard library only otherwise;
imports nothing from the project.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements" / "webhook-lambda.txt"
CODE_DIR = ROOT / "webhook_app"
DEFAULT_OUT = ROOT / "build" / "webhook-lambda.zip"
HANDLER = "webhook_app.lambda_handler.handler"

LAMBDA_PYTHON_VERSION = "3.12"
# Lambda architecture -> the manylinux platform tag pip installs wheels for.
LAMBDA_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}

ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry
ZIP_FILE_MODE = 0o100644  # regular file, rw-r--r--
ZIP_CREATE_SYSTEM = 3  # Unix, so the mode above is honoured whatever OS builds the zip
ZIP_COMPRESS_LEVEL = 9

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")


def read_pins(path: Path = REQUIREMENTS) -> list[tuple[str, str]]:
    """Return (name, version) for each line of a requirements file; refuse anything not ``name==version``."""
    pins: list[tuple[str, str]] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if match is None:
            raise SystemExit(f"{path}:{number}: {line!r} is not pinned as name==version")
        pins.append((match.group(1), match.group(2)))
    return pins


def stage_code(target: Path, code_dir: Path = CODE_DIR) -> None:
    """Copy the webhook's Python sources (no caches) to ``target/webhook_app``."""
    destination = target / code_dir.name
    destination.mkdir(parents=True, exist_ok=True)
    for source in sorted(code_dir.glob("*.py")):
        shutil.copyfile(source, destination / source.name)


def pip_install(target: Path, requirements: Path = REQUIREMENTS, arch: str = "x86_64") -> None:
    """Install the pinned runtime into ``target`` for the Lambda platform of ``arch``."""
    read_pins(requirements)  # fail early, with the line, on an unpinned requirement
    command = [
        sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
        "--no-deps", "--no-compile", "--target", str(target),
        "--platform", LAMBDA_PLATFORMS[arch], "--implementation", "cp",
        "--python-version", LAMBDA_PYTHON_VERSION, "--only-binary=:all:",
        "--requirement", str(requirements),
    ]
    subprocess.run(command, check=True)


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
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    count = 0
    with zipfile.ZipFile(partial, "w") as archive:
        for name, path in zip_entries(source):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = ZIP_CREATE_SYSTEM
            info.external_attr = ZIP_FILE_MODE << 16
            archive.writestr(info, path.read_bytes(), compresslevel=ZIP_COMPRESS_LEVEL)
            count += 1
    partial.replace(out)
    return count


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
    count = build(args.out, args.requirements, args.arch)
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
