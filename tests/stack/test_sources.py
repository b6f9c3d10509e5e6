"""One reader per plain-text source (stack/sources.py): versions.env as bash, compose and Python
read it alike, and the VictoriaLogs flags file alike for the native stack and Kubernetes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stack import kubernetes, services, sources

REPO_ROOT = Path(__file__).resolve().parents[2]

EDGE_CASES = """\
# a comment line, then a blank one

PLAIN=1.2.3
  INDENTED=4
INLINE=5.6   # a comment after the value
HASH_INSIDE=a#b
SINGLE='7 8'
DOUBLE="9 # not a comment"
EMPTY=
TRAILING_SPACE=10   \n"""

EDGE_VALUES = {"PLAIN": "1.2.3", "INDENTED": "4", "INLINE": "5.6", "HASH_INSIDE": "a#b", "SINGLE": "7 8",
               "DOUBLE": "9 # not a comment", "EMPTY": "", "TRAILING_SPACE": "10"}


def bash_reading(path: Path) -> dict[str, str]:
    """What stack/build.sh sees: `set -a; . versions.env` in a clean environment, minus what bash
    sets by itself."""
    script = 'before=$(compgen -e); set -a; . "$1"; set +a; for v in $(compgen -e); do ' \
             'grep -qxF "$v" <<<"$before" || printf "%s=%s\\0" "$v" "${!v}"; done'
    done = subprocess.run(["env", "-i", "bash", "--norc", "--noprofile", "-c", script, "bash", str(path)],
                          capture_output=True, text=True, check=True)
    return dict(item.split("=", 1) for item in done.stdout.split("\0") if item)


def test_env_edge_cases():
    assert sources.parse_env(EDGE_CASES) == EDGE_VALUES


def test_bash_reads_the_edge_cases_alike(tmp_path):
    path = tmp_path / "edge.env"
    path.write_text(EDGE_CASES)
    assert bash_reading(path) == EDGE_VALUES


def test_bash_reads_versions_env_as_python_does():
    assert bash_reading(REPO_ROOT / "versions.env") == sources.read_versions()


@pytest.mark.parametrize("line", ["KEY = 1", "KEY=$HOME", "KEY=`id`", "export KEY=1", "KEY=a b", "KEY", 'KEY="a\\"b"',
                                  "KEY=#x", "1KEY=1"])
def test_lines_bash_compose_and_python_would_read_differently_are_refused(line):
    with pytest.raises(ValueError, match=r"versions.env:2: .*" + "KEY"):
        sources.parse_env(f"# first\n{line}\n", "versions.env")


FLAGS = """\
# comment line
-retentionPeriod=7d   # inline comment

  -futureRetention=2d
-search.x=a#b
"""


def test_flags_edge_cases():
    assert sources.parse_flags(FLAGS) == ["-retentionPeriod=7d", "-futureRetention=2d", "-search.x=a#b"]


@pytest.mark.parametrize("line", ["retentionPeriod=7d", "-a=1 -b=2"])
def test_a_line_that_is_not_one_flag_is_refused(line):
    with pytest.raises(ValueError, match="flags:1: "):
        sources.parse_flags(line, "flags")


def test_native_and_kubernetes_pass_victorialogs_the_same_flags(tmp_path, monkeypatch):
    (tmp_path / "victorialogs").mkdir()
    (tmp_path / "victorialogs" / "victoria-logs.flags").write_text(FLAGS)
    for module in (services, kubernetes, sources):
        monkeypatch.setattr(module, "REPO_ROOT", tmp_path)
    expected = ["-retentionPeriod=7d", "-futureRetention=2d", "-search.x=a#b"]
    assert services.victorialogs_flags() == expected
    assert kubernetes.victorialogs_flags() == expected
