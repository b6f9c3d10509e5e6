"""Fixtures of the alerting tests: the pinned promtool, amtool and alertmanager binaries, built by
stack/build.sh at the versions of versions.env (a no-op when cached). Nothing is skipped: a tool
that cannot be built fails the tests that need it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.alerting.rules import REPO

BUILD = ["bash", str(REPO / "stack" / "build.sh")]
TOOLS = ("prometheus", "alertmanager")  # Sloth: test_slo_generation.py


@pytest.fixture(scope="session")
def binaries() -> dict[str, str]:
    """NAME -> path of every binary of the prometheus and alertmanager targets."""
    built = subprocess.run(BUILD + list(TOOLS), cwd=REPO, capture_output=True, text=True)
    assert built.returncode == 0, f"stack/build.sh {' '.join(TOOLS)} failed:\n{built.stderr[-3000:]}"
    listed = subprocess.run(BUILD + ["--paths", *TOOLS], cwd=REPO, capture_output=True, text=True, check=True)
    paths = dict(line.split("=", 1) for line in listed.stdout.splitlines() if "=" in line)
    for name in ("promtool", "amtool", "alertmanager"):
        assert Path(paths.get(name, "")).is_file(), f"{name} missing from `stack/build.sh --paths`: {paths}"
    return paths

