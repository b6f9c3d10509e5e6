"""The native stack for end-to-end tests: real collector, Prometheus, Jaeger, VictoriaLogs,
Alertmanager, PostgreSQL and Redis, started with `python -m stack up` in a run directory of its
own and with every port shifted by stack.services.TEST_PORT_OFFSET, so a developer's stack on the
default ports keeps running. The app runs as a separate process, started here, so the tests
control its settings (fault injection, the code host, export intervals).

Short intervals make the tests quick: span metrics flush every 2 s (Prometheus scrapes the
exporter every 1 s so no exemplar is missed), rules are evaluated every 2 s, and with
--fast-alerts every alert's `for` is capped at 5 s and Alertmanager groups for at most 1-5 s
(promtool's unit tests prove the real thresholds and windows). Alertmanager notifies a local
stand-in for PagerDuty, Slack and the heartbeat service.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from stack.services import HOST, PG_PORT, REDIS_PORT, TEST_PORT_OFFSET, ports
from tests.support.alert_sink import AlertSink, SmtpSink
from tests.support.app_process import AppProcess
from tests.support.code_host import CodeHostServer

REPO = Path(__file__).resolve().parents[2]
FLUSH_INTERVAL = "2s"
RULE_EVAL_INTERVAL = "2s"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@dataclass
class NativeStack:
    run_dir: Path
    env: dict[str, str]
    prometheus_url: str
    jaeger_url: str
    victorialogs_url: str
    alertmanager_url: str
    collector_otlp_grpc: str
    collector_metrics_url: str
    collector_telemetry_url: str
    database_url: str
    redis_url: str

    def stack_command(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "stack", *args], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)

    def log(self, service: str) -> str:
        path = self.run_dir / "logs" / f"{service}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


@pytest.fixture(scope="session")
def alert_sink() -> AlertSink:
    """Where the stack's Alertmanager sends PagerDuty, Slack and heartbeat notifications."""
    sink = AlertSink()
    yield sink
    sink.close()


@pytest.fixture(scope="session")
def smtp_sink() -> SmtpSink:
    """Where the stack's Alertmanager sends its e-mails (info alerts)."""
    sink = SmtpSink()
    yield sink
    sink.close()


@pytest.fixture(scope="session")
def native_stack(alert_sink: AlertSink, smtp_sink: SmtpSink) -> NativeStack:
    base = Path(os.environ.get("HITL_E2E_DIR", Path(tempfile.gettempdir()) / f"hitl-e2e-{os.getuid()}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"HITL_STACK_RUN": str(base / "run"), "HITL_STACK_PORT_OFFSET": str(TEST_PORT_OFFSET)})
    p = ports(TEST_PORT_OFFSET)
    stack = NativeStack(
        run_dir=base / "run",
        env=env,
        prometheus_url=f"http://{HOST}:{p['prometheus']}",
        jaeger_url=f"http://{HOST}:{p['jaeger_query_http']}",
        victorialogs_url=f"http://{HOST}:{p['victorialogs']}",
        alertmanager_url=f"http://{HOST}:{p['alertmanager']}",
        collector_otlp_grpc=f"http://{HOST}:{p['otlp_grpc']}",
        collector_metrics_url=f"http://{HOST}:{p['otelcol_prometheus']}/metrics",
        collector_telemetry_url=f"http://{HOST}:{p['otelcol_telemetry']}/metrics",
        database_url=f"postgresql+psycopg://hitl:hitl@{HOST}:{PG_PORT + TEST_PORT_OFFSET}/hitl",
        redis_url=f"redis://{HOST}:{REDIS_PORT + TEST_PORT_OFFSET}/0",
    )
    # A stack left over from an interrupted run is stopped and its data removed: the counts the
    # tests assert start from zero.
    stack.stack_command("down", "--purge", timeout=120)
    up = stack.stack_command("up", "--no-app", "--flush-interval", FLUSH_INTERVAL, "--scrape-interval", "2s",
                             "--rule-eval-interval", RULE_EVAL_INTERVAL, "--fast-alerts",
                             "--alert-sink", alert_sink.url, "--alert-smtp", smtp_sink.address,
                             "--timeout", "120", timeout=3600)
    if up.returncode != 0:
        stack.stack_command("down")
        pytest.fail(f"python -m stack up failed ({up.returncode}):\n{up.stdout[-3000:]}\n{up.stderr[-6000:]}")
    yield stack
    down = stack.stack_command("down", timeout=180)
    assert down.returncode == 0, down.stderr


@dataclass
class LiveApp:
    url: str
    process: AppProcess
    code_host: CodeHostServer
    keys: dict[str, str]  # role -> API key
    env: dict[str, str]  # what the process was started with (a second one can reuse it)

    def client(self, role: str | None) -> httpx.Client:
        headers = {"X-API-Key": self.keys[role]} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def create_key(env: dict[str, str], role: str) -> str:
    done = subprocess.run([sys.executable, "-m", "app", "create-key", f"e2e-{role}", role], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


@pytest.fixture(scope="session")
def live_app(native_stack: NativeStack, tmp_path_factory) -> LiveApp:
    """The review service as a process, exporting to the stack's collector."""
    code_host = CodeHostServer(fail_next=2)
    env = {
        "APP_ENV": "test",
        "DATABASE_URL": native_stack.database_url,
        "REDIS_URL": native_stack.redis_url,
        "OTEL_SERVICE_NAME": "hitl-review",
        "OTEL_EXPORTER_OTLP_ENDPOINT": native_stack.collector_otlp_grpc,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=e2e",
        # Quick export so the tests wait seconds, not the SDK's default minute.
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        "OTEL_BLRP_SCHEDULE_DELAY": "500",
        "CODE_HOST_URL": code_host.url,
        "CODE_HOST_TOKEN": "e2e-code-host-token-not-a-secret",
        "ACTION_RETRY_BASE_SECONDS": "0.5",
        "ACTION_RETRY_POLL_SECONDS": "0.5",
        "PENDING_GAUGE_REFRESH_SECONDS": "1",
    }
    log_dir = tmp_path_factory.mktemp("e2e-app")
    app = AppProcess(env=env, log_path=log_dir / "app.log")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | env | {"OTEL_SDK_DISABLED": "true"}
    keys = {role: create_key(full_env, role) for role in ("pipeline", "reviewer", "viewer", "admin")}
    yield LiveApp(url=app.url, process=app, code_host=code_host, keys=keys, env=env)
    app.stop()
    code_host.close()


RED_CALLS = ('sum by (http_request_method, http_route, http_response_status_code) '
             '(traces_span_metrics_calls_total{service_name="hitl-review", span_kind="SPAN_KIND_SERVER", '
             'http_route=~"/api/.+"})')

# What the business metrics must read after the traffic: query, labels, expected(traffic).
BUSINESS_CHECKS = {
    "reviews created by severity": (
        'sum by (hitl_review_severity) (hitl_reviews_created_total{service_name="hitl-review"})',
        ("hitl_review_severity",), lambda t: {(k,): float(v) for k, v in t.created.items()}),
    "decisions by decision": (
        'sum by (hitl_decision) (hitl_decisions_total{service_name="hitl-review"})',
        ("hitl_decision",), lambda t: {(k,): float(v) for k, v in t.decided.items()}),
    "decision latency observations by decision": (
        'sum by (hitl_decision) (hitl_decision_duration_seconds_count{service_name="hitl-review"})',
        ("hitl_decision",), lambda t: {(k,): float(v) for k, v in t.decided.items()}),
    "pending reviews by severity": (
        'sum by (hitl_review_severity) (hitl_reviews_pending{service_name="hitl-review"}) > 0',
        ("hitl_review_severity",), lambda t: {(k,): float(v) for k, v in t.pending.items() if v}),
    # The code host refused the first two actions (two failures), then every action succeeded:
    # one success per decision.
    "actions by outcome": (
        'sum by (hitl_action_outcome) (hitl_actions_total{service_name="hitl-review"})',
        ("hitl_action_outcome",), lambda t: {("failed",): 2.0, ("succeeded",): float(sum(t.decided.values()))}),
}


# Read once the traffic has settled, for the tests that look at the same series later.
SNAPSHOTS = {
    "server errors by route": (
        'sum by (http_route) (traces_span_metrics_calls_total{service_name="hitl-review", '
        'span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_ERROR"})', ("http_route",)),
    "stats latency buckets": (
        'sum by (le) (traces_span_metrics_duration_seconds_bucket{service_name="hitl-review", '
        'span_kind="SPAN_KIND_SERVER", http_route="/api/v1/stats"})', ("le",)),
}


@dataclass
class TrafficResult:
    traffic: object
    expected_calls: dict
    observed_calls: dict
    expected_business: dict
    observed_business: dict
    snapshots: dict


@pytest.fixture(scope="session")
def traffic(native_stack: NativeStack, live_app: LiveApp) -> TrafficResult:
    """Drives the known traffic once, then waits (with a deadline) until Prometheus shows it.

    The observations are taken here, before any other test adds traffic of its own, and the
    tests compare them with what was sent (a timeout is not a failure here: the tests report
    the difference)."""
    from tests.e2e.backends import prom_vector
    from tests.e2e.traffic import Traffic, drive
    from tests.support.polling import wait_for

    sent = drive(live_app, Traffic())
    expected_calls = {(m, r, str(s)): float(n) for (m, r, s), n in sent.sent.items()}
    expected_business = {name: expect(sent) for name, (_, _, expect) in BUSINESS_CHECKS.items()}
    observed: dict = {"calls": {}, "business": {}}

    def settled() -> bool:
        observed["calls"] = prom_vector(native_stack.prometheus_url, RED_CALLS,
                                        "http_request_method", "http_route", "http_response_status_code")
        observed["business"] = {name: prom_vector(native_stack.prometheus_url, query, *labels)
                                for name, (query, labels, _) in BUSINESS_CHECKS.items()}
        return observed["calls"] == expected_calls and observed["business"] == expected_business

    try:
        wait_for("span metrics and business metrics to match the traffic", settled, timeout=90, interval=1)
    except AssertionError:
        pass
    snapshots = {name: prom_vector(native_stack.prometheus_url, query, *labels)
                 for name, (query, labels) in SNAPSHOTS.items()}
    return TrafficResult(sent, expected_calls, observed["calls"], expected_business, observed["business"], snapshots)
