"""A missing prerequisite (a test database, a binary) fails the run under CI and in the README's
test command (scripts/test.sh exports CI=true), and only skips in a bare pytest run."""

from pathlib import Path

import pytest

from tests.conftest import missing_prerequisite


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
def test_under_ci_a_missing_prerequisite_fails(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="TEST_POSTGRES_URL"):
        missing_prerequisite("TEST_POSTGRES_URL is not set")


@pytest.mark.parametrize("value", [None, "", "false", "0", "no"])
def test_outside_ci_a_missing_prerequisite_skips(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="TEST_POSTGRES_URL"):
        missing_prerequisite("TEST_POSTGRES_URL is not set")


def test_the_readme_test_command_runs_as_ci():
    script = (Path(__file__).parents[1] / "scripts/test.sh").read_text()
    assert 'export CI="${CI:-true}"' in script
