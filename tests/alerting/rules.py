"""Where the alerting configuration lives, and the rules read from it."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "prometheus" / "rules"
RULE_TESTS_DIR = REPO / "prometheus" / "tests"
RUNBOOKS_DIR = REPO / "docs" / "runbooks"
ALERTMANAGER_CONFIG = REPO / "alertmanager" / "alertmanager.yml"


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def alerting_rules() -> list[dict]:
    """Every alerting rule of every rule file, with the file it came from."""
    found = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    found.append({**rule, "file": path.name, "group": group["name"]})
    return found


def alert_names() -> list[str]:
    return sorted({rule["alert"] for rule in alerting_rules()})
