"""The project's compose stack on a real Docker engine, for the tests.

What runs is the repository's compose.yaml (with compose.stack.yaml and versions.env, exactly
as a user runs it) plus tests/compose/compose.test.yaml, whose header lists every difference,
from a copy of the checkout made with umask 077 (files 0600, folders 0700): the strictest
checkout a user may have, so the tests prove the containers' users still read their configs.
The engine is the project's own (scripts/docker-engine.sh), the CLI the pinned Compose built by
`stack/build.sh compose`, and the images compose cannot pull are the twins of
tests/compose/twins/ (test fixtures). The project name is `hitl-test`, so a user's `hitl`
project and its volumes are never touched.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from stack.ports import IN_CONTAINER

REPO = Path(__file__).resolve().parents[1]
OVERLAY = REPO / "tests" / "compose" / "compose.test.yaml"
HA_OVERLAY = REPO / "tests" / "compose" / "compose.ha.test.yaml"
PROJECT = "hitl-test"
HA_PROJECT = "hitl-ha-test"
HOST = "127.0.0.1"
# Host ports of compose.test.yaml, for HITL_TEST_PORT_PREFIX=2 (the HA project's prefix 3 turns
# 28000 into 38000): the prefix and the last four digits of the container port (stack/ports.py);
# compose.ha.test.yaml adds the HA services' (Prometheus replica 1, Alertmanagers 1 and 2).
PORTS = {name: int("2" + str(IN_CONTAINER[name])[-4:])
         for name in ("app", "otlp_grpc", "otlp_http", "otlp_auth_grpc", "otlp_auth_http", "otelcol_telemetry",
                      "otelcol_prometheus", "jaeger_query_http", "victorialogs", "prometheus", "alertmanager")}
PORTS |= {"prometheus_1": 29190, "alertmanager_1": 29193, "alertmanager_2": 29194}
# Everything but Grafana (its image cannot be built here: README) and the simulator (its load
# would change the exact counts the end-to-end tests assert; started on its own where needed).
SERVICES = ["config-init", "postgres", "redis", "app-init", "app", "otel-collector", "jaeger", "victorialogs",
            "prometheus", "alertmanager"]
HA_SERVICES = [*SERVICES, "otel-gateway-0", "otel-gateway-1", "otel-gateway-2", "prometheus-1",
               "alertmanager-1", "alertmanager-2"]
STATEFUL = ["postgres", "prometheus", "alertmanager", "jaeger", "victorialogs", "otel-collector"]


def run(argv: list[str], *, env: dict[str, str], timeout: float, check: bool = True,
        log: Path | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:6])} ... failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return done


def tool_path(target: str, binary: str) -> str:
    """A binary of stack/build.sh's cache (built if missing)."""
    run(["bash", "stack/build.sh", target], env=dict(os.environ), timeout=1800)
    paths = run(["bash", "stack/build.sh", "--paths", target], env=dict(os.environ), timeout=60).stdout
    return dict(line.split("=", 1) for line in paths.splitlines() if "=" in line)[binary]


def engine_env() -> dict[str, str]:
    """The process environment with DOCKER_HOST of the project's engine (started if needed)."""
    started = run(["bash", "scripts/docker-engine.sh", "start"], env=dict(os.environ), timeout=600)
    env = dict(os.environ)
    for line in started.stdout.splitlines():
        if line.startswith("export DOCKER_HOST="):
            env["DOCKER_HOST"] = line.split("=", 1)[1]
    assert "DOCKER_HOST" in env, started.stdout + started.stderr
    return env


def bridge_gateway(env: dict[str, str]) -> str:
    """The host's address on Docker's default bridge: what `host-gateway` resolves to, and where
    the tests' stand-ins listen so that containers reach them. Engine 20.10 leaves the gateway
    out of the default bridge's IPAM config: the address is read off its interface."""
    done = run(["docker", "network", "inspect", "bridge", "--format",
                '{{range .IPAM.Config}}{{.Gateway}}{{end}} {{index .Options "com.docker.network.bridge.name"}}'],
               env=env, timeout=30)
    gateway, _, interface = done.stdout.strip().rpartition(" ")
    if gateway.strip():
        return gateway.strip()
    import fcntl
    import socket
    import struct

    siocgifaddr = 0x8915  # <linux/sockios.h>: the interface's IPv4 address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        answer = fcntl.ioctl(s.fileno(), siocgifaddr, struct.pack("256s", interface[:15].encode()))
    return socket.inet_ntoa(answer[20:24])


@dataclass
class ComposeStack:
    compose: str  # the docker-compose binary
    project_dir: Path  # the checkout compose runs from
    env: dict[str, str]  # process environment (DOCKER_HOST)
    env_file: Path
    values: dict[str, str]  # what the env file holds
    work_dir: Path
    log_file: Path = field(init=False)
    # The single shape (compose.yaml) or the HA one (compose.ha.yaml, topology="ha").
    topology: str = "single"
    kind: str = "compose"

    def __post_init__(self):
        self.log_file = self.work_dir / "compose.log"

    @property
    def project(self) -> str:
        return HA_PROJECT if self.topology == "ha" else PROJECT

    @property
    def services(self) -> list[str]:
        return HA_SERVICES if self.topology == "ha" else SERVICES

    def port(self, name: str) -> int:
        prefix = "3" if self.topology == "ha" else "2"
        return int(prefix + str(PORTS[name])[1:])

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.port(name)}"

    prometheus_url = property(lambda self: self.url("prometheus"))
    jaeger_url = property(lambda self: self.url("jaeger_query_http"))
    victorialogs_url = property(lambda self: self.url("victorialogs"))
    alertmanager_url = property(lambda self: self.url("alertmanager"))
    collector_otlp_grpc = property(lambda self: self.url("otlp_grpc"))
    collector_metrics_url = property(lambda self: self.url("otelcol_prometheus") + "/metrics")
    collector_telemetry_url = property(lambda self: self.url("otelcol_telemetry") + "/metrics")
    collector_otlp_auth_http = property(lambda self: self.url("otlp_auth_http"))
    app_url = property(lambda self: self.url("app"))

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        """docker compose -p hitl-test -f compose.yaml -f compose.test.yaml --env-file ... ARGS
        (HA: -p hitl-ha-test -f compose.ha.yaml -f compose.test.yaml -f compose.ha.test.yaml)"""
        files = ["compose.yaml", OVERLAY.relative_to(REPO)]
        if self.topology == "ha":
            files = ["compose.ha.yaml", OVERLAY.relative_to(REPO), HA_OVERLAY.relative_to(REPO)]
        argv = [self.compose, "--project-name", self.project]
        for name in files:
            argv += ["--file", str(self.project_dir / name)]
        argv += ["--env-file", str(self.env_file), "--progress", "plain", *args]
        return run(argv, env=self.env, timeout=timeout, check=check, log=self.log_file)

    def up(self, *services: str, timeout: float = 600) -> None:
        self("up", "--detach", "--wait", "--wait-timeout", str(int(timeout)), *(services or self.services),
             timeout=timeout + 60)

    def stop_service(self, name: str) -> None:
        self("stop", "--timeout", "20", name, timeout=120)

    def start_service(self, name: str) -> None:
        self.up(name)

    def down(self, *, volumes: bool) -> None:
        self("down", "--remove-orphans", "--timeout", "20", *(["--volumes"] if volumes else []), timeout=300)

    @property
    def ingest_token(self) -> str:
        return self.values["OTELCOL_INGEST_TOKEN"]

    def log(self, service: str) -> str:
        done = self("logs", "--no-color", "--tail", "200", service, check=False, timeout=60)
        return (done.stdout + done.stderr)[-4000:]

    def ps(self) -> dict[str, dict]:
        """service -> its container's state (State, Health, ExitCode), all containers."""
        done = self("ps", "--all", "--format", "json", timeout=60)
        rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        return {row["Service"]: row for row in rows}

    def exec(self, service: str, *argv: str, timeout: float = 120) -> str:
        return self("exec", "-T", service, *argv, timeout=timeout).stdout

    def volumes(self) -> set[str]:
        done = run(["docker", "volume", "ls", "--quiet", "--filter", f"label=com.docker.compose.project={self.project}"],
                   env=self.env, timeout=60)
        return set(done.stdout.split())

    def wait_ready(self, url: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                r = httpx.get(url, timeout=5)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(1)
        raise AssertionError(f"{url} not ready after {timeout}s: {last}")


def write_env_file(path: Path, **values: str) -> dict[str, str]:
    """The user's .env, with fresh random secrets; `values` adds or replaces entries."""
    base = {
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "OTELCOL_REDACTION_HMAC_KEY": secrets.token_hex(32),
        "OTELCOL_INGEST_TOKEN": secrets.token_hex(24),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16),
        "ALERTMANAGER_PAGERDUTY_ROUTING_KEY": "dev-routing-key-not-a-secret",
        "ALERTMANAGER_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/slack",
        "ALERTMANAGER_SMTP_PASSWORD": secrets.token_hex(8),
        "ALERTMANAGER_HEARTBEAT_URL": "http://127.0.0.1:9/heartbeat",
        "APP_ENV": "test",
        "CODE_HOST_URL": "",
        "CODE_HOST_TOKEN": "",
        "SIM_RATE": "2",
        "SIM_DURATION": "0",
    } | values
    path.write_text("".join(f"{k}={v}\n" for k, v in base.items()))
    path.chmod(0o600)
    return base


def render_test_configs(config_dir: Path, *, alert_sink: str, smtp: str, flush_interval: str,
                        rule_eval_interval: str) -> None:
    """The rendered copies compose.test.yaml mounts (its item 2), made by the same functions
    that render the native end-to-end stack's."""
    from stack.services import Options, render_alertmanager_config, render_prometheus_config, render_prometheus_dir

    opts = Options(run_dir=config_dir, cache_dir=config_dir, scrape_interval="2s", flush_interval=flush_interval,
                   rule_eval_interval=rule_eval_interval, fast_alerts=True, alert_sink=alert_sink, alert_smtp=smtp)
    render_prometheus_dir(config_dir / "prometheus", opts, native_targets=False)
    # The HA shape's file beside it (compose.ha.stack.yaml points Prometheus at it).
    ha_source = (REPO / "prometheus" / "prometheus-ha.yml").read_text()
    (config_dir / "prometheus" / "prometheus-ha.yml").write_text(
        render_prometheus_config(ha_source, opts, native_targets=False))
    (config_dir / "alertmanager").mkdir(parents=True, exist_ok=True)
    source = (REPO / "alertmanager" / "alertmanager.yml").read_text()
    (config_dir / "alertmanager" / "alertmanager.yml").write_text(
        render_alertmanager_config(source, opts, Path("/etc/alertmanager/secrets")))


def strict_copy(target: Path) -> Path:
    """The checkout's files (tracked, and untracked ones git does not ignore) copied to target
    as a checkout made with umask 077 has them: files 0600 (0700 if executable), folders 0700;
    run as root, owned by another user (uid 1000, a typical login), as a user's checkout is."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if not source.is_file():
            continue  # deleted in the work tree
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_bytes(source.read_bytes())
        path.chmod(0o700 if source.stat().st_mode & 0o100 else 0o600)
    for folder in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        folder.chmod(0o700)
    if os.getuid() == 0:
        for path in [target, *target.rglob("*")]:
            os.lchown(path, 1000, 1000)
    return target


def build_twins(env: dict[str, str], log: Path) -> None:
    run(["bash", "tests/compose/twins/build.sh"], env=env, timeout=3600, log=log)


def bring_up(docker_env: dict[str, str], work_dir: Path, *, alert_sink: str, smtp: str, code_host: str,
             flush_interval: str, rule_eval_interval: str, topology: str = "single") -> ComposeStack:
    """Twins, `docker compose build`, `docker compose up --wait`: the compose stack (topology
    "ha": compose.ha.yaml, project hitl-ha-test), healthy. Seconds each step took go to
    work_dir/timings.json (docs/benchmarks.md quotes them)."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    compose = tool_path("compose", "docker-compose")
    build_twins(docker_env, work_dir / "twins.log")
    timings["twins"] = time.monotonic() - t0
    project_dir = strict_copy(work_dir / "checkout")
    config_dir = work_dir / "config"
    previous = os.umask(0o077)  # the rendered copies as strict as the checkout
    try:
        render_test_configs(config_dir, alert_sink=alert_sink, smtp=smtp, flush_interval=flush_interval,
                            rule_eval_interval=rule_eval_interval)
    finally:
        os.umask(previous)
    values = write_env_file(
        work_dir / ".env",
        ALERTMANAGER_SLACK_WEBHOOK_URL=f"{alert_sink}/slack",
        ALERTMANAGER_HEARTBEAT_URL=f"{alert_sink}/heartbeat",
        CODE_HOST_URL=code_host,
        CODE_HOST_TOKEN="e2e-code-host-token-not-a-secret",
        HITL_TEST_CONFIG_DIR=str(config_dir),
        HITL_TEST_PORT_PREFIX="3" if topology == "ha" else "2",
    )
    stack = ComposeStack(compose=compose, project_dir=project_dir, env=docker_env, env_file=work_dir / ".env",
                         values=values, work_dir=work_dir, topology=topology)
    # A project left over from an interrupted run goes first, with its data: counts start at 0.
    stack.down(volumes=True)
    t = time.monotonic()
    stack("build", timeout=3600)
    timings["build"] = time.monotonic() - t
    t = time.monotonic()
    try:
        stack.up(timeout=300)
    except AssertionError as e:
        states = {name: (row.get("State"), row.get("Health"), row.get("ExitCode")) for name, row in stack.ps().items()}
        logs = "\n".join(f"--- {name}\n{stack.log(name)[-1500:]}" for name in stack.services)
        stack.down(volumes=True)
        raise AssertionError(f"{e}\nstates: {states}\n{logs}") from None
    timings["up"] = time.monotonic() - t
    (work_dir / "timings.json").write_text(json.dumps(timings, indent=1))
    return stack
