"""``make relay-bundle``: the relay's deployable, ``build/relay-bundle.zip``, for infra/.

The zip holds everything a relay instance needs to run ``gunicorn -c relay/gunicorn.conf.py
relay.wsgi:app`` from its root, with no access to PyPI at boot:

- ``relay/``: the relay's code (no caches);
- ``requirements/relay.txt``: the pinned runtime, transitive dependencies included;
- ``wheelhouse/``: one wheel per pinned requirement, for the instances' CPython and architecture
  (Amazon Linux 2023, ``python3.11``), fetched with ``pip download --only-binary=:all:``; the instance
  installs with ``pip install --no-index --find-links wheelhouse -r requirements/relay.txt``;
- ``BUNDLE.json``: what the bundle was built for.

The zip is deterministic (sorted entries, fixed timestamps and modes): the same inputs give the same
bytes, hence the same SHA-256, which infra/ uses as the S3 key, so only a real change rolls the fleet.
Beside the zip, ``relay-bundle.json`` (the manifest) records that hash, the architecture and whether a
wheelhouse is included; Terraform refuses a bundle whose manifest does not match (modules/relay).

``--no-wheelhouse`` and ``--wheel-dir`` build without the network (tests; or wheels fetched elsewhere).
Imports only the standard library (and runs pip as a subprocess: scripts/pip_run.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(ROOT))

from scripts import pip_run, reproducible_zip  # noqa: E402

REQUIREMENTS = "requirements/relay.txt"
PYTHON_VERSION = "3.11"  # Amazon Linux 2023's python3.11 package (infra/modules/relay)
# Amazon Linux 2023 has glibc 2.34: any manylinux wheel up to manylinux_2_34 runs there. pip matches
# --platform tags literally (it widens only manylinux2014/2010), so every level is listed.
GLIBC_MINOR_MAX = 34
ARCHITECTURES = {"x86_64": "x86_64", "aarch64": "arm64"}  # wheel tag -> EC2 name


class BundleError(Exception):
    """The bundle cannot be built as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Requirement:
    """One ``name==version`` pin of the requirements file."""

    name: str
    version: str

    @property
    def key(self) -> str:
        """Normalized project name, as in wheel file names."""
        return normalize(self.name)


def normalize(name: str) -> str:
    """PEP 503 name normalization, with the underscores wheel file names use."""
    return re.sub(r"[-_.]+", "_", name).lower()


def parse_requirements(text: str) -> list[Requirement]:
    """Every ``name==version`` line; anything else that is not a comment is an error."""
    try:
        return [Requirement(name, version) for name, version in reproducible_zip.read_pins(text, REQUIREMENTS)]
    except reproducible_zip.PinError as exc:
        raise BundleError(str(exc)) from None


def platforms(arch: str) -> list[str]:
    """Pip --platform tags for a manylinux wheel that runs on Amazon Linux 2023 on ``arch``."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR_MAX, 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def wheel_matches(path: Path, requirement: Requirement) -> bool:
    """Whether ``path`` is a wheel of exactly this requirement."""
    parts = path.name[: -len(".whl")].split("-")
    if len(parts) < 5:
        return False
    return normalize(parts[0]) == requirement.key and parts[1] == requirement.version


def check_wheelhouse(wheels: list[Path], pins: list[Requirement], arch: str) -> None:
    """Fail unless every pin has a wheel that can run on ``arch`` (pure Python or manylinux)."""
    problems = []
    for pin in pins:
        found = [w for w in wheels if wheel_matches(w, pin)]
        if not found:
            problems.append(f"no wheel for {pin.name}=={pin.version}")
            continue
        for wheel in found:
            platform_tag = wheel.name[: -len(".whl")].split("-")[-1]
            if not all(tag == "any" or (tag.startswith("manylinux") and tag.endswith(arch))
                       for tag in platform_tag.split(".")):
                problems.append(f"{wheel.name} does not run on manylinux {arch}")
    if problems:
        raise BundleError("the wheelhouse is incomplete: " + "; ".join(problems))


def download_wheels(requirements: Path, arch: str, dest: Path) -> None:
    """``pip download`` every pinned requirement as a wheel for CPython 3.11 on ``arch``."""
    command = ["download", "--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION,
               "--no-deps", "--dest", str(dest), "-r", str(requirements)]
    for tag in platforms(arch):
        command += ["--platform", tag]
    # --no-deps: the requirements file already pins every transitive dependency; resolving again for
    # another platform could only add unpinned ones.
    try:
        pip_run.run(command, what="could not download the relay's wheels", again="make relay-bundle")
    except pip_run.PipFailed as exc:
        raise BundleError(str(exc)) from None


def bundle_files(root: Path, wheels: Iterable[Path]) -> dict[str, Path]:
    """Archive name -> source file, for the relay code, its requirements and the wheels."""
    files: dict[str, Path] = {}
    for path in sorted((root / "relay").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            files[path.relative_to(root).as_posix()] = path
    if "relay/gunicorn.conf.py" not in files or "relay/wsgi.py" not in files:
        raise BundleError(f"{root / 'relay'} is not the relay package (no gunicorn.conf.py / wsgi.py)")
    files[REQUIREMENTS] = root / REQUIREMENTS
    for wheel in wheels:
        files[f"wheelhouse/{wheel.name}"] = wheel
    return files


def write_zip(output: Path, files: dict[str, Path], metadata: dict[str, object]) -> None:
    """Write a byte-for-byte reproducible zip: sorted names, fixed time, fixed modes."""
    entries = {name: path.read_bytes() for name, path in files.items()}
    entries["BUNDLE.json"] = (json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode()
    # Wheels are zips already: store them as they are.
    reproducible_zip.write_zip(output, entries, stored=lambda name: name.endswith(".whl"))


def build(
    *, root: Path, output: Path, arch: str, wheelhouse: bool, wheel_dir: Path | None
) -> dict[str, object]:
    """Build the bundle and its manifest; return the manifest."""
    if arch not in ARCHITECTURES:
        raise BundleError(f"unknown architecture {arch!r}: use one of {', '.join(ARCHITECTURES)}")
    requirements = root / REQUIREMENTS
    pins = parse_requirements(requirements.read_text())
    metadata: dict[str, object] = {
        "format": 1,
        "python_version": PYTHON_VERSION,
        "architecture": arch,
        "ec2_architecture": ARCHITECTURES[arch],
        "wheelhouse": wheelhouse,
        "start": "gunicorn -c relay/gunicorn.conf.py relay.wsgi:app",
        "install": "pip install --no-index --find-links wheelhouse -r requirements/relay.txt",
    }
    with tempfile.TemporaryDirectory(prefix="relay-wheels-") as scratch:
        wheels: list[Path] = []
        if wheelhouse:
            source = wheel_dir
            if source is None:
                source = Path(scratch)
                download_wheels(requirements, arch, source)
            wanted = {pin.key for pin in pins}
            wheels = sorted(w for w in source.glob("*.whl") if normalize(w.name.split("-")[0]) in wanted)
            check_wheelhouse(wheels, pins, arch)
        files = bundle_files(root, wheels)
        write_zip(output, files, metadata)
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    manifest = {**metadata, "sha256": digest, "files": len(files) + 1}
    manifest_path = output.with_suffix(".json")
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Build the relay bundle (code + wheelhouse) for infra/.")
    parser.add_argument("--output", type=Path, default=ROOT / "build" / "relay-bundle.zip",
                        help="zip to write; the manifest goes beside it as .json (default: %(default)s)")
    parser.add_argument("--arch", default="x86_64", choices=sorted(ARCHITECTURES),
                        help="CPU of the relay instances: x86_64 (t3, c7i...) or aarch64 (t4g, c7g...)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--no-wheelhouse", action="store_true",
                        help="leave the wheels out (tests only: Terraform refuses such a bundle)")
    source.add_argument("--wheel-dir", type=Path,
                        help="take the wheels from this directory instead of downloading them")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        manifest = build(root=args.root, output=args.output, arch=args.arch,
                         wheelhouse=not args.no_wheelhouse, wheel_dir=args.wheel_dir)
    except BundleError as exc:
        print(f"make relay-bundle: {exc}", file=sys.stderr)
        return 1
    print(f"{args.output} sha256={manifest['sha256']} arch={manifest['architecture']} "
          f"files={manifest['files']} wheelhouse={'yes' if manifest['wheelhouse'] else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
