"""The service's metric instruments (app/telemetry/metrics.py) and contract.yaml name the same
metrics with the same unit and kind, in both directions, so neither can drift from the other.
(Attributes are set where the instruments are used: tests/telemetry/test_contract.py compares
them with the contract on what a running service exports.)"""

import importlib.util
from pathlib import Path

import pytest
import yaml
from opentelemetry import metrics

ROOT = Path(__file__).parents[2]
CONTRACT = yaml.safe_load((ROOT / "app/telemetry/contract.yaml").read_text())
KIND_OF = {
    "create_counter": "counter",
    "create_observable_counter": "counter",
    "create_up_down_counter": "up_down_counter",
    "create_observable_up_down_counter": "up_down_counter",
    "create_histogram": "histogram",
    "create_observable_gauge": "gauge",
    "create_gauge": "gauge",
}


class RecordingMeter:
    """Records each instrument the module creates: name -> (kind, unit)."""

    def __init__(self):
        self.created: dict[str, tuple[str, str]] = {}

    def __getattr__(self, method):
        if method not in KIND_OF:
            raise AttributeError(method)

        def create(name, *args, unit="", **kwargs):
            assert name not in self.created, f"{name} created twice"
            self.created[name] = (KIND_OF[method], unit)
            return metrics.NoOpCounter(name)

        return create


@pytest.fixture
def created(monkeypatch) -> dict[str, tuple[str, str]]:
    """Imports a fresh copy of app/telemetry/metrics.py against a recording meter."""
    meter = RecordingMeter()
    monkeypatch.setattr(metrics, "get_meter", lambda *args, **kwargs: meter)
    spec = importlib.util.spec_from_file_location("metrics_under_test", ROOT / "app/telemetry/metrics.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return meter.created


def test_every_instrument_is_in_the_contract_and_back(created):
    own = {m["name"]: (m["instrument"], m["unit"]) for m in CONTRACT["metrics"] if m.get("provided_by") != "instrumentation"}
    assert created == own
