"""The service's real telemetry, captured by a real OTLP receiver, held against
app/telemetry/contract.yaml — plus the shape of the decision trace, trace ids on logs, and no
credential or personal data anywhere in what was exported.

Every supported mode runs: both HTTP server instrumentations (HITL_HTTP_INSTRUMENTATION) under
the default semantic conventions and the two an operator may choose with
OTEL_SEMCONV_STABILITY_OPT_IN (`http`, and `http/dup`, which adds the old convention's
attributes - http.url with its query string, http.user_agent, net.peer.ip - back)."""

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from app.auth.models import Role
from harness.databases import fresh_postgres_database, migrated_with_keys
from harness.app_process import AppProcess, free_port
from harness.code_host import CodeHostServer
from harness.factories import decision_body, review_body
from harness.otlp_sink import OtlpSink
from harness.polling import wait_for

CONTRACT = yaml.safe_load((Path(__file__).parents[2] / "app/telemetry/contract.yaml").read_text())
CODE_HOST_TOKEN = "code-host-secret-token-123"
EMAIL = "alice.reviewer@example.com"
USER_AGENT = "alice-laptop-agent/1.0"
QUERY_SECRET = "query-secret"
INSTRUMENTATIONS = ("contrib", "fastapi")
SEMCONV_OPT_INS = (None, "http", "http/dup")  # None: the service's default
MODES = [(i, s) for i in INSTRUMENTATIONS for s in SEMCONV_OPT_INS]
SERVER, CLIENT, INTERNAL = 2, 3, 1
KIND = {("sum", True): "counter", ("sum", False): "up_down_counter", ("histogram", None): "histogram", ("gauge", None): "gauge"}


@pytest.fixture(scope="module", params=MODES, ids=[f"{i}-{s or 'default'}" for i, s in MODES])
def run(tmp_path_factory, request):
    """Drive every code path of the service once, as a process exporting to an OTLP sink."""
    instrumentation, semconv = request.param
    tmp = tmp_path_factory.mktemp("contract")
    sink = OtlpSink()
    code_host = CodeHostServer(fail_next=1)
    redis_port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    admin = request.getfixturevalue("postgres_admin_url")
    database_url = fresh_postgres_database(admin)
    tokens = migrated_with_keys(database_url, {f"contract-{r.value}": r for r in Role})
    keys = {r.value: tokens[f"contract-{r.value}"] for r in Role}
    app = AppProcess(
        env={
            "DATABASE_URL": database_url,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "OTEL_SERVICE_NAME": "hitl-review",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "CODE_HOST_URL": code_host.url,
            "CODE_HOST_TOKEN": CODE_HOST_TOKEN,
            "ACTION_RETRY_BASE_SECONDS": "0.2",
            "ACTION_RETRY_POLL_SECONDS": "0.2",
            "PENDING_GAUGE_REFRESH_SECONDS": "0.2",
            "HITL_HTTP_INSTRUMENTATION": instrumentation,
            **({"OTEL_SEMCONV_STABILITY_OPT_IN": semconv} if semconv else {}),
        },
        log_path=tmp / "app.log",
    )
    c = httpx.Client(base_url=app.url, timeout=10)

    def as_(role):
        return {"X-API-Key": keys[role], "From": EMAIL, "User-Agent": USER_AGENT}

    reviews = [
        c.post("/api/v1/reviews", json=review_body(severity="critical"), headers=as_("pipeline")).json(),
        c.post("/api/v1/reviews", json=review_body(severity="high"), headers=as_("pipeline")).json(),
        c.post("/api/v1/reviews", json=review_body(severity="low", pr_number=None), headers=as_("pipeline")).json(),
    ]
    c.get("/api/v1/reviews", params={"severity": "critical", "token": QUERY_SECRET}, headers=as_("viewer"))
    c.get(f"/api/v1/reviews/{reviews[0]['id']}", headers=as_("viewer"))
    c.get("/api/v1/stats", headers=as_("viewer"))  # miss
    c.get("/api/v1/stats", headers=as_("viewer"))  # hit
    c.get("/api/v1/stats", headers={"X-API-Key": "hitl_wrong-key"})  # 401
    c.post("/api/v1/reviews", json={"apv_code": EMAIL}, headers=as_("pipeline"))  # 422
    decided = {
        "approve": c.post(f"/api/v1/reviews/{reviews[0]['id']}/decisions", json=decision_body("approve"), headers=as_("reviewer")).json(),
        "reject": c.post(f"/api/v1/reviews/{reviews[1]['id']}/decisions", json=decision_body("reject"), headers=as_("reviewer")).json(),
        "escalate": c.post(f"/api/v1/reviews/{reviews[2]['id']}/decisions", json=decision_body("escalate"), headers=as_("reviewer")).json(),
        "modify": c.post(f"/api/v1/reviews/{reviews[2]['id']}/decisions", json=decision_body("modify"), headers=as_("reviewer")).json(),
    }
    assert decided["approve"]["action_status"] == "merge_failed"  # the code host failed once
    wait_for(
        "the failed merge to be retried successfully",
        lambda: c.get(f"/api/v1/decisions/{decided['approve']['id']}", headers=as_("viewer")).json()["action_status"] == "succeeded",
        timeout=15,
    )
    redis.terminate()
    redis.wait()
    assert c.get("/api/v1/stats", headers=as_("viewer")).status_code == 200  # degraded: no cache
    time.sleep(1.5)  # a metric export or two after the last request
    shutdown_seconds = app.stop()
    sink.stop()
    code_host.close()
    yield {"sink": sink, "keys": keys, "code_host": code_host, "decided": decided, "reviews": reviews,
           "shutdown_seconds": shutdown_seconds,
           "mode": {"http_instrumentation": instrumentation, "semconv": semconv or "default"}}


def emitted_in(metric: dict, mode: dict) -> bool:
    return all(mode[setting] in values for setting, values in metric.get("only_when", {}).items())


def test_metrics_match_the_contract_exactly(run):
    seen = run["sink"].metrics
    expected = {m["name"]: m for m in CONTRACT["metrics"] if emitted_in(m, run["mode"])}
    assert sorted(seen) == sorted(expected), "metric names differ from contract.yaml"
    for name, spec in expected.items():
        m = seen[name]
        assert m.unit == spec["unit"], f"{name}: unit {m.unit!r}"
        assert KIND[(m.data, m.monotonic)] == spec["instrument"], f"{name}: {m.data} monotonic={m.monotonic}"
        assert m.attribute_keys == set(spec["attributes"]), f"{name}: attributes {sorted(m.attribute_keys)}"


def test_resource_identifies_the_service(run):
    resource = run["sink"].spans[0].resource
    assert set(CONTRACT["resource_attributes"]) <= set(resource)
    assert resource["service.name"] == "hitl-review"
    assert resource["deployment.environment.name"] == "test"
    from app import __version__

    assert resource["service.version"] == __version__


def test_business_metric_values(run):
    sink = run["sink"]
    created = sink.latest("hitl.reviews.created")
    assert {dict(k)["hitl.review.severity"]: v for k, v in created.items()} == {"critical": 1, "high": 1, "low": 1}
    decisions = {dict(k)["hitl.decision"]: v for k, v in sink.latest("hitl.decisions").items()}
    assert decisions == {"approve": 1, "reject": 1, "escalate": 1, "modify": 1}
    actions = {(dict(k)["hitl.action"], dict(k)["hitl.action.outcome"]): v for k, v in sink.latest("hitl.actions").items()}
    assert actions == {
        ("merge", "failed"): 1, ("merge", "succeeded"): 1, ("close", "succeeded"): 1,
        ("escalate", "succeeded"): 1, ("request_changes", "skipped"): 1,
    }
    durations = sink.latest("hitl.decision.duration")
    assert sum(count for count, _ in durations.values()) == 4
    pending = {dict(k)["hitl.review.severity"]: v for k, v in sink.latest("hitl.reviews.pending").items()}
    assert pending == {"critical": 0, "high": 0, "medium": 0, "low": 0}
    hits = sum(sink.latest("hitl.cache.hits").values())
    assert hits >= 1
    assert sum(sink.latest("hitl.cache.errors").values()) >= 1


def test_span_attributes_match_the_contract(run):
    expected = {name: set(keys) for name, keys in CONTRACT["span_attributes"].items()}
    seen: dict[str, set] = {}
    for span in run["sink"].spans:
        custom = {k for k in span.attributes if k.startswith("hitl.")}
        assert custom <= expected.get(span.name, set()), f"{span.name} has {custom}, not in contract.yaml"
        if span.name in expected:
            seen.setdefault(span.name, set()).update(custom)
        assert not set(CONTRACT["forbidden_span_attributes"]) & set(span.attributes), span.name
        if span.kind == SERVER:
            assert not set(CONTRACT["forbidden_server_span_attributes"]) & set(span.attributes), span.name
        for key in set(CONTRACT["url_span_attributes"]) & set(span.attributes):
            assert not {"?", "#", "@"} & set(span.attributes[key]), f"{span.name}: {key}={span.attributes[key]}"
    assert seen == expected, "contract attributes never emitted"


def test_the_decision_is_one_trace_from_http_to_the_code_host(run):
    spans = run["sink"].spans
    server = next(
        s for s in spans
        if s.kind == SERVER and s.attributes.get("http.route") == "/api/v1/reviews/{review_id}/decisions"
        and s.attributes.get("hitl.decision") == "approve"
    )
    trace = [s for s in spans if s.trace_id == server.trace_id]
    scopes = {s.scope for s in trace}
    assert "opentelemetry.instrumentation.sqlalchemy" in scopes  # database
    assert any(s.name == "DEL" and s.scope.endswith("redis") for s in trace)  # cache invalidation
    action = next(s for s in trace if s.name == "action merge")
    client = next(s for s in trace if s.kind == CLIENT and s.scope.endswith("httpx") and s.parent_span_id == action.span_id)
    assert client.attributes["http.response.status_code"] == 502
    retry = [s for s in trace if s.name == "action retry"]
    assert retry, "the retry links back into the deciding trace"
    assert not any(s.name == "connect" for s in spans), "no per-checkout connect spans"
    assert not any(s.name.endswith((" http send", " http receive")) for s in spans), "no ASGI send/receive spans"
    headers = [c.headers.get("traceparent", "") for c in run["code_host"].calls if c.path.endswith("/merge")]
    assert headers and all(h.split("-")[1] == server.trace_id for h in headers)
    assert all(c.headers["authorization"] == f"Bearer {CODE_HOST_TOKEN}" for c in run["code_host"].calls)


def test_logs_carry_trace_ids_and_only_contract_attributes(run):
    logs = run["sink"].logs
    spans = {s.trace_id for s in run["sink"].spans}
    decision_logs = [r for r in logs if r.body == "decision recorded"]
    assert len(decision_logs) == 4
    assert all(r.trace_id in spans and r.span_id.strip("0") for r in decision_logs)
    custom = set().union(*({k for k in r.attributes if k.startswith("hitl.")} for r in logs))
    assert custom == set(CONTRACT["log_attributes"])


def test_no_credential_or_personal_data_is_exported(run):
    secrets = [*run["keys"].values(), CODE_HOST_TOKEN, EMAIL, QUERY_SECRET, "hitl_wrong-key", USER_AGENT]
    exported = []
    resources = []
    for s in run["sink"].spans:
        exported += [str(v) for v in s.attributes.values()]
        exported.append(s.status_message)
        for name, attributes in s.events:
            exported += [name, *map(str, attributes.values())]
        resources.append(s.resource)
    for r in run["sink"].logs:
        exported += [str(r.body), *map(str, r.attributes.values())]
        resources.append(r.resource)
    for m in run["sink"].metrics.values():
        exported += [str(v) for a, _ in m.points for v in a.values()]
        resources.append(m.resource)
    for resource in resources:
        exported += [str(v) for v in resource.values()]
    blob = "\n".join(exported)
    assert "HTTP 502" in blob, "the failed action's status description was read"
    leaked = [s for s in secrets if s in blob]
    assert not leaked, f"exported telemetry contains {leaked}"


def test_shutdown_flushes_within_the_grace_period(run):
    assert run["shutdown_seconds"] < 10
