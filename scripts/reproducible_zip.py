"""What the two build scripts share: pinned requirements and reproducible zips.

A zip is the same bytes for the same inputs, so its hash names a build and infra rolls
only on a change.

Standard library only: ``make webhook-zip`` and ``make relay-bundle`` run before any install.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry
ZIP_FILE_MODE = 0o100644  # regular file, rw-r--r--
ZIP_CREATE_SYSTEM = 3  # Unix, so the mode above is honoured whatever OS builds the zip
ZIP_COMPRESS_LEVEL = 9

_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)")


class PinError(ValueError):
    """A requirements line that is not ``name==version``."""


def read_pins(text: str, source: str | Path) -> list[tuple[str, str]]:
    """(name, version) for each line of a requirements file; comments and blank lines skipped."""
    pins: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.fullmatch(line)
        if match is None:
            raise PinError(f"{source}:{number}: {line!r} is not pinned as name==version")
        pins.append((match.group(1), match.group(2)))
    return pins


def write_zip(output: Path, entries: Mapping[str, bytes],
              stored: Callable[[str], bool] = lambda name: False) -> None:
    """Write ``entries`` (archive name -> bytes) in name order, with fixed times and modes.

    ``stored(name)`` leaves an entry uncompressed (e.g. wheels, which are zips already).
    The zip appears at ``output`` only once complete.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.create_system = ZIP_CREATE_SYSTEM
            info.external_attr = ZIP_FILE_MODE << 16
            keep = stored(name)
            info.compress_type = zipfile.ZIP_STORED if keep else zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name], compresslevel=None if keep else ZIP_COMPRESS_LEVEL)
    partial.replace(output)
