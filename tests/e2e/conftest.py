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

from harness.alert_sink import AlertSink, SmtpSink
from harness.app_process import AppProcess
from stack.services import HOST, PG_PORT, REDIS_PORT, TEST_PORT_OFFSET, ports
from harness.code_host import CodeHostServer

REPO = Path(__file__).resolve().parents[2]
FLUSH_INTERVAL = "2s"
RULE_EVAL_INTERVAL = "2s"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@dataclass
class NativeStack:
    kind = "native"
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
    up_args: tuple[str, ...] = ()

    def stop_service(self, name: str) -> None:
        done = self.stack_command("stop", name, timeout=60)
        assert done.returncode == 0, done.stderr

    def start_service(self, name: str) -> None:
        """`up` again: it starts what is not running and leaves the rest alone."""
        done = self.stack_command("up", *self.up_args, "--skip-build", timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    @property
    def collector_otlp_auth_http(self) -> str:
        return f"http://{HOST}:{ports(TEST_PORT_OFFSET)['otlp_auth_http']}"

    @property
    def ingest_token(self) -> str:
        """The first token of the collector's ingest token file (written by `stack up`)."""
        return (self.run_dir / "config" / "otelcol-ingest-tokens").read_text().split()[0]

    def stack_command(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "stack", *args], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)

    def log(self, service: str) -> str:
        path = self.run_dir / "logs" / f"{service}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


# The same suite runs against each stack: the native one, and the project's compose.yaml on a
# real Docker engine (harness/compose_stack.py; the differences are listed in
# tests/compose/compose.test.yaml). Tests are grouped by stack, one stack up at a time.
STACKS = ("native", "compose")


@pytest.fixture(scope="session", params=STACKS)
def stack_kind(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def docker_env(stack_kind) -> dict[str, str] | None:
    """The environment that reaches the project's Docker engine (compose stack only)."""
    if stack_kind != "compose":
        return None
    from harness.compose_stack import engine_env

    return engine_env()


@pytest.fixture(scope="session")
def sink_host(docker_env) -> str:
    """Where the stand-ins for external services listen: loopback for the native stack; for
    compose the host's address on Docker's bridge, the one address of this machine the
    containers reach (`host-gateway`)."""
    if docker_env is None:
        return HOST
    from harness.compose_stack import bridge_gateway

    return bridge_gateway(docker_env)


@pytest.fixture(scope="session")
def alert_sink(sink_host) -> AlertSink:
    """Where the stack's Alertmanager sends PagerDuty, Slack and heartbeat notifications."""
    sink = AlertSink(sink_host)
    yield sink
    sink.close()


@pytest.fixture(scope="session")
def smtp_sink(sink_host) -> SmtpSink:
    """Where the stack's Alertmanager sends its e-mails (info alerts)."""
    sink = SmtpSink(sink_host)
    yield sink
    sink.close()


@pytest.fixture(scope="session")
def code_host(sink_host) -> CodeHostServer:
    """The code host the app acts on; refuses the first two actions (retried, then succeed)."""
    server = CodeHostServer(fail_next=2, host=sink_host)
    yield server
    server.close()


@pytest.fixture(scope="session")
def stack(stack_kind, request):
    """The stack under test (NativeStack or ComposeStack): the same URLs either way."""
    return request.getfixturevalue(f"{stack_kind}_stack")


@pytest.fixture(scope="session")
def native_stack(alert_sink: AlertSink, smtp_sink: SmtpSink) -> NativeStack:
    base = Path(os.environ.get("HITL_E2E_DIR", Path(tempfile.gettempdir()) / f"hitl-e2e-{os.getuid()}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"HITL_STACK_RUN": str(base / "run"), "HITL_STACK_PORT_OFFSET": str(TEST_PORT_OFFSET)})
    p = ports(TEST_PORT_OFFSET)
    up_args = ("--no-app", "--flush-interval", FLUSH_INTERVAL, "--scrape-interval", "2s",
               "--rule-eval-interval", RULE_EVAL_INTERVAL, "--fast-alerts",
               "--alert-sink", alert_sink.url, "--alert-smtp", smtp_sink.address, "--timeout", "120")
    stack = NativeStack(
        up_args=up_args,
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
    up = stack.stack_command("up", *up_args, timeout=3600)
    if up.returncode != 0:
        stack.stack_command("down")
        pytest.fail(f"python -m stack up failed ({up.returncode}):\n{up.stdout[-3000:]}\n{up.stderr[-6000:]}")
    yield stack
    down = stack.stack_command("down", timeout=180)
    assert down.returncode == 0, down.stderr


@pytest.fixture(scope="session")
def compose_stack(docker_env, alert_sink: AlertSink, smtp_sink: SmtpSink, code_host: CodeHostServer,
                  tmp_path_factory):
    """compose.yaml on the project's engine: images built with `docker compose build`, every
    service but Grafana and the simulator up with `docker compose up --wait`; at the end
    `docker compose down --volumes`, which must leave none of the project's volumes."""
    from harness.compose_stack import bring_up

    stack = bring_up(docker_env, tmp_path_factory.mktemp("compose"), alert_sink=alert_sink.url,
                     smtp=smtp_sink.address, code_host=code_host.url, flush_interval=FLUSH_INTERVAL,
                     rule_eval_interval=RULE_EVAL_INTERVAL)
    yield stack
    stack.down(volumes=True)
    assert not stack.volumes(), f"down --volumes left {stack.volumes()}"


@dataclass
class LiveApp:
    url: str
    process: AppProcess | None  # None: the compose stack's app container
    code_host: CodeHostServer
    keys: dict[str, str]  # role -> API key
    env: dict[str, str]  # what the process was started with (a second one can reuse it)

    def client(self, role: str | None) -> httpx.Client:
        headers = {"X-API-Key": self.keys[role]} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def start_another(self, stack, name: str, tmp_path, attributes: str = "deployment.environment.name=e2e"):
        """A second process of the service (compose: a second container of the app service, as a
        scaled-out or rolling deployment runs one). Returns a function that SIGKILLs it."""
        if self.process is None:
            container = f"hitl-test-app-{name}"
            stack("run", "--detach", "--no-deps", "--name", container, "--env",
                  f"OTEL_RESOURCE_ATTRIBUTES={attributes}", "app")
            return lambda: subprocess.run(["docker", "rm", "--force", container], env=stack.env,
                                          capture_output=True, timeout=60)
        other = AppProcess(env=self.env | {"OTEL_RESOURCE_ATTRIBUTES": attributes}, log_path=tmp_path / f"app-{name}.log")
        return other.kill

    def app_command(self, stack, *argv: str) -> str:
        """`python -m app ARGV` against the service's database (compose: inside its container)."""
        if self.process is None:
            return stack.exec("app", "env", "OTEL_SDK_DISABLED=true", "python", "-m", "app", *argv)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | self.env | {"OTEL_SDK_DISABLED": "true"}
        done = subprocess.run([sys.executable, "-m", "app", *argv], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr


def create_key(env: dict[str, str], role: str) -> str:
    done = subprocess.run([sys.executable, "-m", "app", "create-key", f"e2e-{role}", role], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


ROLES = ("pipeline", "reviewer", "viewer", "admin")


@pytest.fixture(scope="session")
def live_app(stack, code_host: CodeHostServer, tmp_path_factory) -> LiveApp:
    """The review service: a process exporting to the native stack's collector, or the compose
    stack's app container (keys made inside it, with `docker compose exec`)."""
    if stack.kind == "compose":
        keys = {role: stack.exec("app", "env", "OTEL_SDK_DISABLED=true", "python", "-m", "app", "create-key",
                                 f"e2e-{role}", role).split()[0] for role in ROLES}
        yield LiveApp(url=stack.app_url, process=None, code_host=code_host, keys=keys, env={})
        return
    env = {
        "APP_ENV": "test",
        "DATABASE_URL": stack.database_url,
        "REDIS_URL": stack.redis_url,
        "OTEL_SERVICE_NAME": "hitl-review",
        "OTEL_EXPORTER_OTLP_ENDPOINT": stack.collector_otlp_grpc,
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
    keys = {role: create_key(full_env, role) for role in ROLES}
    yield LiveApp(url=app.url, process=app, code_host=code_host, keys=keys, env=env)
    app.stop()


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
        'sum by (hitl_review_severity) (service_severity:hitl_reviews_pending:newest{service_name="hitl-review"}) > 0',
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
def traffic(stack, live_app: LiveApp) -> TrafficResult:
    """Drives the known traffic once, then waits (with a deadline) until Prometheus shows it.

    The observations are taken here, before any other test adds traffic of its own, and the
    tests compare them with what was sent (a timeout is not a failure here: the tests report
    the difference)."""
    from harness.polling import wait_for
    from tests.e2e.backends import prom_vector
    from tests.e2e.traffic import Traffic, drive

    sent = drive(live_app, Traffic())
    expected_calls = {(m, r, str(s)): float(n) for (m, r, s), n in sent.sent.items()}
    expected_business = {name: expect(sent) for name, (_, _, expect) in BUSINESS_CHECKS.items()}
    observed: dict = {"calls": {}, "business": {}}

    def settled() -> bool:
        observed["calls"] = prom_vector(stack.prometheus_url, RED_CALLS,
                                        "http_request_method", "http_route", "http_response_status_code")
        observed["business"] = {name: prom_vector(stack.prometheus_url, query, *labels)
                                for name, (query, labels, _) in BUSINESS_CHECKS.items()}
        return observed["calls"] == expected_calls and observed["business"] == expected_business

    try:
        wait_for("span metrics and business metrics to match the traffic", settled, timeout=90, interval=1)
    except AssertionError:
        pass
    snapshots = {name: prom_vector(stack.prometheus_url, query, *labels)
                 for name, (query, labels) in SNAPSHOTS.items()}
    return TrafficResult(sent, expected_calls, observed["calls"], expected_business, observed["business"], snapshots)


@pytest.fixture(scope="session")
def simulator_edge(stack, live_app: LiveApp, traffic: TrafficResult) -> dict:
    """The simulator, as the upstream pipeline, sends 20 requests after the counted traffic;
    returns its hitl-simulator -> hitl-review edge once Jaeger's dependency API shows it."""
    from tests.e2e.backends import simulator_edge as run_simulator

    return run_simulator(jaeger_url=stack.jaeger_url, app_url=live_app.url, otlp_endpoint=stack.collector_otlp_grpc,
                         keys=live_app.keys, base_env=stack.env)
