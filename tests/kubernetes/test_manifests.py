"""deploy/kubernetes without a cluster: made from the repository's sources (that the committed
files are up to date is tests/test_generated.py's check), and the policies every object must follow, on what `kubectl kustomize` renders for each overlay."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from stack import ha, kubernetes, prometheus_config
from tests.kubernetes.conftest import OVERLAYS
from tests.support.kube_cluster import REPO_ROOT

pytestmark = pytest.mark.needs_build("kubernetes")

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def workloads(objs: list[dict]) -> list[dict]:
    return [o for o in objs if o["kind"] in WORKLOADS]


def containers(obj: dict) -> list[dict]:
    spec = obj["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def by_kind_name(objs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


# -- one source --------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_config_map_holds_the_repositorys_files_unchanged(rendered, overlay):
    maps = {o["metadata"]["name"]: o["data"] for o in rendered[overlay] if o["kind"] == "ConfigMap"}
    sources = {
        ("otel-collector", "config.yaml"): "otel-collector/config.yaml",
        ("otel-collector", "agent.yaml"): "otel-collector/agent.yaml",
        ("jaeger", "config.yaml"): "jaeger/config.yaml",
        ("alertmanager", "alertmanager.yml"): "alertmanager/alertmanager.yml",
        ("grafana", "grafana.ini"): "grafana/grafana.ini",
    }
    for path in (REPO_ROOT / "prometheus" / "rules").glob("*.yml"):
        sources[("prometheus-rules", path.name)] = f"prometheus/rules/{path.name}"
    for path in (REPO_ROOT / "grafana" / "dashboards").glob("*.json"):
        sources[("grafana-dashboards", path.name)] = f"grafana/dashboards/{path.name}"
    for folder, cm in (("datasources", "grafana-datasources"), ("dashboards", "grafana-dashboard-providers")):
        for path in (REPO_ROOT / "grafana" / "provisioning" / folder).glob("*.y*ml"):
            sources[(cm, path.name)] = f"grafana/provisioning/{folder}/{path.name}"
    for (cm, key), rel in sources.items():
        assert maps[cm][key] == (REPO_ROOT / rel).read_text(), f"ConfigMap {cm}/{key} differs from {rel}"
    # Every key is one of those files, or Prometheus' derived config.
    keys = {(cm, k) for cm, data in maps.items() for k in data}
    assert keys - set(sources) == {("prometheus", "prometheus.yml")}


def test_prometheus_on_kubernetes_differs_from_the_ha_file_only_in_its_targets():
    k8s = prometheus_config.kubernetes_shape(prometheus_config.load())
    ha_file = yaml.safe_load((REPO_ROOT / "prometheus" / "prometheus-ha.yml").read_text())

    def without_targets(config: dict) -> dict:
        config = copy.deepcopy(config)
        for holder in [*config["alerting"]["alertmanagers"], *config["scrape_configs"]]:
            holder.pop("static_configs", None)
            holder.pop("dns_sd_configs", None)
        config["storage"]["tsdb"]["retention"].pop("size")  # the volume's (test_the_stores_size_caps...)
        return config
    assert without_targets(k8s) == without_targets(ha_file)
    text = prometheus_config.kubernetes_file()
    assert "alertmanager-2.alertmanager-headless:9093" in text and "prometheus-1.prometheus-headless:9090" in text
    discovered = [c["names"] for job in k8s["scrape_configs"] for c in job.get("dns_sd_configs", [])]
    assert discovered == [["otel-gateway"], ["otel-gateway", "otel-agent"]]


def test_the_kubernetes_prometheus_config_passes_promtool(tmp_path):
    promtool = subprocess.run(["bash", str(REPO_ROOT / "stack" / "build.sh"), "--paths", "prometheus"],
                              capture_output=True, text=True, check=True).stdout
    promtool = dict(line.split("=", 1) for line in promtool.split())["promtool"]
    (tmp_path / "prometheus.yml").write_text(prometheus_config.kubernetes_file())
    (tmp_path / "rules").symlink_to(REPO_ROOT / "prometheus" / "rules")
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True,
                            env={"PROMETHEUS_REPLICA": "prometheus-0", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_the_versions_env_pins(rendered, overlay):
    pinned = set(kubernetes.images().values())
    for obj in workloads(rendered[overlay]):
        for c in containers(obj):
            assert c["image"] in pinned, f"{obj['metadata']['name']}/{c['name']}: {c['image']} is not pinned in versions.env"
            name, _, tag = c["image"].rpartition(":")
            assert name and tag and tag != "latest" and "/" not in tag
            assert c.get("imagePullPolicy") == "IfNotPresent"


def test_the_app_limits_are_the_thresholds_the_alerts_divide_by(rendered):
    res = kubernetes.app_resources()
    deploy = by_kind_name(rendered["prod"])[("Deployment", "hitl-review")]
    limits = deploy["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert {k: limits[k] for k in ("cpu", "memory")} == {"cpu": f"{res['cpu']:g}", "memory": f"{res['memory'] // (1 << 20)}Mi"}


def test_victorialogs_gets_the_flags_file_line_for_line(rendered):
    sts = by_kind_name(rendered["prod"])[("StatefulSet", "victorialogs")]
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    cap = kubernetes.VICTORIALOGS_CAP_FLAG  # the volume's (test_the_stores_size_caps_follow_their_volumes)
    assert [a for a in args[2:] if not a.startswith(cap)] == [f for f in kubernetes.victorialogs_flags() if not f.startswith(cap)]
    assert len(args) > 3 and len(args[2:]) == len(kubernetes.victorialogs_flags())


def test_the_alertmanager_cluster_uses_the_shared_gossip_settings(rendered):
    sts = by_kind_name(rendered["prod"])[("StatefulSet", "alertmanager")]
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert sts["spec"]["replicas"] == ha.ALERTMANAGERS
    assert [a for a in args if a.startswith("--cluster.peer=")] == [
        f"--cluster.peer=alertmanager-{i}.alertmanager-headless:9094" for i in range(ha.ALERTMANAGERS)]
    assert set(ha.ALERTMANAGER_CLUSTER_FLAGS) <= set(args)


# -- policies ----------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_limits_and_probes(rendered, overlay):
    for obj in workloads(rendered[overlay]):
        for c in containers(obj):
            where = f"{overlay}: {obj['kind']} {obj['metadata']['name']}/{c['name']}"
            for kind in ("requests", "limits"):
                assert set(c.get("resources", {}).get(kind, {})) == {"cpu", "memory", "ephemeral-storage"}, f"{where}: {kind}"
            if obj["kind"] != "Job":  # a Job's container runs to its end; nothing to probe
                assert "readinessProbe" in c and "livenessProbe" in c, f"{where}: probes"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_non_root_read_only_with_nothing_to_escalate(rendered, overlay):
    for obj in workloads(rendered[overlay]):
        pod = obj["spec"]["template"]["spec"]
        where = f"{overlay}: {obj['kind']} {obj['metadata']['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod.get("automountServiceAccountToken") is False, f"{where}: no pod here talks to the API server"
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), where
        assert not any("hostPath" in v for v in pod.get("volumes", [])), where
        for c in containers(obj):
            ctx = c["securityContext"]
            assert ctx == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                           "capabilities": {"drop": ["ALL"]}}, f"{where}/{c['name']}: {ctx}"
            assert not any(p.get("hostPort") for p in c.get("ports", [])), f"{where}/{c['name']}: hostPort"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_committed(rendered, overlay):
    objs = rendered[overlay]
    assert not [o for o in objs if o["kind"] == "Secret"], "a Secret with a value in deploy/kubernetes"
    referenced = set()
    for obj in workloads(objs):
        pod = obj["spec"]["template"]["spec"]
        for v in pod.get("volumes", []):
            if "secret" in v:
                keys = [i["key"] for i in v["secret"].get("items", [])] or list(kubernetes.SECRETS[v["secret"]["secretName"]])
                referenced |= {(v["secret"]["secretName"], k) for k in keys}
        for c in containers(obj):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add((ref["name"], ref["key"]))
    declared = {(name, key) for name, keys in kubernetes.SECRETS.items() for key in keys}
    expected = declared - ({("hitl-redis", "url")} if overlay == "dev" else set())
    assert referenced == expected, f"referenced but not declared: {referenced - declared}; declared, unused: {expected - referenced}"


def test_no_file_under_deploy_carries_a_secret_value():
    for path in kubernetes.DEPLOY_DIR.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (doc and doc.get("kind") == "Secret"), path
    # The test .env values never reach the repository: only the command that prints them exists.
    assert not list(Path(kubernetes.DEPLOY_DIR).rglob("*.env"))


def test_the_secrets_command_names_what_is_missing():
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD.*GRAFANA_ADMIN_PASSWORD|GRAFANA_ADMIN_PASSWORD"):
        kubernetes.secrets_manifest({"OTELCOL_INGEST_TOKEN": "x"}, "prod")
    text = kubernetes.secrets_manifest({var: "v" for var in kubernetes.secret_variables()}, "dev")
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(text)]
    assert "hitl-redis" not in names and "hitl-database" in names
    dev_db = next(d for d in yaml.safe_load_all(text) if d["metadata"]["name"] == "hitl-database")
    import base64
    assert base64.b64decode(dev_db["data"]["url"]).decode() == "v"  # given: not the default
    text = kubernetes.secrets_manifest({var: "v" for var in kubernetes.secret_variables() if var != "DATABASE_URL"}, "dev")
    dev_db = next(d for d in yaml.safe_load_all(text) if d["metadata"]["name"] == "hitl-database")
    assert base64.b64decode(dev_db["data"]["url"]).decode() == kubernetes.DEV_DATABASE_URL


def test_only_the_dev_overlay_runs_a_database(rendered):
    dev = by_kind_name(rendered["dev"])
    prod = by_kind_name(rendered["prod"])
    assert ("StatefulSet", "postgres") in dev and ("Deployment", "redis") in dev
    assert not [k for k in prod if k[1] in ("postgres", "redis")]
    env = {e["name"]: e for e in prod[("Deployment", "hitl-review")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "hitl-redis", "key": "url"}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "hitl-database", "key": "url"}


def test_the_app_keeps_capacity_through_rollouts_and_disruptions(rendered):
    objs = by_kind_name(rendered["prod"])
    deploy = objs[("Deployment", "hitl-review")]["spec"]
    assert deploy["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pdb = objs[("PodDisruptionBudget", "hitl-review")]["spec"]
    assert pdb["maxUnavailable"] == 1 and pdb["selector"]["matchLabels"] == deploy["selector"]["matchLabels"]
    hpa = objs[("HorizontalPodAutoscaler", "hitl-review")]["spec"]
    assert hpa["minReplicas"] >= 2 and hpa["metrics"][0]["resource"]["name"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_only_the_collectors_take_otlp(rendered, overlay):
    objs = rendered[overlay]
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    assert any(p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] for p in policies), "default deny"
    otlp_ports = {4317, 4318, 4319, 4320}
    for p in policies:
        target = p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        for rule in p["spec"].get("ingress", []):
            ports = frozenset(x["port"] for x in rule["ports"])
            sources = rule.get("from", [])
            if ports & otlp_ports and target not in ("otel-agent", "otel-gateway", "jaeger"):
                pytest.fail(f"{target} accepts OTLP")
            cross = not sources or any("namespaceSelector" in s for s in sources)
            if cross:
                # Other namespaces reach only the authenticated receiver, the API and Grafana.
                assert (target, ports) in {("otel-agent", frozenset({4319, 4320})), ("hitl-review", frozenset({8000})),
                                          ("grafana", frozenset({3000}))}, (target, ports)
    db = [p for p in policies if p["metadata"]["name"] in ("postgres", "redis")]
    assert len(db) == (2 if overlay == "dev" else 0)
    for p in db:
        assert p["spec"]["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "hitl-review"}}}]


# -- what an SRE reads in the manifests --------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_non_root_pod_can_read_the_secrets_it_mounts(rendered, overlay):
    # The kubelet writes a Secret volume's files as root; with fsGroup it gives them that group and
    # ORs in group read (pkg/volume/volume_linux.go in kubernetes/kubernetes), else only the mode
    # counts: a non-root process reads them through fsGroup or through "other".
    for obj in workloads(rendered[overlay]):
        pod = obj["spec"]["template"]["spec"]
        ctx = pod["securityContext"]
        for v in pod.get("volumes", []):
            if "secret" not in v:
                continue
            modes = [v["secret"].get("defaultMode", 0o644)] + [i["mode"] for i in v["secret"].get("items", []) if "mode" in i]
            readable_by_group = ctx.get("fsGroup") == ctx.get("runAsGroup", ctx["runAsUser"])
            readable_by_other = all(m & 0o004 for m in modes)
            assert readable_by_group or readable_by_other, (
                f"{overlay}: {obj['kind']} {obj['metadata']['name']} runs as {ctx['runAsUser']} without fsGroup and "
                f"mounts Secret {v['secret']['secretName']} with mode {oct(modes[0])}: unreadable")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_workload_an_hpa_scales_sets_its_own_replicas(rendered, overlay):
    # Every apply of a `replicas` field would reset the HPA's count (and the HPA would scale again).
    objs = by_kind_name(rendered[overlay])
    targets = [o for o in rendered[overlay] if o["kind"] == "HorizontalPodAutoscaler"]
    assert targets
    for hpa in targets:
        ref = hpa["spec"]["scaleTargetRef"]
        assert "replicas" not in objs[(ref["kind"], ref["name"])]["spec"], f"{overlay}: {ref['kind']} {ref['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_app_migrates_at_start_within_its_startup_probe_and_no_job_duplicates_it(rendered, overlay):
    # `python -m app` migrates under a PostgreSQL advisory lock (app/migrations/env.py), so replicas
    # starting together take turns; a Job named by the version would fail to apply ("field is
    # immutable") on any template change within a version.
    objs = rendered[overlay]
    assert not [o["metadata"]["name"] for o in objs if o["kind"] == "Job"], overlay
    app = by_kind_name(objs)[("Deployment", "hitl-review")]["spec"]["template"]["spec"]["containers"][0]
    assert "args" not in app, "the image's default command serves (and migrates first)"
    startup = app["startupProbe"]
    # Replicas wait for each other's migration before serving: minutes, not the 60 s of a bare start.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, startup


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_with_a_liveness_probe_has_a_startup_probe(rendered, overlay):
    # Without one, a store replaying its data after a crash is killed by its liveness probe
    # before it is up, and starts the replay again.
    for obj in workloads(rendered[overlay]):
        for c in containers(obj):
            if "livenessProbe" in c:
                assert "startupProbe" in c, f"{overlay}: {obj['kind']} {obj['metadata']['name']}/{c['name']}"


def replica_count(obj: dict, objs: list[dict]) -> int:
    """The workload's replicas, or its HPA's minimum (an HPA target sets none)."""
    for hpa in (o for o in objs if o["kind"] == "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) == (obj["kind"], obj["metadata"]["name"]):
            return hpa["spec"]["minReplicas"]
    return obj["spec"].get("replicas", 1)


# A one-node dev cluster must schedule every replica: spreading is required in prod only.
SPREAD_WHEN_UNSATISFIABLE = {"prod": "DoNotSchedule", "dev": "ScheduleAnyway"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_replicated_workload_has_a_pdb_of_one_and_spreads_over_nodes(rendered, overlay):
    objs = rendered[overlay]
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    replicated = [o for o in workloads(objs) if o["kind"] in ("Deployment", "StatefulSet") and replica_count(o, objs) > 1]
    assert {o["metadata"]["name"] for o in replicated} >= {"hitl-review", "otel-gateway", "prometheus", "alertmanager"}
    for obj in replicated:
        where = f"{overlay}: {obj['kind']} {obj['metadata']['name']}"
        sel = obj["spec"]["selector"]["matchLabels"]
        mine = [p for p in pdbs if p["spec"]["selector"]["matchLabels"] == sel]
        assert len(mine) == 1, f"{where}: PDB"
        # One pod at a time: a drain never takes two replicas (minAvailable 1 let it take 5 of 6).
        assert mine[0]["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": sel}}, where
        spread = [t for t in obj["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
                  if t["topologyKey"] == "kubernetes.io/hostname" and t["labelSelector"]["matchLabels"] == sel]
        assert len(spread) == 1 and spread[0]["maxSkew"] == 1, f"{where}: spreading by node"
        if obj["kind"] == "StatefulSet":  # the stateful HA sets: one node holds one replica's data
            assert spread[0]["whenUnsatisfiable"] == SPREAD_WHEN_UNSATISFIABLE[overlay], where


def quantity_bytes(q: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return int(q[:-len(suffix)]) * factor
    return int(q)


def test_the_agents_disk_queue_fits_its_volume_and_survives_a_long_outage(rendered):
    # What agent.yaml's persistent queues may hold: queue_size batches of up to send_batch_size
    # items each, per exporter that queues on file_storage.
    agent_config = yaml.safe_load((REPO_ROOT / "otel-collector" / "agent.yaml").read_text())
    batch = agent_config["processors"]["batch"]["send_batch_size"]
    queued = [e["sending_queue"]["queue_size"] * batch for e in agent_config["exporters"].values()
              if isinstance(e, dict) and e.get("sending_queue", {}).get("storage") == "file_storage"]
    assert queued
    can_hold = sum(queued) * kubernetes.QUEUED_ITEM_BYTES
    for overlay in OVERLAYS:
        agent = by_kind_name(rendered[overlay])[("DaemonSet", "otel-agent")]["spec"]["template"]["spec"]
        volume = next(v for v in agent["volumes"] if v["name"] == "file-storage")
        assert quantity_bytes(volume["emptyDir"]["sizeLimit"]) >= can_hold, (overlay, volume, can_hold)
        limit = quantity_bytes(agent["containers"][0]["resources"]["limits"]["ephemeral-storage"])
        assert limit > quantity_bytes(volume["emptyDir"]["sizeLimit"]), "the queue and the container's logs"
        # Under node pressure the kubelet evicts lower priorities first; the agent carries everyone's telemetry.
        priority = by_kind_name(rendered[overlay])[("PriorityClass", agent["priorityClassName"])]
        assert priority["value"] >= 1_000_000 and priority.get("globalDefault") is not True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_declares_ephemeral_storage(rendered, overlay):
    for obj in workloads(rendered[overlay]):
        for c in containers(obj):
            res = c["resources"]
            assert "ephemeral-storage" in res["requests"] and "ephemeral-storage" in res["limits"], (
                f"{overlay}: {obj['kind']} {obj['metadata']['name']}/{c['name']}")


def test_the_stores_size_caps_follow_their_volumes(rendered):
    # A size cap far below the volume silently cuts the retention window (31 days for the SLOs);
    # one at or above it fills the disk. Both: 80-90% of the claim.
    objs = by_kind_name(rendered["prod"])

    def claim_bytes(name: str) -> int:
        sts = objs[("StatefulSet", name)]
        return quantity_bytes(sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"])

    config = yaml.safe_load(objs[("ConfigMap", "prometheus")]["data"]["prometheus.yml"])
    retention = config["storage"]["tsdb"]["retention"]
    assert retention["time"] == "31d"
    prometheus_cap = quantity_bytes(retention["size"].replace("GB", "Gi"))  # Prometheus' units are base 2
    assert 0.8 <= prometheus_cap / claim_bytes("prometheus") < 0.9, retention
    args = objs[("StatefulSet", "victorialogs")]["spec"]["template"]["spec"]["containers"][0]["args"]
    cap = next(a.split("=", 1)[1] for a in args if a.startswith("-retention.maxDiskSpaceUsageBytes="))
    assert 0.8 <= quantity_bytes(cap.replace("GiB", "Gi")) / claim_bytes("victorialogs") < 0.9, cap


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grafana_reads_one_prometheus_replica(rendered, overlay):
    # Two independent replicas behind one Service: each refresh could draw from the other one,
    # and graphs (and rate() over counter resets) disagree between refreshes.
    objs = by_kind_name(rendered[overlay])
    datasources = yaml.safe_load(objs[("ConfigMap", "grafana-datasources")]["data"]["datasources.yaml"])
    url = next(d["url"] for d in datasources["datasources"] if d["type"] == "prometheus")
    host = url.split("//", 1)[1].split(":", 1)[0]
    selector = objs[("Service", host)]["spec"]["selector"]
    assert selector.get("statefulset.kubernetes.io/pod-name") == "prometheus-0", (url, selector)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_pod_downloads_plugins_at_start(rendered, overlay):
    # An air-gapped cluster has no plugin catalogue: the plugin is in our Grafana image.
    for obj in workloads(rendered[overlay]):
        for c in containers(obj):
            names = {e["name"] for e in c.get("env", [])}
            assert not {n for n in names if n.startswith(("GF_INSTALL_PLUGINS", "GF_PLUGINS_PREINSTALL"))}, (
                f"{overlay}: {obj['metadata']['name']}/{c['name']}: {names}")
    grafana = by_kind_name(rendered[overlay])[("StatefulSet", "grafana")]["spec"]["template"]["spec"]["containers"][0]
    assert grafana["image"] == kubernetes.images()["grafana"] and not grafana["image"].startswith("docker.io/")


def references_a_secret(obj: dict) -> bool:
    pod = obj["spec"]["template"]["spec"]
    return (any("secret" in v for v in pod.get("volumes", []))
            or any("secretKeyRef" in e.get("valueFrom", {}) for c in containers(obj) for e in c.get("env", [])))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_documented_secret_rotation_restarts_every_pod_that_reads_a_secret(rendered, overlay):
    # Nothing restarts a pod when a Secret changes (environment variables keep the old value,
    # and most programs read their secret files once): the rotation runbook restarts, by label,
    # exactly the workloads that read one.
    label = kubernetes.SECRET_ROTATION_LABEL
    for obj in workloads(rendered[overlay]):
        marked = obj["metadata"].get("labels", {}).get(label) == "true"
        assert marked == references_a_secret(obj), f"{overlay}: {obj['kind']} {obj['metadata']['name']}"
    docs = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    assert f"rollout restart deployment,statefulset,daemonset -l {label}=true" in docs


def test_prometheus_size_cap_holds_the_slo_window_at_the_hpas_maximum(rendered):
    # docs/capacity.md's sizing: 16 series per span-metric combination, ~50 combinations per app
    # instance, once per gateway; up to 2 bytes per sample; the span metrics scraped every 2.5 s.
    objs = by_kind_name(rendered["prod"])
    hpa = objs[("HorizontalPodAutoscaler", "hitl-review")]["spec"]
    series = 16 * 50 * hpa["maxReplicas"] * ha.DEFAULT_GATEWAYS
    window_seconds = 31 * 86400
    needed = series / 2.5 * 2 * window_seconds
    config = yaml.safe_load(objs[("ConfigMap", "prometheus")]["data"]["prometheus.yml"])
    cap = quantity_bytes(config["storage"]["tsdb"]["retention"]["size"].replace("GB", "Gi"))
    assert cap >= needed, f"the size cap ({cap / 2**30:.0f} GiB) cuts the 31 days ({needed / 2**30:.1f} GiB needed)"
