"""Request bodies for tests, valid unless told otherwise."""

import itertools

_seq = itertools.count(1)


def review_body(**overrides) -> dict:
    n = next(_seq)
    body = {
        "apv_code": f"APV-20261125-{n:04d}",
        "priority": 5,
        "cve_id": f"CVE-2026-{10000 + n}",
        "cve_title": "Deserialization of untrusted data in yaml loader",
        "cve_description": "A crafted document executes code on load.",
        "cvss_score": 8.1,
        "severity": "high",
        "cwe_ids": ["CWE-502"],
        "package_name": "pyyaml",
        "package_version": "5.3",
        "package_ecosystem": "pypi",
        "fixed_version": "5.4",
        "affected_files": ["app/loader.py"],
        "confirmation_score": 0.93,
        "static_score": 0.8,
        "dynamic_score": 0.7,
        "false_positive_score": 0.05,
        "patch_strategy": "version_bump",
        "patch_description": "Bump pyyaml to 5.4",
        "patch_diff": "-pyyaml==5.3\n+pyyaml==5.4\n",
        "patch_confidence": 0.9,
        "patch_risk_level": "low",
        "validation_passed": True,
        "validation_confidence": 0.88,
        "validation_warnings": [],
        "pr_number": 100 + n,
        "pr_url": f"https://code.example.test/org/repo/pull/{100 + n}",
        "pr_branch": f"fix/apv-{n}",
        "wargame_verdict": "success",
        "wargame_confidence": 0.8,
        "wargame_evidence": {"exploit": "blocked"},
    }
    body.update(overrides)
    return body


def decision_body(decision: str = "approve", **overrides) -> dict:
    body = {"decision": decision, "justification": "Patch verified against the exploit.", "confidence": 0.9}
    if decision == "modify":
        body["modifications"] = {"pin": "5.4.1"}
    body.update(overrides)
    return body
