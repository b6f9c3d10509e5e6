"""The native stack's development secrets, made in its run directory (mode 0600) and never in the
repository: the collector's ingest token and Alertmanager's receiver secrets."""

from __future__ import annotations

import secrets
from pathlib import Path

from stack import process
from stack.alertmanager_config import NOWHERE


def ensure_token(path: Path, prefix: str) -> str:
    """The token in path, made once (a random one) when the file is missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{prefix}{secrets.token_urlsafe(24)}\n")
        path.chmod(0o600)
    return path.read_text().split()[0]


def write_alertmanager_secrets(secrets_dir: Path, alert_sink: str | None) -> None:
    """The files alertmanager.yml reads its secrets from. Development values are written when a
    file is missing: with an alert sink the notifications reach it, otherwise they go nowhere
    (Alertmanager's API still shows every alert)."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    sink = alert_sink or NOWHERE
    values = {
        "pagerduty-routing-key": "dev-routing-key-not-a-secret",
        "slack-webhook-url": f"{sink}/slack",
        "smtp-password": "dev-smtp-password-not-a-secret",
        "heartbeat-url": f"{sink}/heartbeat",
    }
    for name, value in values.items():
        path = secrets_dir / name
        # Kept when already there (a developer may put real ones in), except the URLs that must
        # point at this run's sink.
        if path.exists() and not (alert_sink and name.endswith("-url")):
            continue
        process.write_file(path, value + "\n", 0o600)
