"""The native stack in its HA shape (`python -m stack up --topology ha`, stack/ha.py): an agent,
three gateways, Jaeger on Badger, VictoriaLogs, two Prometheus replicas and three Alertmanagers
gossiping on loopback, all real processes, with every port shifted by HA_PORT_OFFSET and a run
directory of its own (so it runs beside a developer's stack and the e2e one).

Short intervals as in tests/e2e: span metrics flush every 2 s, Prometheus scrapes every 2 s and
evaluates every 2 s, --fast-alerts caps every `for` at 5 s and Alertmanager's group_wait at 1 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from harness.alert_sink import AlertSink
from harness.app_process import AppProcess
from harness.polling import wait_for
from stack import ha
from stack.services import HOST, PG_PORT, REDIS_PORT, ports

REPO = Path(__file__).resolve().parents[2]
HA_PORT_OFFSET = 300
GATEWAYS = 3


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@dataclass
class HAStack:
    run_dir: Path
    env: dict[str, str]
    up_args: tuple[str, ...]
    offset: int = HA_PORT_OFFSET
    gateways: int = GATEWAYS
    p: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.p = ports(self.offset)

    # Grafana and these tests read replica 0; prometheus_urls has both.
    @property
    def prometheus_url(self) -> str:
        return self.prometheus_urls[0]

    @property
    def prometheus_urls(self) -> list[str]:
        return [f"http://{HOST}:{ha.prometheus_port(r, self.offset)}" for r in range(ha.PROMETHEUS_REPLICAS)]

    @property
    def alertmanager_urls(self) -> list[str]:
        return [f"http://{HOST}:{ha.alertmanager_ports(i, self.offset)[0]}" for i in range(ha.ALERTMANAGERS)]

    @property
    def jaeger_url(self) -> str:
        return f"http://{HOST}:{self.p['jaeger_query_http']}"

    @property
    def victorialogs_url(self) -> str:
        return f"http://{HOST}:{self.p['victorialogs']}"

    @property
    def agent_otlp_grpc(self) -> str:
        return f"http://{HOST}:{self.p['otlp_grpc']}"

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://hitl:hitl@{HOST}:{PG_PORT + self.offset}/hitl"

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{REDIS_PORT + self.offset}/0"

    def command(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "stack", *args], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)

    def stop(self, *names: str) -> None:
        done = self.command("stop", *names, timeout=120)
        assert done.returncode == 0, done.stderr

    def kill(self, name: str) -> None:
        """SIGKILL, nothing flushed (the pid file's process group)."""
        pid = self.pid(name)
        assert pid, f"{name} is not running"
        os.killpg(pid, 9)

    def pid(self, name: str) -> int | None:
        from stack.process import PidFile

        return PidFile(self.run_dir / "pids" / f"{name}.pid").running_pid()

    def start(self) -> None:
        """`up` again: starts what is not running, waits for health, leaves the rest alone."""
        done = self.command("up", *self.up_args, "--skip-build", timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    def log(self, name: str) -> str:
        path = self.run_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


def cluster_view(alertmanager_url: str) -> tuple[str, int]:
    """(cluster status, peers it sees) of one Alertmanager."""
    cluster = httpx.get(f"{alertmanager_url}/api/v2/status", timeout=5).json()["cluster"]
    return cluster["status"], len(cluster.get("peers") or [])


@pytest.fixture(scope="session")
def ha_sink() -> AlertSink:
    sink = AlertSink(HOST)
    yield sink
    sink.close()


@pytest.fixture(scope="session")
def ha_stack(ha_sink) -> HAStack:
    base = Path(os.environ.get("HITL_HA_DIR", Path(tempfile.gettempdir()) / f"hitl-ha-{os.getuid()}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"HITL_STACK_RUN": str(base / "run"), "HITL_STACK_PORT_OFFSET": str(HA_PORT_OFFSET)})
    up_args = ("--topology", "ha", "--gateways", str(GATEWAYS), "--no-app", "--flush-interval", "2s",
               "--scrape-interval", "2s", "--rule-eval-interval", "2s", "--fast-alerts",
               "--alert-sink", ha_sink.url, "--timeout", "120")
    stack = HAStack(run_dir=base / "run", env=env, up_args=up_args)
    stack.command("down", "--purge", timeout=180)
    up = stack.command("up", *up_args, timeout=3600)
    if up.returncode != 0:
        stack.command("down")
        pytest.fail(f"python -m stack up --topology ha failed ({up.returncode}):\n{up.stdout[-3000:]}\n{up.stderr[-6000:]}")
    wait_for("every Alertmanager in a settled cluster of all three",
             lambda: all(cluster_view(url) == ("ready", ha.ALERTMANAGERS) for url in stack.alertmanager_urls), timeout=120)
    yield stack
    down = stack.command("down", timeout=180)
    assert down.returncode == 0, down.stderr


def app_env(stack: HAStack, environment: str) -> dict[str, str]:
    """The service exporting to the agent; `environment` (deployment.environment.name) keeps each
    test's telemetry apart from the others'."""
    return {
        "APP_ENV": "test",
        "DATABASE_URL": stack.database_url,
        "REDIS_URL": stack.redis_url,
        "OTEL_SERVICE_NAME": "hitl-review",
        "OTEL_EXPORTER_OTLP_ENDPOINT": stack.agent_otlp_grpc,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment.name={environment}",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        "OTEL_BLRP_SCHEDULE_DELAY": "500",
        "CODE_HOST_URL": f"http://{HOST}:9",
        "CODE_HOST_TOKEN": "ha-code-host-token-not-a-secret",
    }


def create_key(env: dict[str, str], role: str) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | env | {"OTEL_SDK_DISABLED": "true"}
    done = subprocess.run([sys.executable, "-m", "app", "create-key", f"ha-{role}", role], env=full, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


@dataclass
class HAApp:
    process: AppProcess
    keys: dict[str, str]
    environment: str

    @property
    def url(self) -> str:
        return self.process.url


@pytest.fixture(scope="session")
def ha_keys(ha_stack) -> dict[str, str]:
    env = app_env(ha_stack, "ha")
    return {role: create_key(env, role) for role in ("pipeline", "viewer")}


@pytest.fixture
def start_app(ha_stack, ha_keys, tmp_path):
    """start_app(environment) -> a service process of its own for one test (stopped after it)."""
    started: list[AppProcess] = []

    def start(environment: str) -> HAApp:
        process = AppProcess(env=app_env(ha_stack, environment), log_path=tmp_path / f"app-{environment}.log")
        started.append(process)
        return HAApp(process, ha_keys, environment)

    yield start
    for process in started:
        process.stop()
