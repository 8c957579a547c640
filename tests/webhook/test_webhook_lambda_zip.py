"""The Lambda zip: lean (no twilio HTTP deps), complete (the handler runs from it alone), deterministic.

The real build (`make webhook-zip`) needs the package index, so by default these tests stage
the zip from the distributions already installed in this interpreter, pinned at the same
versions as requirements/webhook-lambda.txt (checked below), with the same code and the same
zip writer as scripts/build_webhook_zip.py. To test a zip built for real, set
``WEBHOOK_ZIP=build/webhook-lambda.zip``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts import build_webhook_zip as build
from tests.webhook.conftest import function_url_event, new_call_sid, sign, voice_form, webhook_env

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_URL = "https://abc123.lambda-url.eu-west-1.on.aws"
# twilio declares these, but twilio.twiml and twilio.request_validator never import them.
TWILIO_HTTP_DEPS = {"requests", "pyjwt", "aiohttp", "aiohttp-retry"}
# The Lambda runtime the zip is built for (packaging marker environment).
LAMBDA_MARKERS = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
                  "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                  "implementation_name": "cpython", "platform_python_implementation": "CPython",
                  "extra": ""}

# Run by a bare interpreter (-I -S: no site-packages, no PYTHON* variables) with only the
# unzipped directory on sys.path; prints what the handler answered and which HTTP libs got loaded.
PROBE = r"""
import json, sys
directory, event = sys.argv[1], json.load(sys.stdin)
assert not [p for p in sys.path if "site-packages" in p], sys.path
sys.path.insert(0, directory)
from webhook_app.lambda_handler import handler
result = handler(event, None)
import webhook_app, flask, twilio
print(json.dumps({
    "result": result,
    "loaded_from": [webhook_app.__file__, flask.__file__, twilio.__file__],
    "http_libs_loaded": sorted(
        m for m in ("aiohttp", "requests", "jwt", "urllib3", "boto3") if m in sys.modules),
}))
"""


def pinned() -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in build.read_pins()}


def stage_from_installed(target: Path) -> None:
    """What `pip install --no-deps --target` would lay out, copied from this interpreter's site-packages."""
    for name in pinned():
        dist = importlib.metadata.distribution(name)
        for file in dist.files or ():
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # console scripts outside site-packages; caches
            destination = target / Path(*file.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(str(dist.locate_file(file))), destination)
    build.stage_code(target)


@pytest.fixture(scope="module")
def lambda_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip under test: WEBHOOK_ZIP if set, else one staged from the installed distributions."""
    given = os.environ.get("WEBHOOK_ZIP")
    if given:
        return (ROOT / given).resolve()
    work = tmp_path_factory.mktemp("lambda-zip")
    staging = work / "staging"
    stage_from_installed(staging)
    out = work / "webhook-lambda.zip"
    build.write_zip(staging, out)
    return out


def run_probe(directory: Path, event: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(directory)], input=json.dumps(event),
        capture_output=True, text=True, env=env, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


# -- the requirements file ------------------------------------------------------------------


def test_every_lambda_pin_matches_the_runtime_the_suite_tests() -> None:
    dev = {canonicalize_name(n): v for n, v in build.read_pins(ROOT / "requirements" / "webhook.txt")}

    for name, version in pinned().items():
        assert dev.get(name) == version, f"{name}=={version} differs from requirements/webhook.txt"
        assert importlib.metadata.version(name) == version, f"{name} installed at another version"
    assert not TWILIO_HTTP_DEPS & set(pinned())


def test_the_pinned_set_is_closed_but_for_twilios_http_deps() -> None:
    names = set(pinned())
    missing = set()
    for name in names:
        for spec in importlib.metadata.requires(name) or ():
            requirement = Requirement(spec)
            if requirement.marker is not None and not requirement.marker.evaluate(LAMBDA_MARKERS):
                continue
            if canonicalize_name(requirement.name) not in names:
                missing.add((name, canonicalize_name(requirement.name)))

    assert missing == {("twilio", dep) for dep in TWILIO_HTTP_DEPS}


def test_an_unpinned_requirement_is_refused(tmp_path: Path) -> None:
    loose = tmp_path / "loose.txt"
    loose.write_text("# comment\nFlask==3.1.3\ntwilio>=9\n")

    with pytest.raises(SystemExit, match="loose.txt:3: 'twilio>=9' is not pinned"):
        build.read_pins(loose)


# -- the zip's contents, run in isolation ---------------------------------------------------


def test_a_bare_interpreter_really_sees_no_site_packages() -> None:
    completed = subprocess.run([sys.executable, "-I", "-S", "-c", "import flask"],
                               capture_output=True, text=True, timeout=30)

    assert completed.returncode != 0 and "ModuleNotFoundError" in completed.stderr


def test_the_handler_answers_from_the_unzipped_contents_alone(lambda_zip: Path, tmp_path: Path) -> None:
    unzipped = tmp_path / "var-task"
    with zipfile.ZipFile(lambda_zip) as archive:
        archive.extractall(unzipped)
    call_sid = new_call_sid()
    form = voice_form(call_sid)
    event = function_url_event("POST", "/twilio/voice", form=form,
                               signature=sign(FUNCTION_URL + "/twilio/voice", form))
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), **webhook_env(WEBHOOK_PUBLIC_URL=FUNCTION_URL)}

    probe = run_probe(unzipped, event, env)

    result = probe["result"]
    assert result["statusCode"] == 200, result
    assert result["headers"]["content-type"].startswith("text/xml")
    assert "<Connect><Stream" in result["body"] and "streamToken" in result["body"]
    assert all(path.startswith(str(unzipped)) for path in probe["loaded_from"])
    assert probe["http_libs_loaded"] == []


def test_the_zip_holds_no_twilio_http_deps_caches_or_scripts(lambda_zip: Path) -> None:
    with zipfile.ZipFile(lambda_zip) as archive:
        names = archive.namelist()
    top = {name.split("/", 1)[0] for name in names}

    assert "webhook_app" in top and "twilio" in top and "flask" in top
    assert not top & {"aiohttp", "requests", "jwt", "urllib3", "yarl", "multidict", "bin", "gunicorn"}
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "webhook_app/lambda_handler.py" in names


# -- determinism ----------------------------------------------------------------------------


def test_the_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for name, text in {"b/mod.py": "B = 1\n", "a.py": "A = 1\n", "b/__pycache__/mod.cpython-312.pyc": "x",
                       "bin/flask": "#!/bin/sh\n", "c/data.txt": "hello\n"}.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    first, second = tmp_path / "1.zip", tmp_path / "2.zip"

    build.write_zip(source, first)
    for path in source.rglob("*"):
        os.utime(path, (1_900_000_000, 1_900_000_000))
    (source / "a.py").chmod(0o600)
    build.write_zip(source, second)

    assert first.read_bytes() == second.read_bytes()
    assert build.digests(first) == build.digests(second)
    with zipfile.ZipFile(first) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == ["a.py", "b/mod.py", "c/data.txt"]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
