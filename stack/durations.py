"""Prometheus/Go durations (5s, 500ms, 1m30s): the native stack's interval options and the caps
its test mode puts on alert and notification delays."""

from __future__ import annotations

import re


def parse_duration(text: str) -> float:
    """Seconds in a duration such as 5s, 500ms, 1m30s."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 5s, 500ms, 1m)")
    return sum(float(n) * units[u] for n, u in parts)


def format_ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def cap(value: str, cap_seconds: float) -> str:
    """value, or cap_seconds when value is longer."""
    return value if parse_duration(value) <= cap_seconds else format_ms(cap_seconds)
