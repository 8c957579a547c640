"""scripts/build_relay_bundle.py, offline: contents, determinism, wheelhouse checks, the manifest contract.

No test downloads anything: ``--no-wheelhouse`` and ``--wheel-dir`` (with small stand-in wheels) cover the
bundling logic; ``make relay-bundle`` downloads the real wheels.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import pytest

from scripts.build_relay_bundle import main, parse_requirements, platforms
from tests.infra.conftest import INFRA, ROOT

RELAY_PY = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "relay").glob("*.py"))


def build(tmp_path: Path, name: str, *args: str) -> tuple[Path, dict[str, object]]:
    output = tmp_path / name / "relay-bundle.zip"
    assert main(["--output", str(output), *args]) == 0
    return output, json.loads(output.with_suffix(".json").read_text())


def fake_wheels(directory: Path, arch: str = "x86_64", skip: str | None = None) -> Path:
    """One tiny stand-in wheel per pinned requirement (a real wheel is just a zip with this name)."""
    directory.mkdir(parents=True, exist_ok=True)
    pins = parse_requirements((ROOT / "requirements/relay.txt").read_text())
    for index, pin in enumerate(pins):
        if pin.name == skip:
            continue
        tag = "py3-none-any" if index % 2 else f"cp311-cp311-manylinux_2_28_{arch}"
        with zipfile.ZipFile(directory / f"{pin.key}-{pin.version}-{tag}.whl", "w") as wheel:
            wheel.writestr(f"{pin.key}/__init__.py", f"# {pin.name}\n")
    return directory


def test_bundle_holds_the_relay_and_its_requirements(tmp_path: Path) -> None:
    output, manifest = build(tmp_path, "a", "--no-wheelhouse")
    with zipfile.ZipFile(output) as bundle:
        names = bundle.namelist()
        assert names == sorted(names)
        assert set(RELAY_PY) <= set(names)
        expected = {"relay/gunicorn.conf.py", "relay/wsgi.py", "requirements/relay.txt", "BUNDLE.json"}
        assert expected <= set(names)
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert not [n for n in names if n.startswith("wheelhouse/")]
        assert bundle.read("requirements/relay.txt") == (ROOT / "requirements/relay.txt").read_bytes()
        assert bundle.read("relay/gunicorn.conf.py") == (ROOT / "relay/gunicorn.conf.py").read_bytes()
        for info in bundle.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
        inner = json.loads(bundle.read("BUNDLE.json"))
    assert manifest["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert manifest["wheelhouse"] is False
    assert inner["start"] == manifest["start"] == "gunicorn -c relay/gunicorn.conf.py relay.wsgi:app"
    assert manifest["python_version"] == "3.11"


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    first, one = build(tmp_path, "a", "--no-wheelhouse")
    second, two = build(tmp_path, "b", "--no-wheelhouse")
    assert first.read_bytes() == second.read_bytes()
    assert one == two


def test_wheelhouse_from_a_local_directory(tmp_path: Path) -> None:
    wheels = fake_wheels(tmp_path / "wheels")
    (wheels / "unrelated-1.0-py3-none-any.whl").write_bytes(b"not pinned, left out")
    output, manifest = build(tmp_path, "a", "--wheel-dir", str(wheels))
    pins = parse_requirements((ROOT / "requirements/relay.txt").read_text())
    with zipfile.ZipFile(output) as bundle:
        wheelhouse = [n for n in bundle.namelist() if n.startswith("wheelhouse/")]
        stored = {bundle.getinfo(n).compress_type for n in wheelhouse}
    assert len(wheelhouse) == len(pins)
    assert not any("unrelated" in n for n in wheelhouse)
    assert stored == {zipfile.ZIP_STORED}
    assert manifest["wheelhouse"] is True
    assert (manifest["architecture"], manifest["ec2_architecture"]) == ("x86_64", "x86_64")
    again, _ = build(tmp_path, "b", "--wheel-dir", str(wheels))
    assert again.read_bytes() == output.read_bytes()


def test_a_missing_wheel_stops_the_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheels = fake_wheels(tmp_path / "wheels", skip="gevent")
    assert main(["--output", str(tmp_path / "x.zip"), "--wheel-dir", str(wheels)]) == 1
    assert "no wheel for gevent==" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def test_a_wheel_for_another_cpu_stops_the_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheels = fake_wheels(tmp_path / "wheels", arch="aarch64")
    assert main(["--output", str(tmp_path / "x.zip"), "--wheel-dir", str(wheels)]) == 1
    assert "does not run on manylinux x86_64" in capsys.readouterr().err
    output, manifest = build(tmp_path, "arm", "--arch", "aarch64", "--wheel-dir", str(wheels))
    assert manifest["ec2_architecture"] == "arm64"


def test_unpinned_requirements_are_refused() -> None:
    with pytest.raises(Exception, match="not pinned"):
        parse_requirements("gevent>=26\n")
    assert [p.name for p in parse_requirements("# c\nzope.event==6.2  # why\n\n")] == ["zope.event"]


def test_pip_platforms_cover_amazon_linux_2023() -> None:
    tags = platforms("x86_64")
    # gevent publishes manylinux_2_28 wheels only; pip matches --platform literally.
    assert {"manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64"} <= set(tags)
    assert not any("_2_35_" in tag for tag in tags), "AL2023 has glibc 2.34"


def test_terraform_reads_what_the_manifest_holds(tmp_path: Path) -> None:
    _, manifest = build(tmp_path, "a", "--no-wheelhouse")
    text = "".join(path.read_text() for path in (INFRA / "modules/relay").glob("*.tf"))
    used = set(re.findall(r"local\.bundle_manifest\.(\w+)", text))
    assert used == {"ec2_architecture", "wheelhouse", "sha256"}
    assert used <= set(manifest)
    assert 'jsondecode(file("${trimsuffix(var.bundle_path, ".zip")}.json"))' in text


def test_makefile_builds_the_bundle_where_terraform_looks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(r"^relay-bundle:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert rule, "Makefile has a relay-bundle rule"
    assert "scripts/build_relay_bundle.py" in rule.group(1)
    assert "--output build/relay-bundle.zip" in rule.group(1)
    assert '"../build/relay-bundle.zip"' in (INFRA / "variables.tf").read_text()
