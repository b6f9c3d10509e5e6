"""The simulator drives real traffic (good and bad) and its traces join the service's."""

import os
import subprocess
import sys
from pathlib import Path

from app.auth.models import Role
from harness.app_process import AppProcess
from harness.databases import migrated_with_keys
from harness.otlp_sink import OtlpSink

ROOT = Path(__file__).resolve().parents[1]


def test_simulator_traffic_spans_two_services(tmp_path):
    url = f"sqlite:///{tmp_path / 'hitl.db'}"
    keys = migrated_with_keys(url, {"sim-pipeline": Role.pipeline, "sim-reviewer": Role.reviewer})
    pipeline, reviewer = keys["sim-pipeline"], keys["sim-reviewer"]
    sink = OtlpSink()
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    app = AppProcess(env={"DATABASE_URL": url, "OTEL_SERVICE_NAME": "hitl-review", **otel}, log_path=tmp_path / "app.log")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(otel, SIM_PIPELINE_KEY=pipeline, SIM_REVIEWER_KEY=reviewer)
        sim = subprocess.run(
            [sys.executable, "-m", "simulator", "--url", app.url, "--rate", "20", "--reviewers", "2",
             "--think-time", "0.05", "--bad-share", "0.3", "--duration", "20", "--max-requests", "120"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
        assert sim.returncode == 0, sim.stderr[-2000:]
        assert "sent" in sim.stderr
    finally:
        app.stop()
        sink.stop()
    spans = sink.spans
    by_id = {s.span_id: s for s in spans}
    statuses = [s.attributes.get("http.response.status_code") for s in spans if s.kind == 2]
    assert not [code for code in statuses if code >= 500]
    assert any(code in (403, 404, 409, 422) for code in statuses), statuses
    assert 201 in statuses
    joined = [
        s for s in spans
        if s.kind == 2 and s.resource["service.name"] == "hitl-review"
        and by_id.get(s.parent_span_id) is not None
        and by_id[s.parent_span_id].resource["service.name"] == "hitl-simulator"
    ]
    assert joined, "no server span of hitl-review has a hitl-simulator client span as parent"
