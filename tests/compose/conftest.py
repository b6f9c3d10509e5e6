"""compose.yaml, loaded by the real Compose loader without Docker.

`composecheck` (tools/composecheck, built by `bash stack/build.sh composecheck` from
compose-spec/compose-go, the library docker compose itself uses) interpolates, applies the
`include`, validates against the Compose specification, checks consistency and prints the
normalized model as JSON. The tests read that model, never the YAML text alone, except where the
text is the point (the `${VAR:?}` spellings).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "compose.yaml"
# The two shapes a user runs: the single one, and the HA one (compose.ha.yaml: the single one's
# services with compose.ha.stack.yaml on top). Every test of the loaded model runs on both.
SHAPES = {"single": COMPOSE_FILE, "ha": REPO_ROOT / "compose.ha.yaml"}
ENV_EXAMPLE = REPO_ROOT / ".env.example"
VERSIONS_ENV = REPO_ROOT / "versions.env"

# ${VAR:?message} (compose's "required" form), as written in the compose files.
REQUIRED_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?([^}]*)\}")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (comments and blank lines skipped); values taken literally."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not a KEY=value line: {line!r}"
            values[key.strip()] = value.strip()
    return values


def compose_texts() -> dict[str, str]:
    """compose.yaml, compose.ha.yaml and every file they include, as text."""
    import yaml

    texts = {}
    for entry_file in SHAPES.values():
        texts[entry_file.name] = entry_file.read_text()
        for entry in yaml.safe_load(texts[entry_file.name]).get("include", []):
            path = entry if isinstance(entry, str) else entry["path"]
            for p in [path] if isinstance(path, str) else path:
                texts[p] = (REPO_ROOT / p).read_text()
    return texts


def required_variables() -> dict[str, str]:
    """Every variable compose requires with ${VAR:?message} -> its message (the first seen)."""
    found: dict[str, str] = {}
    for text in compose_texts().values():
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for name, message in REQUIRED_VAR.findall(code):
            found.setdefault(name, message)
    return found


def secret_variables() -> set[str]:
    """Required variables that are secrets: those not pinned by versions.env."""
    return set(required_variables()) - set(read_env_file(VERSIONS_ENV))


@dataclass
class Loaded:
    returncode: int
    stdout: str
    stderr: str

    @property
    def model(self) -> dict:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)


@pytest.fixture(scope="session")
def composecheck() -> str:
    """Path of the loader binary; built (or found in the cache) by stack/build.sh."""
    from harness.compose_stack import tool_path

    return tool_path("composecheck", "composecheck")


@pytest.fixture(scope="session")
def load(composecheck):
    """load(env_file, compose_file=compose.yaml) -> Loaded. Only the given env file is read
    (plus versions.env, through compose.yaml's include): not the shell, not the repo's .env."""

    def _load(env_file: Path | None, compose_file: Path = COMPOSE_FILE) -> Loaded:
        argv = [composecheck, "-f", str(compose_file)]
        if env_file is not None:
            argv += ["-env-file", str(env_file)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")
        return Loaded(done.returncode, done.stdout, done.stderr)

    return _load


def filled_env(path: Path, secrets: set[str], *, leave_out: str | None = None) -> dict[str, str]:
    """.env.example with every secret filled in (as a user does after `cp .env.example .env`),
    written to `path`. Each secret gets a distinct sentinel value, so a test can see where it
    ends up. `leave_out`: one secret left empty, as the user forgot it."""
    values = read_env_file(ENV_EXAMPLE)
    for name in secrets:
        values[name] = "" if name == leave_out else f"sentinel{name.lower().replace('_', '')}0123456789abcdef"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return values


@pytest.fixture(scope="session")
def env_file(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A filled-in .env (path, values)."""
    path = tmp_path_factory.mktemp("env") / ".env"
    return path, filled_env(path, secret_variables())


@pytest.fixture(scope="session", params=sorted(SHAPES))
def shape(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def model(load, env_file, shape) -> dict:
    return load(env_file[0], SHAPES[shape]).model


@pytest.fixture(scope="session")
def services(model) -> dict[str, dict]:
    return model["services"]


@pytest.fixture(scope="session")
def versions() -> dict[str, str]:
    return read_env_file(VERSIONS_ENV)
