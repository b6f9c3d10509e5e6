"""What the native stack runs: one Service per process, with its paths, environment and health.

The config files in the repository are written for docker compose (0.0.0.0 listeners and compose
service names). The collector and Jaeger read `${env:VAR:-default}`, so here they only get
environment variables. Prometheus cannot expand variables in scrape targets and Alertmanager reads
its secrets from fixed paths, so their files are rendered per run, as data:
stack/prometheus_config.py and stack/alertmanager_config.py. Ports: stack/ports.py.
"""

from __future__ import annotations

import os
import signal
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from stack import ha, local_secrets, postgres, process, prometheus_config, yaml_dump
from stack.alertmanager_config import (ALERTMANAGER_SECRETS_DIR, PAGERDUTY_URL,  # noqa: F401 (used by tests)
                                       render_alertmanager_config)
from stack.durations import parse_duration  # noqa: F401 (stack.cli's options)
from stack.ports import (APP_PORT, COLLECTOR_SLOTS, HOST, PG_PORT, PORTS, REDIS_PORT, TEST_PORT_OFFSET,  # noqa: F401 (imported from here)
                         ports)
from stack.sources import victorialogs_flags

REPO_ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ("single", "ha")

# Start order (`down` stops in reverse). PostgreSQL gets SIGINT, its "fast" shutdown: on
# SIGTERM it would wait for every client to disconnect. The HA names (stack/ha.py) are in it too.
SERVICE_ORDER = ["postgres", "redis", "jaeger", "victorialogs", "otelcol",
                 *(ha.service_name("gateway", i) for i in range(ha.MAX_GATEWAYS)), "agent",
                 *(ha.service_name("prometheus", i) for i in range(ha.PROMETHEUS_REPLICAS)),
                 *(ha.service_name("alertmanager", i) for i in range(ha.ALERTMANAGERS)), "app", "simulator"]
STOP_SIGNALS = {"postgres": signal.SIGINT}


@dataclass
class Options:
    run_dir: Path
    cache_dir: Path
    scrape_interval: str = "5s"
    flush_interval: str = "5s"
    rule_eval_interval: str | None = None
    # Tests only: every alert's `for` capped (prometheus_config.FAST_ALERT_FOR) and Alertmanager's
    # group waits (alertmanager_config.FAST_GROUP_WAIT / FAST_GROUP_INTERVAL), so an alert fires and
    # resolves in seconds. The thresholds and windows themselves are proven by promtool's unit
    # tests with the real values.
    fast_alerts: bool = False
    # Base URL of a receiver for Alertmanager's notifications (PagerDuty at <url>/pagerduty,
    # Slack <url>/slack, heartbeat <url>/heartbeat); None: they go to a closed local port.
    alert_sink: str | None = None
    # host:port of an SMTP stand-in for e-mail notifications (no TLS then); None: the config's.
    alert_smtp: str | None = None
    pg_port: int = PG_PORT
    redis_port: int = REDIS_PORT
    app_port: int = APP_PORT
    port_offset: int = 0
    python: str = sys.executable
    start_app: bool = True
    timeout: float = 60.0
    # "single": one collector, Prometheus, Alertmanager; "ha": stack/ha.py.
    topology: str = "single"
    gateways: int = ha.DEFAULT_GATEWAYS


def render_prometheus_config(source: str, opts: Options, *, native_targets: bool = True,
                             extra_targets: dict[str, str] | None = None) -> str:
    """prometheus.yml of source for this host (stack/prometheus_config.py native_shape());
    native_targets=False keeps the compose addresses (the compose tests' copy: intervals only)."""
    targets = (prometheus_config.native_targets(opts.port_offset) | (extra_targets or {})) if native_targets else None
    return yaml_dump.dump(prometheus_config.native_shape(prometheus_config.load(source), opts, targets=targets))


def render_prometheus_dir(target_dir: Path, opts: Options, *, native_targets: bool = True,
                          source: str | None = None, extra_targets: dict[str, str] | None = None) -> None:
    """prometheus.yml of source (default prometheus/prometheus.yml) and the rules/ it loads, into
    target_dir (stack/prometheus_config.py render_dir())."""
    targets = (prometheus_config.native_targets(opts.port_offset) | (extra_targets or {})) if native_targets else None
    prometheus_config.render_dir(target_dir, opts, prometheus_config.load(source), targets=targets)


@dataclass
class Service:
    name: str
    argv: list[str]
    health: Callable[[], str | None]
    # A dict, or a function called just before the start (after prepare); empty: inherit ours.
    env: dict[str, str] | Callable[[], dict[str, str]] = field(default_factory=dict)
    user: str | None = None
    prepare: Callable[[], None] | None = None
    after_healthy: Callable[[], None] | None = None
    urls: dict[str, str] = field(default_factory=dict)
    # Every port it listens on, checked free before anything starts (stack/preflight.py).
    ports: tuple[int, ...] = ()


class Stack:
    """All paths and services of one run directory."""

    def __init__(self, opts: Options, binaries: dict[str, str]):
        self.opts = opts
        self.bin = binaries
        self.ports = ports(opts.port_offset)
        self.run = opts.run_dir
        self.logs = self.run / "logs"
        self.pids = self.run / "pids"
        self.config = self.run / "config"
        self.data = self.run / "data"
        self.token_file = self.config / "otelcol-ingest-tokens"
        self.sim_keys_file = self.config / "simulator-keys.env"
        self.postgres = postgres.Postgres(run_dir=self.run, data_dir=self.data, port=opts.pg_port)

    # -- helpers -------------------------------------------------------------------------------

    def pid_file(self, name: str) -> process.PidFile:
        return process.PidFile(self.pids / f"{name}.pid")

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Our children must not inherit an OTLP setup meant for someone else.
        for key in [k for k in env if k.startswith("OTEL_")]:
            del env[key]
        return env

    # -- PostgreSQL (stack/postgres.py) --------------------------------------------------------

    def pg_bin(self) -> Path:
        return postgres.bin_dir()

    def pg_dir(self) -> Path:
        return self.postgres.root()

    # -- environment of the app and simulator -------------------------------------------------

    def app_env(self) -> dict[str, str]:
        env = self.base_env()
        env.update({
            "DATABASE_URL": f"postgresql+psycopg://hitl:hitl@{HOST}:{self.opts.pg_port}/hitl",
            "REDIS_URL": f"redis://{HOST}:{self.opts.redis_port}/0",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{self.ports['otlp_grpc']}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_SERVICE_NAME": "hitl-review",
            "APP_HOST": HOST,
            "APP_PORT": str(self.opts.app_port),
        })
        return env

    def simulator_env(self) -> dict[str, str]:
        env = self.app_env()
        env.update({"OTEL_SERVICE_NAME": "hitl-simulator", "SIM_URL": f"http://{HOST}:{self.opts.app_port}"})
        if self.sim_keys_file.exists():
            for line in self.sim_keys_file.read_text().splitlines():
                key, _, value = line.partition("=")
                env[key] = value
        return env

    def create_simulator_keys(self) -> None:
        """API keys for the simulator (`python -m app create-key`), made once per database."""
        if self.sim_keys_file.exists():
            return
        lines = []
        for var, name, role in (("SIM_PIPELINE_KEY", "simulator-pipeline", "pipeline"),
                                ("SIM_REVIEWER_KEY", "simulator-reviewer", "reviewer")):
            done = subprocess.run([self.opts.python, "-m", "app", "create-key", name, role],
                                  capture_output=True, text=True, env=self.app_env(), cwd=REPO_ROOT)
            if done.returncode != 0 or not done.stdout.strip():
                raise RuntimeError(f"python -m app create-key {name} {role} failed:\n{done.stderr[-2000:]}")
            lines.append(f"{var}={done.stdout.split()[0]}")
        self.sim_keys_file.parent.mkdir(parents=True, exist_ok=True)
        self.sim_keys_file.write_text("\n".join(lines) + "\n")
        self.sim_keys_file.chmod(0o600)

    # -- the services, in start order ---------------------------------------------------------

    def services(self) -> list[Service]:
        o = self.opts
        b = self.bin
        pg = self.pg_dir()
        jaeger_env = self.base_env() | {
            "JAEGER_OTLP_GRPC_ENDPOINT": f"{HOST}:{self.ports['jaeger_otlp_grpc']}",
            "JAEGER_OTLP_HTTP_ENDPOINT": f"{HOST}:{self.ports['jaeger_otlp_http']}",
            "JAEGER_QUERY_HTTP_ENDPOINT": f"{HOST}:{self.ports['jaeger_query_http']}",
            "JAEGER_QUERY_GRPC_ENDPOINT": f"{HOST}:{self.ports['jaeger_query_grpc']}",
            "JAEGER_HEALTH_ENDPOINT": f"{HOST}:{self.ports['jaeger_health']}",
            "JAEGER_TELEMETRY_HOST": HOST,
            "JAEGER_METRICS_PORT": str(self.ports["jaeger_metrics"]),
            "JAEGER_BADGER_DIR": str(self.data / "jaeger"),
        }
        services = [
            Service(
                name="postgres",
                argv=[str(self.pg_bin() / "postgres"), "-D", str(pg / "data"),
                      "-c", f"listen_addresses={HOST}", "-p", str(o.pg_port),
                      "-c", f"unix_socket_directories={pg / 'socket'}",
                      # A throw-away development database: trade durability for speed.
                      "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                user=postgres.system_user(),
                prepare=self.postgres.prepare,
                health=lambda: process.command_probe(
                    ["pg_isready", "-q", "-h", HOST, "-p", str(o.pg_port)]),
                after_healthy=self.postgres.create_database,
                urls={"PostgreSQL": f"postgresql://hitl:hitl@{HOST}:{o.pg_port}/hitl"},
                ports=(o.pg_port,),
            ),
            Service(
                name="redis",
                # No persistence: a cache and rate-limit store for tests.
                argv=[shutil.which("redis-server") or "redis-server", "--bind", HOST,
                      "--port", str(o.redis_port), "--save", "", "--appendonly", "no",
                      "--daemonize", "no", "--dir", str(self.data / "redis")],
                prepare=lambda: (self.data / "redis").mkdir(parents=True, exist_ok=True),
                health=lambda: process.redis_probe(HOST, o.redis_port),
                urls={"Redis": f"redis://{HOST}:{o.redis_port}/0"},
                ports=(o.redis_port,),
            ),
            Service(
                name="jaeger",
                argv=[b["jaeger"], f"--config=file:{REPO_ROOT / 'jaeger' / 'config.yaml'}"],
                env=jaeger_env,
                health=lambda: process.http_probe(f"http://{HOST}:{self.ports['jaeger_health']}/status")
                or process.http_probe(f"http://{HOST}:{self.ports['jaeger_query_http']}/api/services"),
                urls={"Jaeger (API, UI placeholder)": f"http://{HOST}:{self.ports['jaeger_query_http']}"},
                ports=tuple(port for name, port in self.ports.items() if name.startswith("jaeger_")),
            ),
            Service(
                name="victorialogs",
                argv=[b["victoria-logs"], f"-httpListenAddr={HOST}:{self.ports['victorialogs']}",
                      f"-storageDataPath={self.data / 'victorialogs'}", *victorialogs_flags()],
                health=lambda: process.http_probe(f"http://{HOST}:{self.ports['victorialogs']}/health",
                                                  expect_body="OK"),
                urls={"VictoriaLogs": f"http://{HOST}:{self.ports['victorialogs']}/select/vmui/"},
                ports=(self.ports["victorialogs"],),
            ),
            *(self.collector_services() if o.topology == "single" else self.ha_collector_services()),
            *self.prometheus_services(),
            *self.alertmanager_services(),
        ]
        if o.start_app:
            services += [
                Service(
                    name="app",
                    argv=[o.python, "-m", "app"],
                    env=self.app_env(),
                    health=lambda: process.http_probe(f"http://{HOST}:{o.app_port}/health/ready"),
                    urls={"HITL review app": f"http://{HOST}:{o.app_port}"},
                    ports=(o.app_port,),
                ),
                Service(
                    name="simulator",
                    argv=[o.python, "-m", "simulator"],
                    # The keys can only be made once the app has migrated the database, so
                    # they are made by prepare and the environment is read after it.
                    env=self.simulator_env,
                    prepare=self.create_simulator_keys,
                    health=lambda: None,  # no port: "healthy" while its process lives
                ),
            ]
        return services

    # -- collectors, Prometheus and Alertmanager of each topology ------------------------------

    def collector_env(self, p: dict[str, int], name: str) -> dict[str, str]:
        """The environment of a collector (single, gateway or agent) with ports p; its disk queues
        live in data/<name>, and name is its collector.instance.id."""
        return self.base_env() | {
            "OTELCOL_INSTANCE_ID": name,
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"{HOST}:{p['otlp_grpc']}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"{HOST}:{p['otlp_http']}",
            "OTELCOL_OTLP_AUTH_GRPC_ENDPOINT": f"{HOST}:{p['otlp_auth_grpc']}",
            "OTELCOL_OTLP_AUTH_HTTP_ENDPOINT": f"{HOST}:{p['otlp_auth_http']}",
            "OTELCOL_PROMETHEUS_ENDPOINT": f"{HOST}:{p['otelcol_prometheus']}",
            "OTELCOL_TELEMETRY_HOST": HOST,
            "OTELCOL_TELEMETRY_PORT": str(p["otelcol_telemetry"]),
            "OTELCOL_HEALTH_ENDPOINT": f"{HOST}:{p['otelcol_health']}",
            "OTELCOL_ZPAGES_ENDPOINT": f"{HOST}:{p['otelcol_zpages']}",
            "OTELCOL_STORAGE_DIR": str(self.data / name / "file_storage"),
            "OTELCOL_INGEST_TOKEN_FILE": str(self.token_file),
            "OTELCOL_JAEGER_OTLP_TRACES_ENDPOINT": f"http://{HOST}:{self.ports['jaeger_otlp_http']}/v1/traces",
            "OTELCOL_VICTORIALOGS_OTLP_LOGS_ENDPOINT":
                f"http://{HOST}:{self.ports['victorialogs']}/insert/opentelemetry/v1/logs",
            "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": self.opts.flush_interval,
        }

    def _otlp_urls(self) -> dict[str, str]:
        p = self.ports
        return {
            "OTLP gRPC / HTTP": f"{HOST}:{p['otlp_grpc']} / http://{HOST}:{p['otlp_http']}",
            "OTLP with bearer token (gRPC / HTTP)":
                f"{HOST}:{p['otlp_auth_grpc']} / http://{HOST}:{p['otlp_auth_http']}  (token: {self.token_file})",
        }

    @staticmethod
    def collector_ports(p: dict[str, int]) -> tuple[int, ...]:
        return tuple(p[slot] for slot in COLLECTOR_SLOTS)

    def collector_services(self) -> list[Service]:
        """One collector does everything (otel-collector/config.yaml)."""
        return [Service(
            name="otelcol",
            argv=[self.bin["otelcol-hitl"], f"--config=file:{REPO_ROOT / 'otel-collector' / 'config.yaml'}"],
            env=self.collector_env(self.ports, "otelcol"),
            prepare=lambda: local_secrets.ensure_token(self.token_file, "ingest-"),
            health=lambda: process.http_probe(f"http://{HOST}:{self.ports['otelcol_health']}/"),
            urls=self._otlp_urls() | {
                "Collector metrics for Prometheus": f"http://{HOST}:{self.ports['otelcol_prometheus']}/metrics"},
            ports=self.collector_ports(self.ports),
        )]

    def gateway_ports(self, i: int) -> dict[str, int]:
        return ha.gateway_ports(i, self.opts.port_offset)

    def ha_collector_services(self) -> list[Service]:
        """N gateways (config.yaml, each its own ports, disk queues and collector.instance.id),
        then the agent on the single collector's ports (agent.yaml with a static resolver)."""
        services = []
        for i in range(self.opts.gateways):
            name = ha.service_name("gateway", i)
            p = self.gateway_ports(i)
            services.append(Service(
                name=name,
                argv=[self.bin["otelcol-hitl"], f"--config=file:{REPO_ROOT / 'otel-collector' / 'config.yaml'}"],
                env=self.collector_env(p, name),
                prepare=lambda: local_secrets.ensure_token(self.token_file, "ingest-"),
                health=lambda p=p: process.http_probe(f"http://{HOST}:{p['otelcol_health']}/"),
                urls={f"Gateway {i} metrics for Prometheus": f"http://{HOST}:{p['otelcol_prometheus']}/metrics"},
                ports=self.collector_ports(p),
            ))
        resolver = self.config / "otelcol-agent-gateways.yaml"
        services.append(Service(
            name="agent",
            argv=[self.bin["otelcol-hitl-agent"], f"--config=file:{REPO_ROOT / 'otel-collector' / 'agent.yaml'}",
                  f"--config=file:{resolver}"],
            env=self.collector_env(self.ports, "agent"),
            prepare=lambda: (local_secrets.ensure_token(self.token_file, "ingest-"), self.write_agent_resolver(resolver)),
            health=lambda: process.http_probe(f"http://{HOST}:{self.ports['otelcol_health']}/"),
            urls=self._otlp_urls(),
            ports=self.collector_ports(self.ports),
        ))
        return services

    def write_agent_resolver(self, path: Path) -> None:
        """The agent's second config file: a static list of the gateways instead of DNS."""
        hosts = ", ".join(f"{HOST}:{self.gateway_ports(i)['otlp_grpc']}" for i in range(self.opts.gateways))
        lines = ["# Written by python -m stack up --topology ha: the gateways of this run (static resolver).",
                 "exporters:"]
        for exporter in ("load_balancing/by-trace", "load_balancing/by-resource"):
            lines += [f"  {exporter}:", "    resolver:", "      dns: null", "      static:",
                      f"        hostnames: [{hosts}]"]
        path.parent.mkdir(parents=True, exist_ok=True)
        process.write_file(path, "\n".join(lines) + "\n")

    def prometheus_port(self, replica: int) -> int:
        return ha.prometheus_port(replica, self.opts.port_offset)

    def prometheus_services(self) -> list[Service]:
        replicas = ha.PROMETHEUS_REPLICAS if self.opts.topology == "ha" else 1
        services = []
        for r in range(replicas):
            name = ha.service_name("prometheus", r)
            url = f"http://{HOST}:{self.prometheus_port(r)}"
            services.append(Service(
                name=name,
                argv=[self.bin["prometheus"], f"--config.file={self.config / name / 'prometheus.yml'}",
                      f"--storage.tsdb.path={self.data / name}",
                      f"--web.listen-address={HOST}:{self.prometheus_port(r)}",
                      "--enable-feature=exemplar-storage", "--web.enable-lifecycle"],
                env=self.base_env() | {"PROMETHEUS_REPLICA": str(r)},
                prepare=lambda r=r: self.render_prometheus(r),
                health=lambda url=url: process.prometheus_target_probe(url, prometheus_config.EXPORTER_JOB),
                urls={f"Prometheus{f' replica {r}' if replicas > 1 else ''} (API, no UI in this build)": url},
                ports=(self.prometheus_port(r),),
            ))
        return services

    def render_prometheus(self, replica: int = 0) -> None:
        target = self.config / ha.service_name("prometheus", replica)
        offset = self.opts.port_offset
        if self.opts.topology == "single":
            prometheus_config.render_dir(target, self.opts, prometheus_config.load(),
                                         targets=prometheus_config.native_targets(offset))
            return
        # This run's number of gateways (prometheus-ha.yml has compose's three).
        config = prometheus_config.ha_shape(prometheus_config.load(), self.opts.gateways)
        prometheus_config.render_dir(target, self.opts, config,
                                     targets=prometheus_config.native_targets(offset, self.opts.gateways))

    def alertmanager_services(self) -> list[Service]:
        """One Alertmanager without gossip, or a cluster of three gossiping on loopback."""
        count = ha.ALERTMANAGERS if self.opts.topology == "ha" else 1
        offset = self.opts.port_offset
        services = []
        for i in range(count):
            name = ha.service_name("alertmanager", i)
            web, gossip = ha.alertmanager_ports(i, offset)
            if count == 1:
                # Single instance: no HA gossip listener (it would bind 0.0.0.0:9094).
                cluster = ["--cluster.listen-address="]
            else:
                cluster = [f"--cluster.listen-address={HOST}:{gossip}", f"--cluster.advertise-address={HOST}:{gossip}",
                           *ha.ALERTMANAGER_CLUSTER_FLAGS,
                           *(f"--cluster.peer={HOST}:{ha.alertmanager_ports(j, offset)[1]}"
                             for j in range(count) if j != i)]
            services.append(Service(
                name=name,
                argv=[self.bin["alertmanager"], f"--config.file={self.config / 'alertmanager' / 'alertmanager.yml'}",
                      f"--storage.path={self.data / name}", f"--web.listen-address={HOST}:{web}", *cluster],
                prepare=self.render_alertmanager,
                health=lambda web=web: process.http_probe(f"http://{HOST}:{web}/-/ready"),
                urls={f"Alertmanager{f' {i}' if count > 1 else ''} (API)": f"http://{HOST}:{web}/api/v2/status"},
                ports=(web,) if count == 1 else (web, gossip),
            ))
        return services

    def render_alertmanager(self) -> None:
        """The config with its secret files in the run dir. Development values are written when a
        file is missing: with an alert sink the notifications reach it, otherwise they go nowhere
        (Alertmanager's API still shows every alert)."""
        target_dir = self.config / "alertmanager"
        secrets_dir = target_dir / "secrets"
        local_secrets.write_alertmanager_secrets(secrets_dir, self.opts.alert_sink)
        source = (REPO_ROOT / "alertmanager" / "alertmanager.yml").read_text()
        process.write_file(target_dir / "alertmanager.yml", render_alertmanager_config(source, self.opts, secrets_dir))

