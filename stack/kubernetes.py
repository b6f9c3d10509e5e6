"""The Kubernetes deployment (deploy/kubernetes), generated from the files native and compose run.

    python -m generate                rewrites deploy/kubernetes (--check: fails on drift)
    kubectl apply --server-side -k deploy/kubernetes/overlays/prod     (docs/kubernetes.md)

A kustomize base and two overlays. The base is the whole system of compose.ha.yaml (the HA shape):
the review service (Deployment, PDB, HPA; it migrates the schema at start), the agent collector on
every node (DaemonSet behind a node-local Service named otel-collector, the address the app and
compose use), the gateways (StatefulSet behind the headless Service otel-gateway, the name the
agent's DNS resolver reads), Jaeger and VictoriaLogs (StatefulSets on PVCs), two Prometheus
replicas and three gossiping Alertmanagers (StatefulSets), Grafana, and NetworkPolicies. The
`dev` overlay adds PostgreSQL and Redis; `prod` expects a managed database and Redis (Secrets).

Why generated: every config file reaches the cluster as a ConfigMap built from the repository's
file (never copied by hand); images, replica counts, thresholds and flags come from versions.env,
stack/ha.py, thresholds.yaml and victorialogs/victoria-logs.flags. The Services carry compose's
service names, so the configs' defaults (jaeger:4318, victorialogs:9428, prometheus:9090, ...)
resolve unchanged in the namespace. Only Prometheus' targets differ (StatefulSet pod names and
DNS discovery): stack/prometheus_config.py derives them from the HA shape.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import yaml

from stack import ha, prometheus_config, yaml_dump
from stack.generated import yaml_header
from stack.ports import IN_CONTAINER as C
from stack.sources import read_versions, victorialogs_flags

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = REPO_ROOT / "deploy" / "kubernetes"
PART_OF = "hitl"
NAMESPACES = {"prod": "hitl", "dev": "hitl-dev"}
HEADER = yaml_header("the repository's sources by stack/kubernetes.py")

# Secrets: name -> {key: (variable in .env, what it is)}. None of them is in the repository;
# `python -m stack k8s-secrets` builds them from the same .env compose reads (docs/kubernetes.md).
SECRETS: dict[str, dict[str, tuple[str, str]]] = {
    "hitl-database": {
        "url": ("DATABASE_URL", "SQLAlchemy URL without the password (dev: the in-cluster PostgreSQL)"),
        "password": ("POSTGRES_PASSWORD", "the database user's password (read from a file)"),
    },
    "hitl-code-host": {"token": ("CODE_HOST_TOKEN", "the code host's API token (optional)")},
    "hitl-redis": {"url": ("REDIS_URL", "redis:// URL of the managed Redis (prod overlay only)")},
    "otelcol": {
        "redaction-hmac-key": ("OTELCOL_REDACTION_HMAC_KEY", "key of the collectors' HMAC redaction, >= 32 characters"),
        "ingest-tokens": ("OTELCOL_INGEST_TOKEN", "bearer token(s) of the authenticated OTLP receiver"),
    },
    "grafana": {"admin-password": ("GRAFANA_ADMIN_PASSWORD", "Grafana's admin password")},
    "alertmanager-receivers": {
        "pagerduty-routing-key": ("ALERTMANAGER_PAGERDUTY_ROUTING_KEY", "PagerDuty Events v2 routing key"),
        "slack-webhook-url": ("ALERTMANAGER_SLACK_WEBHOOK_URL", "Slack incoming webhook URL"),
        "smtp-password": ("ALERTMANAGER_SMTP_PASSWORD", "SMTP password of the e-mail receiver"),
        "heartbeat-url": ("ALERTMANAGER_HEARTBEAT_URL", "dead man's switch URL (Watchdog)"),
    },
}
OPTIONAL_SECRETS = {("hitl-code-host", "token")}
DEV_DATABASE_URL = f"postgresql+psycopg://hitl@postgres:{C['postgres']}/hitl"
DEV_REDIS_URL = f"redis://redis:{C['redis']}/0"

# Image users (uid = gid): the ones the images declare (Dockerfile, otel-collector/Dockerfile,
# upstream images: nobody for Prometheus and Alertmanager, 10001 for Jaeger, 472 for Grafana, 999
# for the Debian-based postgres and redis images). VictoriaLogs' distroless image runs as root by
# default; it runs here as nobody, with its data on a volume that fsGroup makes writable.
USERS = {"app": 10001, "otelcol": 10001, "jaeger": 10001, "victorialogs": 65534, "prometheus": 65534,
         "alertmanager": 65534, "grafana": 472, "postgres": 999, "redis": 999}


# The stores' volumes, and the share of each their size caps may fill (the rest: the WAL,
# compaction's temporary copies, filesystem overhead). A cap far below the volume would cut the
# retention window (31 days for the SLOs) long before the disk is full. Prometheus: 31 days at
# the HPA's 6 app replicas is ~29 GiB by docs/capacity.md's sizing (2 bytes a sample).
STORE_VOLUME_GIB = {"prometheus": 40, "victorialogs": 20}
STORE_CAP_SHARE = 0.85


def store_size_cap_gib(store: str) -> int:
    return int(STORE_VOLUME_GIB[store] * STORE_CAP_SHARE)


# -- sources -----------------------------------------------------------------------------------

def app_version() -> str:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]


def images() -> dict[str, str]:
    """Every image, at the tag versions.env pins (ours: the app's version, the collector's)."""
    v = read_versions()
    return {
        "app": f"hitl-review:{app_version()}",
        "gateway": f"hitl-otelcol:{v['OTELCOL_VERSION']}",
        "agent": f"hitl-otelcol-agent:{v['OTELCOL_VERSION']}",
        "jaeger": f"docker.io/jaegertracing/jaeger:{v['JAEGER_VERSION']}",
        "victorialogs": f"docker.io/victoriametrics/victoria-logs:v{v['VICTORIALOGS_VERSION']}",
        "prometheus": f"docker.io/prom/prometheus:v{v['PROMETHEUS_VERSION']}",
        "alertmanager": f"docker.io/prom/alertmanager:v{v['ALERTMANAGER_VERSION']}",
        # grafana/Dockerfile: the VictoriaLogs datasource plugin baked in (no download at start).
        "grafana": f"hitl-grafana:{v['GRAFANA_VERSION']}-{v['VICTORIALOGS_DATASOURCE_VERSION']}",
        "postgres": f"docker.io/library/postgres:{v['POSTGRES_VERSION']}",
        "redis": f"docker.io/library/redis:{v['REDIS_VERSION']}",
    }


def limits_of(service: str) -> dict[str, float]:
    """thresholds.yaml `resources`: the limits the utilisation alerts divide by (HighCPUUsage and
    HighMemoryUsage for the app, OtelCollectorNearCapacity for each collector)."""
    res = yaml.safe_load((REPO_ROOT / "thresholds.yaml").read_text())["resources"][service]
    return {"cpu": res["cpu_cores"], "memory": res["memory_bytes"]}


def app_resources() -> dict[str, float]:
    return limits_of("hitl-review")


def limited(service: str, cpu_request: str, **disk: str) -> dict:
    res = limits_of(service)
    return resources(cpu_request, f"{res['memory'] // (1 << 20)}Mi", f"{res['cpu']:g}", **disk)


# One queued item (a span, log record or metric point as the collector's persistent queue stores
# it, OTLP protobuf): an upper estimate for the app's spans (ids, name, a dozen short attributes).
QUEUED_ITEM_BYTES = 512


def agent_queue_bytes() -> int:
    """What agent.yaml's disk queues may hold: queue_size batches of up to send_batch_size items,
    for each exporter that queues on file_storage (a long gateway outage fills them)."""
    config = yaml.safe_load(_read("otel-collector/agent.yaml"))
    batch = config["processors"]["batch"]["send_batch_size"]
    return sum(e["sending_queue"]["queue_size"] * batch * QUEUED_ITEM_BYTES for e in config["exporters"].values()
               if isinstance(e, dict) and e.get("sending_queue", {}).get("storage") == "file_storage")


def gibibytes(n: int) -> str:
    return f"{-(-n // (1 << 30))}Gi"


def _read(rel: str) -> str:
    return (REPO_ROOT / rel).read_text()


# -- StatefulSet pods ----------------------------------------------------------

def peer(kind: str, i: int, port: int) -> str:
    """A StatefulSet pod's stable address: <name>-<i>.<name>-headless (in the same namespace)."""
    return f"{kind}-{i}.{kind}-headless:{port}"


# -- object helpers ----------------------------------------------------------------------------

def labels(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": PART_OF}


def selector(name: str) -> dict[str, str]:
    if name == APP:  # the API's pods only
        return {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": "api"}
    return {"app.kubernetes.io/name": name}


def meta(name: str, component: str, **extra) -> dict:
    return {"name": name, "labels": labels(name, component), **extra}


def config_map(name: str, component: str, files: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, component), "data": files}


def checksum(*maps: dict) -> str:
    """Of the ConfigMaps a pod mounts: in its template, so a changed config rolls the pods."""
    return hashlib.sha256(json.dumps([m["data"] for m in maps], sort_keys=True).encode()).hexdigest()[:16]


def pod_security(user: str, *, fs_group: bool = False) -> dict:
    uid = USERS[user]
    ctx = {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "seccompProfile": {"type": "RuntimeDefault"}}
    if fs_group:
        ctx["fsGroup"] = uid
        ctx["fsGroupChangePolicy"] = "OnRootMismatch"
    return ctx


CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}}


# Ephemeral storage of a container whose root filesystem is read-only: its logs (the kubelet
# rotates them at 5 x 10 MiB by default) and any disk-backed emptyDir. Declared, so the kubelet
# evicts a pod that outgrows its own limit rather than whichever pods it ranks first under node
# disk pressure.
LOGS_STORAGE = {"request": "64Mi", "limit": "256Mi"}


def resources(cpu_request: str, memory: str, cpu_limit: str, *, disk_request: str = LOGS_STORAGE["request"],
              disk_limit: str = LOGS_STORAGE["limit"]) -> dict:
    # Memory request = limit (no overcommit: the memory_limiter and GOMEMLIMIT-like settings work
    # in percentages of the limit); CPU limited too, the alerts divide by it.
    return {"requests": {"cpu": cpu_request, "memory": memory, "ephemeral-storage": disk_request},
            "limits": {"cpu": cpu_limit, "memory": memory, "ephemeral-storage": disk_limit}}


def http_probe(path: str, port: int | str, *, period: int = 10, failures: int = 3, delay: int = 0) -> dict:
    probe = {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "timeoutSeconds": 5,
             "failureThreshold": failures}
    if delay:
        probe["initialDelaySeconds"] = delay
    return probe


def exec_probe(argv: list[str], *, period: int = 10, failures: int = 3) -> dict:
    return {"exec": {"command": argv}, "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures}


# A store recovering after a crash (replaying its WAL, a disk queue, Badger's value log) answers
# no probe for minutes; until its startup probe passes the liveness probe does not run, so a long
# recovery is not killed and begun again. 10 minutes for the stores, 5 for the rest.
STORE_STARTUP = {"period": 10, "failures": 60}
STARTUP = {"period": 5, "failures": 60}


def ports(**named: int) -> list[dict]:
    return [{"name": name.replace("_", "-"), "containerPort": port} for name, port in named.items()]


def service(name: str, component: str, sel: str, port_map: dict[str, int], *, headless: bool = False,
            extra: dict | None = None) -> dict:
    spec = {"selector": selector(sel),
            "ports": [{"name": n.replace("_", "-"), "port": p, "targetPort": p} for n, p in port_map.items()]}
    if headless:
        spec["clusterIP"] = "None"
    spec.update(extra or {})
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, component), "spec": spec}


def pvc_template(name: str, size: str) -> dict:
    return {"metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}


def spread_over_nodes(name: str, when_unsatisfiable: str) -> list[dict]:
    return [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": when_unsatisfiable,
             "labelSelector": {"matchLabels": selector(name)}}]


def disruption_budget(name: str, component: str) -> dict:
    # One pod at a time, whatever the count: a drain never takes two replicas of a quorum or of
    # the HA pairs (minAvailable 1 would let it take all but one).
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(name, component),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(name)}}}


def statefulset(name: str, component: str, replicas: int, pod: dict, *, service_name: str,
                claims: list[dict], annotations: dict | None = None) -> dict:
    if replicas > 1:
        # Required: two replicas of an HA set on one node are one failure. The dev overlay (one
        # node) relaxes it to ScheduleAnyway (files()).
        pod = {**pod, "topologySpreadConstraints": spread_over_nodes(name, "DoNotSchedule")}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta(name, component),
            "spec": {"replicas": replicas, "serviceName": service_name, "selector": {"matchLabels": selector(name)},
                     # Peers, not a sequence: all start at once (the ordered default would wait
                     # for pod-0 to be Ready before creating pod-1).
                     "podManagementPolicy": "Parallel",
                     "updateStrategy": {"type": "RollingUpdate"},
                     "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                     "template": pod_template(name, component, pod, annotations),
                     "volumeClaimTemplates": claims}}


def pod_template(name: str, component: str, pod: dict, annotations: dict | None = None) -> dict:
    metadata: dict = {"labels": labels(name, component)}
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": {"automountServiceAccountToken": False, **pod}}


def secret_volume(volume: str, secret: str, items: dict[str, str] | None = None, *, optional: bool = False) -> dict:
    # The kubelet writes the files as root; readable by the pod's user only through the pod's
    # fsGroup, whose group the kubelet gives them (with group read) - so every pod that mounts one
    # sets fsGroup. Nobody else on the node reads them.
    # https://github.com/kubernetes/kubernetes/blob/master/pkg/volume/volume_linux.go
    src: dict = {"secretName": secret, "defaultMode": 0o440}
    if items:
        src["items"] = [{"key": k, "path": p} for k, p in items.items()]
    if optional:
        src["optional"] = True
    return {"name": volume, "secret": src}


def field_env(name: str, path: str) -> dict:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


TMP = {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}


# -- the review service ------------------------------------------------------------------------

APP = "hitl-review"


def app_env() -> list[dict]:
    return [
        {"name": "APP_ENV", "value": "production"},
        {"name": "APP_HOST", "value": "0.0.0.0"},
        {"name": "APP_PORT", "value": str(C["app"])},
        secret_env("DATABASE_URL", "hitl-database", "url"),
        {"name": "DATABASE_PASSWORD_FILE", "value": "/run/secrets/hitl/database/password"},
        {"name": "CODE_HOST_TOKEN_FILE", "value": "/run/secrets/hitl/code-host/token"},
        {"name": "OTEL_SERVICE_NAME", "value": APP},
        # The agent on this pod's node (Service otel-collector, internalTrafficPolicy: Local).
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": f"http://otel-collector:{C['otlp_grpc']}"},
        {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "grpc"},
        # Which pod and node sent the telemetry (the app adds service.instance.id itself).
        field_env("K8S_POD_NAME", "metadata.name"),
        field_env("K8S_NODE_NAME", "spec.nodeName"),
        {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "k8s.pod.name=$(K8S_POD_NAME),k8s.node.name=$(K8S_NODE_NAME)"},
    ]


APP_SECRET_VOLUMES = [
    secret_volume("database", "hitl-database", {"password": "password"}),
    secret_volume("code-host", "hitl-code-host", {"token": "token"}, optional=True),
]
APP_SECRET_MOUNTS = [
    {"name": "database", "mountPath": "/run/secrets/hitl/database", "readOnly": True},
    {"name": "code-host", "mountPath": "/run/secrets/hitl/code-host", "readOnly": True},
]


def app_container() -> dict:
    # The image's command serves, migrating first under a PostgreSQL advisory lock
    # (app/migrations/env.py): replicas starting together take turns, so no migration Job (whose
    # immutable template would make any change within a version fail to apply).
    return {"name": "app", "image": images()["app"], "imagePullPolicy": "IfNotPresent",
            "env": app_env(), "securityContext": CONTAINER_SECURITY,
            # thresholds.yaml: one uvicorn worker, its CPU and memory limit; requested in full, so
            # the HPA's percentage is of one core (docs/capacity.md: a process carries ~90 req/s).
            "resources": limited(APP, f"{app_resources()['cpu']:g}"),
            "volumeMounts": [TMP_MOUNT, *APP_SECRET_MOUNTS],
            "ports": ports(http=C["app"]),
            "readinessProbe": http_probe("/health/ready", "http", period=5),
            "livenessProbe": http_probe("/health/live", "http", period=10, failures=3),
            # /health/live answers once the migration is done: 5 min for a long migration, or for
            # waiting on the replicas that hold the lock before this one.
            "startupProbe": http_probe("/health/live", "http", period=5, failures=60),
            # Leave the endpoints before uvicorn stops accepting (it then drains for 5 s).
            "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}}


def app_objects() -> list[dict]:
    pod = {"securityContext": pod_security("app", fs_group=True),
           "terminationGracePeriodSeconds": 30,
           # Preferred: stateless, and the HPA may want more replicas than there are nodes.
           "topologySpreadConstraints": spread_over_nodes(APP, "ScheduleAnyway"),
           "containers": [app_container()],
           "volumes": [TMP, *APP_SECRET_VOLUMES]}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(APP, "api"),
                  # No `replicas`: the HPA owns the count (each apply of one would reset it); a
                  # new Deployment starts at 1 and the HPA raises it to minReplicas at once.
                  "spec": {"selector": {"matchLabels": selector(APP)},
                           "revisionHistoryLimit": 5,
                           # A new pod is Ready before an old one goes: capacity never drops.
                           "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                           "template": pod_template(APP, "api", pod)}}
    pdb = disruption_budget(APP, "api")
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta(APP, "api"),
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                    "minReplicas": 2, "maxReplicas": 6,
                    # 60% of a core: the headroom rule of docs/capacity.md (past ~90 req/s a
                    # process collapses rather than slows down).
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}}
    svc = service(APP, "api", APP, {"http": C["app"]})
    return [deployment, pdb, hpa, svc]


# -- collectors --------------------------------------------------------------------------------

GATEWAY, AGENT = ha.GATEWAY_ALIAS, ha.AGENT_HOST
NODE_CRITICAL = "hitl-node-critical"
COLLECTOR_PORTS = dict(otlp_grpc=C["otlp_grpc"], otlp_http=C["otlp_http"], otlp_auth_grpc=C["otlp_auth_grpc"],
                       otlp_auth_http=C["otlp_auth_http"], telemetry=C["otelcol_telemetry"], health=C["otelcol_health"])


def collector_container(image: str, config: str, env: list[dict], *, prometheus: bool, disk: dict | None = None) -> dict:
    p = dict(COLLECTOR_PORTS, **({"prometheus": C["otelcol_prometheus"]} if prometheus else {}))
    return {"name": "otelcol", "image": images()[image], "imagePullPolicy": "IfNotPresent",
            "args": [f"--config=file:/etc/hitl/otel-collector/{config}"],
            "env": [secret_env("OTELCOL_REDACTION_HMAC_KEY", "otelcol", "redaction-hmac-key"),
                    {"name": "OTELCOL_INGEST_TOKEN_FILE", "value": "/run/secrets/hitl/otelcol/ingest-tokens"}, *env],
            "ports": ports(**p), "securityContext": CONTAINER_SECURITY,
            # thresholds.yaml: memory_limiter works in percentages of the memory limit, and
            # OtelCollectorNearCapacity divides by the CPU limit.
            "resources": limited("otel-collector", "200m", **(disk or {})),
            "readinessProbe": http_probe("/", "health", period=5),
            "livenessProbe": http_probe("/", "health", period=10, failures=6),
            "startupProbe": http_probe("/", "health", **STARTUP),
            "volumeMounts": [{"name": "config", "mountPath": "/etc/hitl/otel-collector", "readOnly": True},
                             {"name": "ingest-tokens", "mountPath": "/run/secrets/hitl/otelcol", "readOnly": True},
                             {"name": "file-storage", "mountPath": "/var/lib/otelcol/file_storage"}]}


def collector_objects(configs: dict[str, dict]) -> list[dict]:
    cfg = configs["otel-collector"]
    volumes = [{"name": "config", "configMap": {"name": "otel-collector"}},
               secret_volume("ingest-tokens", "otelcol", {"ingest-tokens": "ingest-tokens"})]
    gateway_pod = {"securityContext": pod_security("otelcol", fs_group=True),
                   # A SIGTERM'd gateway flushes its batches into the disk queue.
                   "terminationGracePeriodSeconds": 30,
                   "containers": [collector_container("gateway", "config.yaml", [
                       # collector.instance.id: the pod's stable name (otel-gateway-0, ...).
                       field_env("OTELCOL_INSTANCE_ID", "metadata.name")], prometheus=True)],
                   "volumes": volumes}
    gateway = statefulset(GATEWAY, "gateway", ha.DEFAULT_GATEWAYS, gateway_pod, service_name=GATEWAY,
                          claims=[pvc_template("file-storage", "2Gi")],
                          annotations={"checksum/config": checksum(cfg)})
    # The emptyDir holds what the queues may hold, and the container's limit adds its logs: a long
    # gateway outage fills the queue without getting the pod evicted (which deletes the queue).
    queue = agent_queue_bytes()
    agent_disk = {"disk_limit": gibibytes(queue + (1 << 30))}
    agent_pod = {"securityContext": pod_security("otelcol", fs_group=True),
                 "terminationGracePeriodSeconds": 30,
                 # Under node pressure the kubelet evicts lower priorities first, and the
                 # scheduler makes room for the agent on a full node: it carries every pod's telemetry.
                 "priorityClassName": NODE_CRITICAL,
                 "containers": [collector_container("agent", "agent.yaml", [
                     field_env("OTELCOL_INSTANCE_ID", "spec.nodeName")], prometheus=False, disk=agent_disk)],
                 # The queue survives a container restart; a deleted pod's queue is lost
                 # (a hostPath would survive it, but the restricted Pod Security level forbids it).
                 "volumes": [*volumes, {"name": "file-storage", "emptyDir": {"sizeLimit": gibibytes(queue)}}]}
    agent = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta(AGENT, "agent"),
             "spec": {"selector": {"matchLabels": selector(AGENT)},
                      "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                      "template": pod_template(AGENT, "agent", agent_pod, {"checksum/config": checksum(cfg)})}}
    otlp = {k: v for k, v in COLLECTOR_PORTS.items() if k.startswith("otlp")}
    priority = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": meta(NODE_CRITICAL, "agent"),
                # Below the built-in system-node-critical (2,000,001,000), above any workload's default 0.
                "value": 1_000_000, "globalDefault": False, "preemptionPolicy": "PreemptLowerPriority",
                "description": "The node's telemetry agent: evicted last, scheduled first."}
    return [
        priority, agent,
        # What the services send to: the agent on their own node (no hop to another node).
        service("otel-collector", "agent", AGENT, otlp, extra={"internalTrafficPolicy": "Local"}),
        # Prometheus finds every agent here (DNS).
        service(AGENT, "agent", AGENT, {"telemetry": C["otelcol_telemetry"]}, headless=True),
        gateway, disruption_budget(GATEWAY, "gateway"),
        # The agents' DNS resolver and Prometheus read every ready gateway from this name.
        service(GATEWAY, "gateway", GATEWAY, {"otlp-grpc": C["otlp_grpc"], "telemetry": C["otelcol_telemetry"],
                                               "prometheus": C["otelcol_prometheus"]}, headless=True),
    ]


# -- stores ------------------------------------------------------------------------------------

def jaeger_objects(configs: dict[str, dict]) -> list[dict]:
    pod = {"securityContext": pod_security("jaeger", fs_group=True),
           "containers": [{
               "name": "jaeger", "image": images()["jaeger"], "imagePullPolicy": "IfNotPresent",
               "args": ["--config=file:/etc/hitl/jaeger/config.yaml"],
               "env": [{"name": "JAEGER_BADGER_DIR", "value": "/var/lib/jaeger"}],
               "ports": ports(otlp_grpc=C["jaeger_otlp_grpc"], otlp_http=C["jaeger_otlp_http"], query_http=C["jaeger_query_http"],
                              query_grpc=C["jaeger_query_grpc"], health=C["jaeger_health"], metrics=C["jaeger_metrics"]),
               "securityContext": CONTAINER_SECURITY, "resources": resources("500m", "1Gi", "2"),
               "readinessProbe": http_probe("/status", "health", period=5),
               "livenessProbe": http_probe("/status", "health", failures=6),
               "startupProbe": http_probe("/status", "health", **STORE_STARTUP),
               "volumeMounts": [{"name": "config", "mountPath": "/etc/hitl/jaeger", "readOnly": True},
                                {"name": "data", "mountPath": "/var/lib/jaeger"}, TMP_MOUNT]}],
           "volumes": [{"name": "config", "configMap": {"name": "jaeger"}}, TMP]}
    return [statefulset("jaeger", "traces", 1, pod, service_name="jaeger", claims=[pvc_template("data", "20Gi")],
                        annotations={"checksum/config": checksum(configs["jaeger"])}),
            service("jaeger", "traces", "jaeger", {"otlp-grpc": C["jaeger_otlp_grpc"], "otlp-http": C["jaeger_otlp_http"],
                                                   "query-http": C["jaeger_query_http"],
                                                   "query-grpc": C["jaeger_query_grpc"], "metrics": C["jaeger_metrics"]})]


VICTORIALOGS_CAP_FLAG = "-retention.maxDiskSpaceUsageBytes="


def victorialogs_objects() -> list[dict]:
    pod = {"securityContext": pod_security("victorialogs", fs_group=True),
           "containers": [{
               "name": "victorialogs", "image": images()["victorialogs"], "imagePullPolicy": "IfNotPresent",
               # The same flags as compose: the two that differ, then victoria-logs.flags.
               "args": [f"-httpListenAddr=:{C['victorialogs']}", "-storageDataPath=/victoria-logs-data",
                        *[VICTORIALOGS_CAP_FLAG + f"{store_size_cap_gib('victorialogs')}GiB" if f.startswith(VICTORIALOGS_CAP_FLAG) else f
                          for f in victorialogs_flags()]],
               "ports": ports(http=C["victorialogs"]), "securityContext": CONTAINER_SECURITY,
               "resources": resources("250m", "1Gi", "2"),
               "readinessProbe": http_probe("/health", "http", period=5),
               "livenessProbe": http_probe("/health", "http", failures=6),
               "startupProbe": http_probe("/health", "http", **STORE_STARTUP),
               "volumeMounts": [{"name": "data", "mountPath": "/victoria-logs-data"}]}]}
    return [statefulset("victorialogs", "logs", 1, pod, service_name="victorialogs",
                        claims=[pvc_template("data", f"{STORE_VOLUME_GIB['victorialogs']}Gi")]),
            service("victorialogs", "logs", "victorialogs", {"http": C["victorialogs"]})]


# -- Prometheus, Alertmanager, Grafana -----------------------------------------------------------

# Set by the StatefulSet controller on each of its pods.
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"


def prometheus_objects(configs: dict[str, dict]) -> list[dict]:
    items = [{"key": "prometheus.yml", "path": "prometheus.yml"}]
    items += [{"key": k, "path": f"rules/{k}"} for k in sorted(configs["prometheus-rules"]["data"])]
    config_items = [{"configMap": {"name": "prometheus", "items": items[:1]}},
                    {"configMap": {"name": "prometheus-rules", "items": items[1:]}}]
    pod = {"securityContext": pod_security("prometheus", fs_group=True),
           "terminationGracePeriodSeconds": 120,
           "containers": [{
               "name": "prometheus", "image": images()["prometheus"], "imagePullPolicy": "IfNotPresent",
               "args": ["--config.file=/etc/hitl/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
                        f"--web.listen-address=:{C['prometheus']}", "--enable-feature=exemplar-storage", "--web.enable-lifecycle"],
               # prometheus-ha.yml's external label `replica` (dropped from the alerts it sends).
               "env": [field_env("PROMETHEUS_REPLICA", "metadata.name")],
               "ports": ports(http=C["prometheus"]), "securityContext": CONTAINER_SECURITY,
               "resources": resources("500m", "2Gi", "2"),
               "readinessProbe": http_probe("/-/ready", "http", period=5),
               "livenessProbe": http_probe("/-/healthy", "http", failures=6),
               "startupProbe": http_probe("/-/ready", "http", period=5, failures=120),
               "volumeMounts": [{"name": "config", "mountPath": "/etc/hitl/prometheus", "readOnly": True},
                                {"name": "data", "mountPath": "/prometheus"}]}],
           "volumes": [{"name": "config", "projected": {"sources": config_items}}]}
    return [statefulset("prometheus", "metrics", ha.PROMETHEUS_REPLICAS, pod, service_name="prometheus-headless",
                        claims=[pvc_template("data", f"{STORE_VOLUME_GIB['prometheus']}Gi")],
                        annotations={"checksum/config": checksum(configs["prometheus"], configs["prometheus-rules"])}),
            disruption_budget("prometheus", "metrics"),
            # What Grafana reads (http://prometheus:9090): replica 0 only, so every refresh draws
            # from the same TSDB (two replicas scrape at different instants; behind one Service
            # graphs would change between refreshes). Failover is by hand (docs/kubernetes.md).
            service("prometheus", "metrics", "prometheus", {"http": C["prometheus"]},
                    extra={"selector": {**selector("prometheus"), POD_NAME_LABEL: "prometheus-0"}}),
            service("prometheus-headless", "metrics", "prometheus", {"http": C["prometheus"]}, headless=True)]


def alertmanager_objects(configs: dict[str, dict]) -> list[dict]:
    peers = [f"--cluster.peer={peer('alertmanager', i, C['alertmanager_cluster'])}" for i in range(ha.ALERTMANAGERS)]
    pod = {"securityContext": pod_security("alertmanager", fs_group=True),
           "containers": [{
               "name": "alertmanager", "image": images()["alertmanager"], "imagePullPolicy": "IfNotPresent",
               "args": ["--config.file=/etc/hitl/alertmanager/alertmanager.yml", "--storage.path=/alertmanager",
                        f"--web.listen-address=:{C['alertmanager']}", f"--cluster.listen-address=0.0.0.0:{C['alertmanager_cluster']}",
                        f"--cluster.advertise-address=$(POD_IP):{C['alertmanager_cluster']}", *peers, *ha.ALERTMANAGER_CLUSTER_FLAGS],
               "env": [field_env("POD_IP", "status.podIP")],
               "ports": [*ports(http=C["alertmanager"], mesh_tcp=C["alertmanager_cluster"]),
                         {"name": "mesh-udp", "containerPort": C["alertmanager_cluster"], "protocol": "UDP"}],
               "securityContext": CONTAINER_SECURITY, "resources": resources("100m", "256Mi", "500m"),
               "readinessProbe": http_probe("/-/ready", "http", period=5),
               "livenessProbe": http_probe("/-/healthy", "http", failures=6),
               "startupProbe": http_probe("/-/healthy", "http", **STARTUP),
               "volumeMounts": [{"name": "config", "mountPath": "/etc/hitl/alertmanager", "readOnly": True},
                                # alertmanager.yml's *_file settings.
                                {"name": "receivers", "mountPath": "/etc/alertmanager/secrets", "readOnly": True},
                                {"name": "data", "mountPath": "/alertmanager"}]}],
           "volumes": [{"name": "config", "configMap": {"name": "alertmanager"}},
                       secret_volume("receivers", "alertmanager-receivers")]}
    headless = service("alertmanager-headless", "alerting", "alertmanager", {"http": C["alertmanager"], "mesh-tcp": C["alertmanager_cluster"]}, headless=True,
                       # Peers must find each other before they are Ready (gossip comes first).
                       extra={"publishNotReadyAddresses": True})
    headless["spec"]["ports"].append({"name": "mesh-udp", "port": C["alertmanager_cluster"], "targetPort": C["alertmanager_cluster"],
                                        "protocol": "UDP"})
    return [statefulset("alertmanager", "alerting", ha.ALERTMANAGERS, pod, service_name="alertmanager-headless",
                        claims=[pvc_template("data", "1Gi")],
                        annotations={"checksum/config": checksum(configs["alertmanager"])}),
            disruption_budget("alertmanager", "alerting"),
            service("alertmanager", "alerting", "alertmanager", {"http": C["alertmanager"]}),
            headless]


def grafana_objects(configs: dict[str, dict]) -> list[dict]:
    def files(cm: str, prefix: str) -> dict:
        return {"configMap": {"name": cm, "items": [{"key": k, "path": f"{prefix}{k}"} for k in sorted(configs[cm]["data"])]}}
    pod = {"securityContext": pod_security("grafana", fs_group=True),
           "containers": [{
               "name": "grafana", "image": images()["grafana"], "imagePullPolicy": "IfNotPresent",
               "env": [{"name": "GF_SECURITY_ADMIN_PASSWORD__FILE", "value": "/run/secrets/hitl/grafana/admin-password"},
                       {"name": "GF_PATHS_CONFIG", "value": "/etc/hitl/grafana/grafana.ini"}],
               "ports": ports(http=C["grafana"]), "securityContext": CONTAINER_SECURITY,
               "resources": resources("100m", "512Mi", "1"),
               "readinessProbe": http_probe("/api/health", "http", period=5),
               "livenessProbe": http_probe("/api/health", "http", failures=6),
               "startupProbe": http_probe("/api/health", "http", period=5, failures=60),
               "volumeMounts": [{"name": "config", "mountPath": "/etc/hitl/grafana", "readOnly": True},
                                {"name": "admin-password", "mountPath": "/run/secrets/hitl/grafana", "readOnly": True},
                                {"name": "data", "mountPath": "/var/lib/grafana"}, TMP_MOUNT]}],
           "volumes": [{"name": "config", "projected": {"sources": [
                           files("grafana", ""), files("grafana-datasources", "provisioning/datasources/"),
                           files("grafana-dashboard-providers", "provisioning/dashboards/"),
                           files("grafana-dashboards", "dashboards/")]}},
                       secret_volume("admin-password", "grafana", {"admin-password": "admin-password"}), TMP]}
    maps = [configs[k] for k in ("grafana", "grafana-datasources", "grafana-dashboard-providers", "grafana-dashboards")]
    return [statefulset("grafana", "dashboards", 1, pod, service_name="grafana", claims=[pvc_template("data", "5Gi")],
                        annotations={"checksum/config": checksum(*maps)}),
            service("grafana", "dashboards", "grafana", {"http": C["grafana"]})]


# -- configs -----------------------------------------------------------------------------------

def config_maps() -> dict[str, dict]:
    """Every config file, as the repository has it (Prometheus': its Kubernetes derivation)."""
    def folder(rel: str, pattern: str) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted((REPO_ROOT / rel).glob(pattern))}
    return {
        "otel-collector": config_map("otel-collector", "collector", {
            "config.yaml": _read("otel-collector/config.yaml"), "agent.yaml": _read("otel-collector/agent.yaml")}),
        "jaeger": config_map("jaeger", "traces", {"config.yaml": _read("jaeger/config.yaml")}),
        "prometheus": config_map("prometheus", "metrics", {
            "prometheus.yml": prometheus_config.kubernetes_file()}),
        "prometheus-rules": config_map("prometheus-rules", "metrics", folder("prometheus/rules", "*.yml")),
        "alertmanager": config_map("alertmanager", "alerting", {"alertmanager.yml": _read("alertmanager/alertmanager.yml")}),
        "grafana": config_map("grafana", "dashboards", {"grafana.ini": _read("grafana/grafana.ini")}),
        "grafana-datasources": config_map("grafana-datasources", "dashboards", folder("grafana/provisioning/datasources", "*.y*ml")),
        "grafana-dashboard-providers": config_map("grafana-dashboard-providers", "dashboards",
                                                  folder("grafana/provisioning/dashboards", "*.y*ml")),
        "grafana-dashboards": config_map("grafana-dashboards", "dashboards", folder("grafana/dashboards", "*.json")),
    }


# -- NetworkPolicies ---------------------------------------------------------------------------

def netpol(name: str, target: str, rules: list[tuple[list[dict], list[int | tuple[int, str]]]]) -> dict:
    """Ingress to pods of `target` only from `peers` on `ports`; everything else is denied
    (default-deny). A peer list of [] means any source."""
    ingress = []
    for peers, port_list in rules:
        rule: dict = {"ports": [{"port": p, "protocol": "TCP"} if isinstance(p, int) else {"port": p[0], "protocol": p[1]}
                                for p in port_list]}
        if peers:
            rule["from"] = peers
        ingress.append(rule)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(name, "network-policy"),
            "spec": {"podSelector": {"matchLabels": selector(target)}, "policyTypes": ["Ingress"], "ingress": ingress}}


def pods(name: str) -> dict:
    return {"podSelector": {"matchLabels": selector(name)}}


SAME_NAMESPACE = {"podSelector": {}}
ANY_NAMESPACE = {"namespaceSelector": {}}


def network_policies() -> list[dict]:
    prometheus = pods("prometheus")
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("default-deny-ingress", "network-policy"),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    return [
        deny,
        # Only the collectors accept OTLP: plain OTLP from this namespace, and the authenticated
        # receiver (bearer token) from any namespace: the one thing meant for other teams.
        netpol("otel-agent", AGENT, [([SAME_NAMESPACE], [C["otlp_grpc"], C["otlp_http"]]),
                                     ([ANY_NAMESPACE], [C["otlp_auth_grpc"], C["otlp_auth_http"]]),
                                     ([prometheus], [C["otelcol_telemetry"]])]),
        netpol("otel-gateway", GATEWAY, [([pods(AGENT)], [C["otlp_grpc"]]),
                                         ([prometheus], [C["otelcol_telemetry"], C["otelcol_prometheus"]])]),
        netpol("jaeger", "jaeger", [([pods(GATEWAY)], [C["jaeger_otlp_grpc"], C["jaeger_otlp_http"]]),
                                    ([pods("grafana")], [C["jaeger_query_http"], C["jaeger_query_grpc"]]),
                                    ([prometheus], [C["jaeger_metrics"]])]),
        netpol("victorialogs", "victorialogs", [([pods(GATEWAY), pods("grafana"), prometheus], [C["victorialogs"]])]),
        netpol("prometheus", "prometheus", [([pods("grafana"), prometheus], [C["prometheus"]])]),
        netpol("alertmanager", "alertmanager", [([prometheus, pods("grafana")], [C["alertmanager"]]),
                                                ([pods("alertmanager")],
                                                 [C["alertmanager_cluster"], (C["alertmanager_cluster"], "UDP")])]),
        # The API and Grafana are what people use (through an Ingress controller in another
        # namespace): any source; both authenticate every request but the health routes.
        netpol(APP, APP, [([], [C["app"]])]),
        netpol("grafana", "grafana", [([], [C["grafana"]])]),
    ]


# -- overlays ----------------------------------------------------------------------------------

def namespace(name: str) -> dict:
    # The restricted Pod Security level: the API server itself refuses any pod of this namespace
    # that runs as root, escalates privileges, keeps capabilities or lacks a seccomp profile.
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": PART_OF,
                                                  "pod-security.kubernetes.io/enforce": "restricted",
                                                  "pod-security.kubernetes.io/warn": "restricted"}}}


def dev_objects() -> list[dict]:
    pg_pod = {"securityContext": pod_security("postgres", fs_group=True),
              "containers": [{
                  "name": "postgres", "image": images()["postgres"], "imagePullPolicy": "IfNotPresent",
                  "env": [{"name": "POSTGRES_USER", "value": "hitl"}, {"name": "POSTGRES_DB", "value": "hitl"},
                          {"name": "POSTGRES_PASSWORD_FILE", "value": "/run/secrets/hitl/database/password"},
                          # A folder below the volume's root (which may hold lost+found).
                          {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
                  "ports": ports(postgres=C["postgres"]), "securityContext": CONTAINER_SECURITY,
                  "resources": resources("250m", "512Mi", "1"),
                  "readinessProbe": exec_probe(["pg_isready", "--host=127.0.0.1", "--username=hitl", "--dbname=hitl"], period=5),
                  "livenessProbe": exec_probe(["pg_isready", "--host=127.0.0.1", "--username=hitl", "--dbname=hitl"]),
                  "startupProbe": exec_probe(["pg_isready", "--host=127.0.0.1", "--username=hitl", "--dbname=hitl"],
                                             **STORE_STARTUP),
                  "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"},
                                   {"name": "database", "mountPath": "/run/secrets/hitl/database", "readOnly": True},
                                   {"name": "run", "mountPath": "/var/run/postgresql"}, TMP_MOUNT]}],
              "volumes": [secret_volume("database", "hitl-database", {"password": "password"}),
                          {"name": "run", "emptyDir": {}}, TMP]}
    redis_pod = {"securityContext": pod_security("redis"),
                 "containers": [{
                     "name": "redis", "image": images()["redis"], "imagePullPolicy": "IfNotPresent",
                     # A cache (statistics, verified keys): no persistence, as compose.
                     "args": ["redis-server", "--save", "", "--appendonly", "no"],
                     "ports": ports(redis=C["redis"]), "securityContext": CONTAINER_SECURITY,
                     "resources": resources("100m", "256Mi", "500m"),
                     "readinessProbe": exec_probe(["redis-cli", "ping"], period=5),
                     "livenessProbe": exec_probe(["redis-cli", "ping"]),
                     "startupProbe": exec_probe(["redis-cli", "ping"], **STARTUP),
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                 "volumes": [{"name": "data", "emptyDir": {}}]}
    redis = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("redis", "cache"),
             "spec": {"replicas": 1, "selector": {"matchLabels": selector("redis")},
                      "template": pod_template("redis", "cache", redis_pod)}}
    # The API.
    app_only = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": APP}}}]
    return [statefulset("postgres", "database", 1, pg_pod, service_name="postgres", claims=[pvc_template("data", "10Gi")]),
            service("postgres", "database", "postgres", {"postgres": C["postgres"]}),
            redis, service("redis", "cache", "redis", {"redis": C["redis"]}),
            # The database and the cache accept only the app.
            netpol("postgres", "postgres", [(app_only, [C["postgres"]])]),
            netpol("redis", "redis", [(app_only, [C["redis"]])])]


def env_patch(env: dict) -> dict:
    return {"target": {"kind": "Deployment", "name": APP},
            "patch": yaml.safe_dump([{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": env}],
                                    sort_keys=False)}


def spread_preferred_patch(statefulset_name: str) -> dict:
    """A one-node cluster cannot hold replicas on different nodes: dev prefers what prod requires."""
    return {"target": {"kind": "StatefulSet", "name": statefulset_name},
            "patch": yaml.safe_dump([{"op": "replace", "path": "/spec/template/spec/topologySpreadConstraints/0/whenUnsatisfiable",
                                      "value": "ScheduleAnyway"}], sort_keys=False)}


# On every workload that reads a Secret (file or environment): a rotated Secret reaches none of
# them by itself (environment variables keep their value; the programs read their secret files
# at start), so the rotation runbook (docs/kubernetes.md) restarts them by this label.
SECRET_ROTATION_LABEL = "hitl/restart-on-secret-rotation"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def reads_a_secret(obj: dict) -> bool:
    pod = obj["spec"]["template"]["spec"]
    return (any("secret" in v for v in pod.get("volumes", []))
            or any("secretKeyRef" in e.get("valueFrom", {}) for c in pod["containers"] for e in c.get("env", [])))


def mark_secret_readers(objs: list[dict]) -> list[dict]:
    for obj in objs:
        if obj["kind"] in WORKLOAD_KINDS and reads_a_secret(obj):
            obj["metadata"]["labels"][SECRET_ROTATION_LABEL] = "true"
    return objs


BASE_FILES = ("configs", "app", "collectors", "jaeger", "victorialogs", "prometheus", "alertmanager", "grafana",
              "network-policies")


def files() -> dict[str, str]:
    """Path under deploy/kubernetes -> content."""
    configs = config_maps()
    base = {
        "configs": list(configs.values()),
        "app": app_objects(),
        "collectors": collector_objects(configs),
        "jaeger": jaeger_objects(configs),
        "victorialogs": victorialogs_objects(),
        "prometheus": prometheus_objects(configs),
        "alertmanager": alertmanager_objects(configs),
        "grafana": grafana_objects(configs),
        "network-policies": network_policies(),
    }
    out = {f"base/{name}.yaml": dump(mark_secret_readers(objs)) for name, objs in base.items()}
    required_spread = [o["metadata"]["name"] for objs in base.values() for o in objs if o["kind"] == "StatefulSet"
                       and o["spec"]["template"]["spec"].get("topologySpreadConstraints")]
    out["base/kustomization.yaml"] = dump_one({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "labels": [{"pairs": {"app.kubernetes.io/version": app_version()}, "includeSelectors": False}],
        "resources": [f"{name}.yaml" for name in BASE_FILES]})
    out["overlays/dev/namespace.yaml"] = dump_one(namespace(NAMESPACES["dev"]))
    out["overlays/dev/postgres-redis.yaml"] = dump(mark_secret_readers(dev_objects()))
    out["overlays/dev/kustomization.yaml"] = dump_one({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": NAMESPACES["dev"],
        "resources": ["namespace.yaml", "../../base", "postgres-redis.yaml"],
        "patches": [env_patch({"name": "REDIS_URL", "value": DEV_REDIS_URL}),
                    *[spread_preferred_patch(name) for name in required_spread]]})
    out["overlays/prod/namespace.yaml"] = dump_one(namespace(NAMESPACES["prod"]))
    out["overlays/prod/kustomization.yaml"] = dump_one({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": NAMESPACES["prod"],
        "resources": ["namespace.yaml", "../../base"],
        # The managed Redis: its URL (with its password) from a Secret.
        "patches": [env_patch(secret_env("REDIS_URL", "hitl-redis", "url"))]})
    return out


def write(root: Path = DEPLOY_DIR) -> list[Path]:
    written = []
    for rel, text in files().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


# -- Secrets from .env -------------------------------------------------------------------------

def secret_variables() -> set[str]:
    return {var for keys in SECRETS.values() for var, _ in keys.values()}


def secrets_manifest(env: dict[str, str], overlay: str) -> str:
    """The Secrets an overlay needs, from .env's values (compose's names): Secret YAML to pipe
    into `kubectl apply -f -`. A missing required value is an error naming it."""
    import base64
    env = dict(env)
    if overlay == "dev":
        env.setdefault("DATABASE_URL", DEV_DATABASE_URL)
    docs, missing = [], []
    for name, keys in SECRETS.items():
        if name == "hitl-redis" and overlay != "prod":
            continue
        data = {}
        for key, (var, _what) in keys.items():
            value = env.get(var, "")
            if not value:
                if (name, key) not in OPTIONAL_SECRETS:
                    missing.append(var)
                continue
            data[key] = base64.b64encode(value.encode()).decode()
        docs.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": name, "namespace": NAMESPACES[overlay], "labels": {"app.kubernetes.io/part-of": PART_OF}},
                     "data": data})
    if missing:
        raise ValueError("missing in the environment/.env: " + ", ".join(missing))
    return dump(docs, header=False)


# -- YAML --------------------------------------------------------------------------------------

def dump_one(obj: dict) -> str:
    return HEADER + yaml_dump.dump(obj)


def dump(objs: list[dict], *, header: bool = True) -> str:
    body = "---\n".join(yaml_dump.dump(o) for o in objs)
    return (HEADER if header else "") + body
