"""The one reader of each plain-text source the shapes share: versions.env and
victorialogs/victoria-logs.flags. Native, Kubernetes, the generators, tests and benchmarks all read
them here, so no two shapes can see a file differently.

versions.env is read by three programs: docker compose (as an env file), stack/build.sh (bash
`set -a; . versions.env`) and this module. parse_env() accepts only what all three read alike -
`KEY=value`, a value optionally in single or double quotes, an unquoted value optionally followed
by whitespace and a `#` comment, blank lines, `#` comment lines - and rejects every other line
with its number, rather than guess: spaces around `=` are a command to bash, `$` and backticks
expand in bash and compose but not here, `export` is bash only. tests/stack/test_sources.py holds
bash's reading of the real file equal to this one.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_ASSIGNMENT = re.compile(r"""(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?:
      '(?P<single>[^']*)'
    | "(?P<double>[^"$`\\]*)"
    | (?P<plain>[^\s'"$`\\#][^\s'"$`\\]*|)
    )(?:\s+\#.*)?\s*""", re.X)


def parse_env(text: str, where: str = "env file") -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ASSIGNMENT.fullmatch(stripped)
        if not match:
            raise ValueError(f"{where}:{number}: not a plain KEY=value line that bash, compose and "
                             f"Python read alike (no spaces around '=', no $ or backticks): {line!r}")
        value = next((v for v in match.group("single", "double", "plain") if v is not None), "")
        values[match.group("key")] = value
    return values


def read_versions() -> dict[str, str]:
    return parse_env((REPO_ROOT / "versions.env").read_text(), "versions.env")


def parse_flags(text: str, where: str = "flags file") -> list[str]:
    """One flag per line; a line starting with `#`, or the rest of a line after whitespace and
    `#`, is a comment (as in a shell, so a `#` inside a value such as -x=a#b stays)."""
    flags = []
    for number, line in enumerate(text.splitlines(), 1):
        flag = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
        if not flag:
            continue
        if not flag.startswith("-") or re.search(r"\s", flag):
            raise ValueError(f"{where}:{number}: not one flag (-name=value) per line: {line!r}")
        flags.append(flag)
    return flags


def victorialogs_flags() -> list[str]:
    """The portable flags, which native, compose and Kubernetes pass after their own."""
    return parse_flags((REPO_ROOT / "victorialogs" / "victoria-logs.flags").read_text(), "victoria-logs.flags")
