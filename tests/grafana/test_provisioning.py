"""Grafana's provisioning, checked without a Grafana: the datasources reference each other by
UIDs that exist and have the right type, template variables survive provisioning's `$`
expansion, the dashboards provider reads where compose mounts the JSON, and no default
credential or open sign-up is configured."""

import configparser
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DATASOURCES_FILE = GRAFANA / "provisioning" / "datasources" / "datasources.yaml"
PROVIDERS_FILE = GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml"
GRAFANA_INI = GRAFANA / "grafana.ini"
# compose.yaml includes compose.stack.yaml, where the services are.
COMPOSE = REPO / "compose.stack.yaml"

EXPECTED = {
    "prometheus": ("prometheus", "http://prometheus:9090"),
    "jaeger": ("jaeger", "http://jaeger:16686"),
    "victorialogs": ("victoriametrics-logs-datasource", "http://victorialogs:9428"),
    "alertmanager": ("alertmanager", "http://alertmanager:9093"),
}
# The label the collector's span_metrics connector writes on exemplars (Tempo's generator would
# write traceID); tests/e2e/test_grafana_queries.py checks it against live exemplars too.
EXEMPLAR_TRACE_ID_LABEL = "trace_id"
# Where compose puts them: config-init copies ./grafana/* to the hitl-config volume, mounted at
# /etc/hitl (compose.stack.yaml).
DASHBOARDS_MOUNT = "/etc/hitl/grafana/dashboards"
PROVISIONING_MOUNT = "/etc/hitl/grafana/provisioning"
CONFIG_MOUNT = "/etc/hitl/grafana/grafana.ini"


def _datasources() -> dict[str, dict]:
    """The datasources as Grafana sees them: provisioning's `$$` escape undone."""
    raw = yaml.safe_load(DATASOURCES_FILE.read_text().replace("$$", "$"))
    return {ds["uid"]: ds for ds in raw["datasources"]}


def _ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(GRAFANA_INI.read_text())
    return parser


def test_datasources_have_fixed_uids_types_and_compose_urls():
    datasources = _datasources()
    assert {uid: (ds["type"], ds["url"]) for uid, ds in datasources.items()} == EXPECTED
    assert [uid for uid, ds in datasources.items() if ds.get("isDefault")] == ["prometheus"]


def test_datasources_reference_each_other_by_existing_uids_of_the_right_type():
    datasources = _datasources()

    def points_to(uid: str, kind: str) -> None:
        assert uid in datasources, f"no datasource with uid {uid!r}"
        assert datasources[uid]["type"] == EXPECTED[kind][0], f"{uid!r} is not a {kind} datasource"

    prom = datasources["prometheus"]["jsonData"]
    points_to(prom["alertmanagerUid"], "alertmanager")
    for destination in prom["exemplarTraceIdDestinations"]:
        points_to(destination["datasourceUid"], "jaeger")

    jaeger = datasources["jaeger"]["jsonData"]
    points_to(jaeger["tracesToLogsV2"]["datasourceUid"], "victorialogs")
    points_to(jaeger["tracesToMetrics"]["datasourceUid"], "prometheus")
    assert jaeger["nodeGraph"]["enabled"] is True

    for derived in datasources["victorialogs"]["jsonData"]["derivedFields"]:
        points_to(derived["datasourceUid"], "jaeger")


def test_exemplars_link_on_the_label_the_pipeline_writes():
    destinations = _datasources()["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert [d["name"] for d in destinations] == [EXEMPLAR_TRACE_ID_LABEL]


def test_logs_link_to_traces_by_the_trace_id_field():
    derived = _datasources()["victorialogs"]["jsonData"]["derivedFields"]
    assert [(d["matcherType"], d["matcherRegex"]) for d in derived] == [("label", "trace_id")]
    assert all(d["url"] == "${__value.raw}" for d in derived)


def test_trace_links_are_scoped_to_the_span():
    jaeger = _datasources()["jaeger"]["jsonData"]
    logs = jaeger["tracesToLogsV2"]
    assert logs["customQuery"] and "${__trace.traceId}" in logs["query"]
    metrics = jaeger["tracesToMetrics"]
    assert {t["value"] for t in metrics["tags"]} == {"instance", "http_route"}
    assert metrics["queries"], "trace to metrics needs queries"
    for query in metrics["queries"]:
        assert "$__tags" in query["query"], f"{query['name']} is not limited to the span's service/route"


def test_every_dollar_in_provisioning_is_escaped():
    """Grafana expands $VAR/${VAR} from its environment in provisioning files; a Grafana template
    variable must be written $$ or it silently becomes an empty string."""
    for path in (DATASOURCES_FILE, PROVIDERS_FILE):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            lone = [m.group() for m in re.finditer(r"\$+", line) if len(m.group()) % 2]
            assert not lone, f"{path.name}:{number}: unescaped $ in {line.strip()!r}"
    assert "$${__trace.traceId}" in DATASOURCES_FILE.read_text()


def test_dashboard_provider_reads_the_mounted_generated_json():
    providers = yaml.safe_load(PROVIDERS_FILE.read_text())["providers"]
    assert [p["options"]["path"] for p in providers] == [DASHBOARDS_MOUNT]
    assert all(p["type"] == "file" and p["allowUiUpdates"] is False for p in providers)
    home = _ini()["dashboards"]["default_home_dashboard_path"]
    assert home.startswith(DASHBOARDS_MOUNT + "/")
    assert (GRAFANA / "dashboards" / Path(home).name).is_file()


def test_no_default_credentials_no_sign_up_and_anonymous_off():
    ini = _ini()
    assert not ini.get("security", "admin_password", fallback=""), "admin password must come from the environment"
    assert ini.getboolean("users", "allow_sign_up") is False
    assert ini.getboolean("users", "allow_org_create") is False
    assert ini.getboolean("auth.anonymous", "enabled") is False
    assert ini.get("auth.anonymous", "org_role") == "Viewer"
    assert ini.get("paths", "provisioning") == PROVISIONING_MOUNT


def _service(name: str) -> dict:
    service = (yaml.safe_load(COMPOSE.read_text()).get("services") or {}).get(name)
    assert service is not None, f"{COMPOSE.name} has no {name} service"
    return service


def _grafana_service() -> dict:
    return _service("grafana")


def _mounts(service: dict) -> dict[str, str]:
    """{container path: host path} of a compose service's bind mounts (short or long syntax)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        mounts[target] = source
    return mounts


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_puts_provisioning_dashboards_and_config_where_grafana_reads_them():
    # config-init copies /src/... to the volume's root; Grafana mounts that volume at /etc/hitl.
    copied = {"/etc/hitl" + target.removeprefix("/src"): source.rstrip("/")
              for target, source in _mounts(_service("config-init")).items() if target.startswith("/src/")}
    assert copied.get(PROVISIONING_MOUNT) == "./grafana/provisioning"
    assert copied.get(DASHBOARDS_MOUNT) == "./grafana/dashboards"
    assert copied.get(CONFIG_MOUNT) == "./grafana/grafana.ini"
    assert _mounts(_grafana_service()).get("/etc/hitl") == "hitl-config"
    assert _environment(_grafana_service()).get("GF_PATHS_CONFIG") == CONFIG_MOUNT


def test_compose_requires_an_admin_password_and_installs_the_logs_plugin():
    env = _environment(_grafana_service())
    password = env.get("GF_SECURITY_ADMIN_PASSWORD", "")
    assert ":?" in password or "GF_SECURITY_ADMIN_PASSWORD__FILE" in env, \
        "compose must refuse to start Grafana without an admin password (${VAR:?message} or a secret file)"
    plugins = env.get("GF_PLUGINS_PREINSTALL_SYNC", "")
    assert re.search(r"(^|,)victoriametrics-logs-datasource@\S+", plugins), \
        "GF_PLUGINS_PREINSTALL_SYNC must install a pinned victoriametrics-logs-datasource"
