"""alertmanager/alertmanager.yml for the native stack, derived as data (load, change, dump): its
secret files from the run directory, PagerDuty and the webhooks to the run's alert sink, and in
test mode short notification delays."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from stack import yaml_dump
from stack.durations import cap
from stack.ports import HOST

if TYPE_CHECKING:
    from stack.services import Options

ALERTMANAGER_SECRETS_DIR = "/etc/alertmanager/secrets/"
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
# Nothing listens on the discard port: notifications fail fast and are counted as failed.
NOWHERE = f"http://{HOST}:9"
# Tests only (Options.fast_alerts): every route's group waits capped, so a notification leaves
# in seconds.
FAST_GROUP_WAIT = 1.0
FAST_GROUP_INTERVAL = 5.0


def _replace_strings(node, old: str, new: str):
    if isinstance(node, dict):
        return {k: _replace_strings(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_strings(v, old, new) for v in node]
    return node.replace(old, new) if isinstance(node, str) else node


def _cap_routes(route: dict) -> None:
    for key, limit in (("group_wait", FAST_GROUP_WAIT), ("group_interval", FAST_GROUP_INTERVAL)):
        if key in route:
            route[key] = cap(route[key], limit)
    for child in route.get("routes", []):
        _cap_routes(child)


def native_shape(config: dict, opts: Options, secrets_dir: Path) -> dict:
    config = _replace_strings(copy.deepcopy(config), ALERTMANAGER_SECRETS_DIR, f"{secrets_dir}/")
    config = _replace_strings(config, PAGERDUTY_URL, f"{opts.alert_sink or NOWHERE}/pagerduty")
    if opts.alert_smtp:
        config["global"]["smtp_smarthost"] = opts.alert_smtp
        config["global"]["smtp_require_tls"] = False
    if opts.fast_alerts:
        _cap_routes(config["route"])
    return config


def render_alertmanager_config(source: str, opts: Options, secrets_dir: Path) -> str:
    return ("# Rendered by python -m stack from alertmanager/alertmanager.yml for this run.\n"
            + yaml_dump.dump(native_shape(yaml.safe_load(source), opts, secrets_dir)))
