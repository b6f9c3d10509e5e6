"""promtool on the rule files: every file passes `promtool check rules` (syntax, templates,
lint), and every unit-test file in prometheus/tests passes `promtool test rules`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.alerting.rules import RULE_TESTS_DIR, rule_files, rule_test_files


def test_there_are_rule_files_and_tests():
    names = {p.name for p in rule_files()}
    assert {"recording.yml", "alerts.yml", "slo-availability.yml", "slo-latency.yml", "slo-error-rate.yml"} <= names
    assert rule_test_files()


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_check_rules(binaries, path: Path):
    done = subprocess.run([binaries["promtool"], "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    # Warnings (e.g. a multi-document file of which only the first document is read) count.
    assert "level=WARN" not in done.stderr, done.stderr


@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
def test_promtool_unit_tests(binaries, path: Path):
    done = subprocess.run([binaries["promtool"], "test", "rules", path.name], cwd=RULE_TESTS_DIR,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
def test_unit_tests_fix_the_group_order(path: Path):
    """promtool evaluates the rule groups of one timestamp in group_eval_order and the unlisted
    ones in map order: an alert evaluated before the recording rules it reads sees the previous
    step, which made tests flaky. Every group of the loaded files must be listed."""
    spec = yaml.safe_load(path.read_text())
    groups = []
    for rule_file in spec["rule_files"]:
        groups += [g["name"] for g in yaml.safe_load((RULE_TESTS_DIR / rule_file).read_text())["groups"]]
    assert sorted(spec.get("group_eval_order", [])) == sorted(groups)
