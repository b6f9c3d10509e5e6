"""deploy/kubernetes against a real control plane (tests/support/kube_cluster.py): kubeconform with
the schemas of that API server, both overlays server-side applied, the defaults the API server
fills in, and the Pods the controller manager makes from them - checked field by field."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from stack import ha, kubernetes
from tests.kubernetes.conftest import NODE, OVERLAYS
from tests.support import kube_schemas

pytestmark = pytest.mark.needs_build("kubernetes", "etcd", "kubeconform")

# What each overlay's workloads must turn into: Pods per owner (name prefix).
EXPECTED_PODS = {
    "hitl-review-": 2,  # the HPA's minReplicas (the Deployment sets no replicas)
    "otel-agent-": 1, "otel-gateway-": ha.DEFAULT_GATEWAYS,
    "jaeger-": 1, "victorialogs-": 1, "prometheus-": ha.PROMETHEUS_REPLICAS, "alertmanager-": ha.ALERTMANAGERS,
    "grafana-": 1,
}
DEV_PODS = {"postgres-": 1, "redis-": 1}


@pytest.fixture(scope="module")
def schemas(cluster, tmp_path_factory):
    target = tmp_path_factory.mktemp("schemas")
    count = kube_schemas.write_schemas(cluster.raw, target)
    assert count > 50, "the API server's OpenAPI gave too few kinds"
    return target


def kubeconform(bins, schemas, path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([bins["kubeconform"], "-strict", "-summary", "-output", "json",
                           "-schema-location", f"{schemas}/{kube_schemas.TEMPLATE}", *extra, str(path)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubeconform_accepts_every_object_with_the_api_servers_schemas(kube_binaries, schemas, rendered, overlay, tmp_path):
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(yaml.safe_dump_all(rendered[overlay]))
    result = kubeconform(kube_binaries, schemas, path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["valid"] == len(rendered[overlay]) and summary["skipped"] == 0, summary


def test_kubeconform_with_these_schemas_catches_a_misspelt_field(kube_binaries, schemas, rendered, tmp_path):
    deploy = next(o for o in rendered["prod"] if o["kind"] == "Deployment")
    broken = json.loads(json.dumps(deploy))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/", "port": 1}}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = kubeconform(kube_binaries, schemas, path)
    assert result.returncode != 0 and "readinesProbe" in result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_server_accepts_every_object(cluster, applied, rendered, overlay):
    ns = applied[overlay]
    for obj in rendered[overlay]:
        kind, name = obj["kind"], obj["metadata"]["name"]
        args = [kind, name] if kind == "Namespace" else [kind, name, "-n", ns]
        live = cluster.get(*args, "--show-managed-fields")
        assert live["metadata"]["uid"], (kind, name)
        managers = {m["manager"] for m in live["metadata"].get("managedFields", [])}
        assert "hitl-tests" in managers, f"{kind}/{name} not server-side applied: {managers}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_second_apply_changes_nothing(cluster, applied, overlay):
    result = cluster.kubectl("diff", "--server-side", "--field-manager=hitl-tests", "-k",
                             str(kubernetes.DEPLOY_DIR / "overlays" / overlay), check=False)
    assert result.returncode == 0, f"kubectl diff found changes ({result.returncode}):\n{result.stdout}{result.stderr}"


def test_the_defaults_are_what_the_manifests_expect(cluster, applied):
    ns = applied["prod"]
    deploy = cluster.get("deployment", "hitl-review", "-n", ns)["spec"]
    assert deploy["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert deploy["progressDeadlineSeconds"] == 600 and deploy["revisionHistoryLimit"] == 5
    pod = deploy["template"]["spec"]
    assert pod["restartPolicy"] == "Always" and pod["dnsPolicy"] == "ClusterFirst"
    probe = pod["containers"][0]["readinessProbe"]
    assert probe["successThreshold"] == 1 and probe["httpGet"]["scheme"] == "HTTP"
    # The node-local Service keeps OTLP on the node; the headless ones have no cluster IP.
    svc = cluster.get("service", "otel-collector", "-n", ns)["spec"]
    assert svc["internalTrafficPolicy"] == "Local" and svc["clusterIP"].startswith("10.96.")
    assert cluster.get("service", "otel-gateway", "-n", ns)["spec"]["clusterIP"] == "None"
    sts = cluster.get("statefulset", "otel-gateway", "-n", ns)["spec"]
    assert sts["podManagementPolicy"] == "Parallel"
    claim = sts["volumeClaimTemplates"][0]["spec"]
    assert claim["volumeMode"] == "Filesystem" and claim["resources"]["requests"]["storage"] == "2Gi"
    am = cluster.get("service", "alertmanager-headless", "-n", ns)["spec"]
    assert am["publishNotReadyAddresses"] is True
    assert {(p["port"], p["protocol"]) for p in am["ports"]} == {(9093, "TCP"), (9094, "TCP"), (9094, "UDP")}


def pods_by_owner(cluster, ns: str) -> dict[str, list[dict]]:
    items = cluster.get("pods", "-n", ns)["items"]
    out: dict[str, list[dict]] = {}
    for prefix in sorted({**EXPECTED_PODS, **DEV_PODS}, key=len, reverse=True):
        for pod in items:
            if pod["metadata"]["name"].startswith(prefix) and pod not in sum(out.values(), []):
                out.setdefault(prefix, []).append(pod)
    return out


@pytest.fixture(scope="module")
def produced_pods(cluster, applied) -> dict[str, dict[str, list[dict]]]:
    """overlay -> owner prefix -> the Pods the controllers made (waited for)."""
    out = {}
    for overlay, ns in applied.items():
        want = {**EXPECTED_PODS, **(DEV_PODS if overlay == "dev" else {})}

        def counts():
            got = pods_by_owner(cluster, ns)
            have = {k: len(v) for k, v in got.items()}
            return got if have == want else None
        out[overlay] = cluster.wait_for(counts, 90, f"{overlay}: Pods of every workload")
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_controllers_make_every_pod_and_pod_security_admits_them(produced_pods, overlay):
    pods = produced_pods[overlay]
    assert {k: len(v) for k, v in pods.items()} == {**EXPECTED_PODS, **(DEV_PODS if overlay == "dev" else {})}
    agent = pods["otel-agent-"][0]
    assert agent["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchFields"][0]["values"] == [NODE]
    gateways = sorted(p["metadata"]["name"] for p in pods["otel-gateway-"])
    assert gateways == [f"otel-gateway-{i}" for i in range(ha.DEFAULT_GATEWAYS)]


def test_pod_security_refuses_a_root_pod_in_these_namespaces(cluster, applied):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root-shell"},
           "spec": {"containers": [{"name": "sh", "image": "docker.io/library/busybox:1.37", "securityContext": {"runAsUser": 0}}]}}
    result = cluster.kubectl("apply", "--server-side", "-n", applied["prod"], "-f", "-", input=yaml.safe_dump(pod), check=False)
    assert result.returncode != 0 and "violates PodSecurity" in result.stderr, result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_produced_pods_carry_images_probes_resources_security_secrets_and_configs(produced_pods, rendered, overlay):
    images = kubernetes.images()
    by_owner = produced_pods[overlay]
    want_image = {"hitl-review-": images["app"], "otel-agent-": images["agent"],
                  "otel-gateway-": images["gateway"], "jaeger-": images["jaeger"], "victorialogs-": images["victorialogs"],
                  "prometheus-": images["prometheus"], "alertmanager-": images["alertmanager"], "grafana-": images["grafana"],
                  "postgres-": images["postgres"], "redis-": images["redis"]}
    for owner, pods in by_owner.items():
        for pod in pods:
            spec = pod["spec"]
            name = pod["metadata"]["name"]
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
            for c in spec["containers"]:
                assert c["image"] == want_image[owner], name
                assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
                assert c["resources"]["limits"] and c["resources"]["requests"], name
                assert c["readinessProbe"] and c["livenessProbe"], name
            # No service account token: none of these talks to the API server.
            assert not any(v["name"].startswith("kube-api-access") for v in spec["volumes"]), name

    app = by_owner["hitl-review-"][0]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in app["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in app["volumes"]}
    env = {e["name"]: e for e in app["containers"][0]["env"]}
    assert volumes[mounts["/run/secrets/hitl/database"]]["secret"]["secretName"] == "hitl-database"
    assert volumes[mounts["/run/secrets/hitl/code-host"]]["secret"]["secretName"] == "hitl-code-host"
    assert env["DATABASE_PASSWORD_FILE"]["value"] == "/run/secrets/hitl/database/password"
    assert env["CODE_HOST_TOKEN_FILE"]["value"] == "/run/secrets/hitl/code-host/token"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector:4317"
    assert "value" in env["REDIS_URL"] if overlay == "dev" else "valueFrom" in env["REDIS_URL"]

    gateway = next(p for p in by_owner["otel-gateway-"] if p["metadata"]["name"] == "otel-gateway-1")["spec"]
    env = {e["name"]: e for e in gateway["containers"][0]["env"]}
    assert env["OTELCOL_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    volumes = {v["name"]: v for v in gateway["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "otel-collector"
    # The StatefulSet controller gave each gateway its own claim for the disk queue.
    assert volumes["file-storage"]["persistentVolumeClaim"]["claimName"] == "file-storage-otel-gateway-1"

    prom = by_owner["prometheus-"][0]["spec"]
    sources = next(v for v in prom["volumes"] if v["name"] == "config")["projected"]["sources"]
    paths = {i["path"] for s in sources for i in s["configMap"]["items"]}
    assert "prometheus.yml" in paths and "rules/alerts.yml" in paths


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_statefulset_claim_exists(cluster, applied, produced_pods, overlay):
    ns = applied[overlay]
    claims = {c["metadata"]["name"] for c in cluster.get("pvc", "-n", ns)["items"]}
    want = {f"file-storage-otel-gateway-{i}" for i in range(ha.DEFAULT_GATEWAYS)}
    want |= {f"data-prometheus-{r}" for r in range(ha.PROMETHEUS_REPLICAS)}
    want |= {f"data-alertmanager-{i}" for i in range(ha.ALERTMANAGERS)}
    want |= {"data-jaeger-0", "data-victorialogs-0", "data-grafana-0"} | ({"data-postgres-0"} if overlay == "dev" else set())
    assert claims == want
