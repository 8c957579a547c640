#!/usr/bin/python3
"""ExecStartPre of liveline-relay.service: fetch the relay's secrets from SSM into a root-only env file.

Usage: fetch-secrets REGION OUT_FILE [--value-file NAME=PATH]... PARAMETER_NAME...

Runs as root ("+" in the unit) before every start. It calls ``aws ssm get-parameters
--with-decryption`` with the instance role, and writes ``NAME="value"`` lines (NAME = the parameter's
last path segment, e.g. /liveline/OPENAI_API_KEY -> OPENAI_API_KEY) to OUT_FILE on tmpfs (/run), mode
0600, directory 0700. systemd reads that file as EnvironmentFile= when it starts gunicorn. Each
``--value-file NAME=PATH`` also writes that one value, alone, to PATH (0600, same directory rules):
the CloudWatch agent reads DIAGNOSTIC_TOKEN that way to scrape /metrics. A missing parameter or a
value systemd could not carry literally stops the start with a message naming it; values are never
printed.

Runs on the system python3 of Amazon Linux 2023 (3.9): standard library only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

NAME = re.compile(r"[A-Z][A-Z0-9_]*")
# Inside double quotes systemd takes these characters literally. Quotes, backslashes, '$', '`' and
# whitespace could be interpreted, so values holding them are refused rather than escaped.
SAFE_VALUE = re.compile(r"[A-Za-z0-9_.~+/=:@,%-]+")


def fetch(region: str, names: list[str]) -> dict[str, str]:
    """Return {ENV_NAME: value} for every parameter, or exit naming what is wrong."""
    result = subprocess.run(
        ["aws", "ssm", "get-parameters", "--region", region, "--with-decryption",
         "--output", "json", "--names", *names],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
    )
    if result.returncode != 0:
        sys.exit("fetch-secrets: aws ssm get-parameters failed (exit %d): %s"
                 % (result.returncode, result.stderr.decode(errors="replace").strip()))
    document = json.loads(result.stdout)
    missing = document.get("InvalidParameters") or []
    if missing:
        sys.exit("fetch-secrets: these SSM parameters do not exist: %s" % ", ".join(missing))
    values: dict[str, str] = {}
    for parameter in document.get("Parameters", []):
        env_name = parameter["Name"].rsplit("/", 1)[-1]
        if not NAME.fullmatch(env_name):
            sys.exit("fetch-secrets: %s does not end in an environment variable name" % parameter["Name"])
        if not SAFE_VALUE.fullmatch(parameter["Value"]):
            sys.exit("fetch-secrets: the value of %s is empty or has characters an environment file "
                     "cannot carry literally (quotes, backslashes, $, `, whitespace)" % parameter["Name"])
        values[env_name] = parameter["Value"]
    absent = sorted(set(name.rsplit("/", 1)[-1] for name in names) - set(values))
    if absent:
        sys.exit("fetch-secrets: SSM returned no value for %s" % ", ".join(absent))
    return values


def write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by root only."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".secrets.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main(argv: list[str]) -> int:
    """Entry point."""
    value_files: dict[str, str] = {}
    rest: list[str] = []
    arguments = iter(argv)
    for argument in arguments:
        if argument == "--value-file":
            name, _, target = next(arguments, "").partition("=")
            if not NAME.fullmatch(name) or not target.startswith("/"):
                sys.exit("fetch-secrets: --value-file takes NAME=/absolute/path")
            value_files[name] = target
        else:
            rest.append(argument)
    if len(rest) < 3:
        sys.exit("usage: fetch-secrets REGION OUT_FILE [--value-file NAME=PATH]... PARAMETER_NAME...")
    region, path, names = rest[0], rest[1], rest[2:]
    values = fetch(region, names)
    unknown = sorted(set(value_files) - set(values))
    if unknown:
        sys.exit("fetch-secrets: --value-file names no fetched parameter: %s" % ", ".join(unknown))
    write(path, "".join('%s="%s"\n' % (name, values[name]) for name in sorted(values)))
    for name, target in sorted(value_files.items()):
        write(target, values[name])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
