"""Alerts proven end to end: a fault injected in the running service makes the right alert fire
in Prometheus, Alertmanager delivers it to the receiver its severity routes to (a local stand-in
for PagerDuty and Slack), the warning of the same symptom is inhibited by the page, and a
resolved notification follows the recovery.

The stack runs with --fast-alerts (every `for` capped at 5 s, Alertmanager groups for 1-5 s);
the expressions, thresholds and 5-minute windows are the production ones, so the faults must
really move the 5-minute error ratio and p95 across them, and the recovery must really bring
them back (by diluting the window with good traffic, as a recovered service does).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from harness.polling import wait_for
from tests.e2e.backends import prom_query

FAULTS = "/api/v1/admin/faults"
# The faults apply to the API routes (not the admin one); stats is the cheapest of them.
TARGET = "/api/v1/stats"
SLOW_SECONDS = 0.6  # p95 between the 500 ms warning and the 1 s page (the 0.75 s bucket)
# Counts chosen against the production thresholds over the 5-minute window: a clean baseline of
# good requests, then enough slow ones for p95 > 0.5 s (> 5% slow) but a latency-SLO burn well
# under the 6x page, then enough errors for > 1%, then enough good ones for < 0.5% errors and
# < 5% slow again.
BASELINE_REQUESTS = 3000
SLOW_REQUESTS = 400
ERRORS = 100
RECOVERY_REQUESTS = 20000


def firing(prometheus_url: str, alertname: str) -> bool:
    return bool(prom_query(prometheus_url, f'ALERTS{{alertname="{alertname}", alertstate="firing"}}'))


def send(live_app, count: int, threads: int) -> list[int]:
    def batch(n: int) -> list[int]:
        with live_app.client("admin") as client:
            return [client.get(TARGET).status_code for _ in range(n)]

    per_thread = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        return [status for statuses in pool.map(batch, per_thread) for status in statuses]


def set_faults(live_app, **faults) -> None:
    with live_app.client("admin") as client:
        assert client.put(FAULTS, json=faults).status_code == 200


def delivered(stack, alert_sink, what: str, receiver: str, *needles: str, timeout: float = 60):
    """Waits for a notification; on failure says what did arrive and what Alertmanager logged."""
    try:
        return wait_for(what, lambda: alert_sink.received(receiver, *needles), timeout=timeout)
    except AssertionError as e:
        seen = [(n.receiver, n.body.get("payload", {}).get("summary") or n.body.get("status")) for n in
                alert_sink.notifications]
        alerts = [(a["metric"]["alertname"], a["metric"]["alertstate"])
                  for a in prom_query(stack.prometheus_url, "ALERTS")]
        signals = {q: prom_query(stack.prometheus_url, q) for q in (
            "service:http_server_request_duration_seconds:p95_rate5m",
            "service:http_server_errors:ratio_rate5m")}
        raise AssertionError(f"{e}\nreceived: {seen}\nalerts: {alerts}\nsignals: {signals}\n"
                             f"alertmanager log:\n{stack.log('alertmanager')[-1500:]}") from None


def test_the_watchdog_reaches_the_heartbeat_receiver_only(stack, alert_sink):
    wait_for("the Watchdog heartbeat", lambda: alert_sink.received("heartbeat", "Watchdog"), timeout=60)
    assert not alert_sink.received("pagerduty", "Watchdog")
    assert not alert_sink.received("slack", "Watchdog")


def test_faults_page_and_warn_on_the_right_routes_and_resolve(stack, live_app, alert_sink, traffic):
    prom = stack.prometheus_url
    red_alerts = ("HighErrorRate", "ElevatedErrorRate", "HighLatency", "ElevatedLatency")

    # A clean start: the earlier tests' faults diluted out of the 5-minute window.
    assert set(send(live_app, BASELINE_REQUESTS, threads=4)) == {200}
    wait_for("no RED alert firing", lambda: not any(firing(prom, a) for a in red_alerts), timeout=120)
    mark = len(alert_sink.notifications)

    def since_mark(receiver: str, *needles: str):
        return [n for n in alert_sink.notifications[mark:] if n.receiver == receiver
                and all(x in n.text for x in needles)]

    # Latency: slowed requests -> p95 in (0.5, 1] -> ElevatedLatency -> Slack, and no page.
    set_faults(live_app, delay_ratio=1.0, delay_seconds=SLOW_SECONDS)
    assert set(send(live_app, SLOW_REQUESTS, threads=16)) == {200}
    set_faults(live_app)
    wait_for("ElevatedLatency to fire in Prometheus", lambda: firing(prom, "ElevatedLatency"), timeout=90)
    delivered(stack, alert_sink, "ElevatedLatency on the Slack route", "slack", "ElevatedLatency", "FIRING")
    assert not firing(prom, "HighLatency")
    assert not since_mark("pagerduty", "Latency", '"event_action": "trigger"')

    # Errors: requests answered 500 -> HighErrorRate -> PagerDuty; the warning of the same
    # symptom (ElevatedErrorRate) fires too, but the page inhibits its notification.
    set_faults(live_app, error_ratio=1.0)
    assert set(send(live_app, ERRORS, threads=2)) == {500}
    set_faults(live_app)
    wait_for("HighErrorRate to fire in Prometheus", lambda: firing(prom, "HighErrorRate"), timeout=90)
    trigger = delivered(stack, alert_sink, "a PagerDuty trigger for HighErrorRate", "pagerduty",
                        "HighErrorRate", '"event_action": "trigger"')
    assert "dev-routing-key-not-a-secret" in trigger[-1].text  # the key came from its *_file
    assert "runbooks/HighErrorRate.md" in trigger[-1].text
    wait_for("ElevatedErrorRate to fire in Prometheus", lambda: firing(prom, "ElevatedErrorRate"), timeout=60)
    time.sleep(8)  # more than group_wait + group_interval of the fast Alertmanager settings
    assert firing(prom, "HighErrorRate") and firing(prom, "ElevatedErrorRate")
    # (A RESOLVED message may still arrive for an episode of the earlier tests' traffic.)
    assert not since_mark("slack", "ElevatedErrorRate", "FIRING"), "the page did not inhibit the warning"

    # Recovery: good traffic dilutes the 5-minute window below every threshold.
    assert set(send(live_app, RECOVERY_REQUESTS, threads=4)) == {200}
    delivered(stack, alert_sink, "a PagerDuty resolve for HighErrorRate", "pagerduty",
              "HighErrorRate", '"event_action": "resolve"', timeout=120)
    delivered(stack, alert_sink, "a resolved Slack message for ElevatedLatency", "slack",
              "ElevatedLatency", "RESOLVED", timeout=120)
    # Nothing went to the wrong receiver.
    assert not since_mark("slack", "HighErrorRate")
    assert not since_mark("pagerduty", "ElevatedLatency")
    assert not since_mark("pagerduty", "ElevatedErrorRate")


def test_a_new_version_is_announced_by_e_mail(stack, live_app, smtp_sink, tmp_path):
    """DeploymentStarted from the real signal: a process of another service.version starts
    reporting next to the running one. Info alerts go to e-mail (and only there)."""
    version = "0.2.0-e2e"
    attributes = f"deployment.environment.name=e2e,service.version={version}"
    stop = live_app.start_another(stack, "next-version", tmp_path, attributes)
    try:
        wait_for(f"DeploymentStarted for {version} in Prometheus", lambda: prom_query(
            stack.prometheus_url,
            f'ALERTS{{alertname="DeploymentStarted", alertstate="firing", service_version="{version}"}}'), timeout=120)
        wait_for(f"an e-mail announcing {version}", lambda: smtp_sink.received("DeploymentStarted", version),
                 timeout=60)
    finally:
        stop()
    assert not routed_elsewhere(stack, "DeploymentStarted")


def routed_elsewhere(stack, alertname: str) -> bool:
    """Whether Alertmanager routed the alert to any receiver but e-mail."""
    import httpx

    alerts = httpx.get(f"{stack.alertmanager_url}/api/v2/alerts",
                       params={"filter": f'alertname="{alertname}"'}, timeout=10).json()
    return any(a["receivers"][0]["name"] != "email-info" for a in alerts)


def test_an_action_that_fails_on_every_attempt_warns_until_it_is_retried(stack, live_app, alert_sink, traffic):
    """ActionsFailed end to end: the code host refuses a merge on every attempt (the backoff runs
    out in seconds with the e2e settings), Slack hears of it; the runbook's mitigation
    (`python -m app retry-failed-actions` once the code host works) carries it out and resolves it."""
    from harness.factories import decision_body, review_body

    prom = stack.prometheus_url
    code_host = live_app.code_host
    code_host.fail_for(600)
    try:
        with live_app.client("pipeline") as client:
            review = client.post("/api/v1/reviews", json=review_body()).json()
        with live_app.client("reviewer") as client:
            decision = client.post(f"/api/v1/reviews/{review['id']}/decisions", json=decision_body("approve")).json()
            assert decision["action_status"] == "merge_failed"

            def attempts_done():
                row = client.get(f"/api/v1/decisions/{decision['id']}").json()
                return row["action_attempts"] >= 5 and row
            wait_for("every attempt of the merge to fail", attempts_done, timeout=60)
        wait_for("ActionsFailed to fire in Prometheus", lambda: firing(prom, "ActionsFailed"), timeout=90)
        delivered(stack, alert_sink, "ActionsFailed on Slack", "slack", "ActionsFailed", "FIRING", "merge")
    finally:
        code_host.failing_until = 0.0
    performed_before = len(code_host.performed)
    assert "1 failed action(s) due again" in live_app.app_command(stack, "retry-failed-actions")
    with live_app.client("viewer") as client:
        wait_for("the retried merge to succeed", lambda: client.get(
            f"/api/v1/decisions/{decision['id']}").json()["action_status"] == "succeeded", timeout=30)
    assert len(code_host.performed) == performed_before + 1
    delivered(stack, alert_sink, "ActionsFailed resolved on Slack", "slack", "ActionsFailed", "RESOLVED", timeout=120)


def test_postgresql_stopped_pages_database_down_within_the_plans_minute(stack, live_app, alert_sink, traffic):
    """DatabaseDown from the service's own probe (hitl_database_up): PostgreSQL is stopped, the
    page reaches PagerDuty within the plan's window (1 minute; the stack's `for` is capped at 5 s,
    so this measures how fast the probe's 0 travels), and resolves once PostgreSQL is back."""
    prom = stack.prometheus_url
    fresh = 'and on (job, instance) (time() - hitl_database_probe_time_seconds < 45)'
    probe = f'max(hitl_database_up{{service_name="hitl-review", db_system_name="postgresql"}} {fresh})'
    # Steady state: only the live process's probes are fresh (earlier tests stopped others; a
    # stopped process's last probe counts for up to 45 s, see the rule).
    wait_for("the live process alone to probe PostgreSQL, and find it up", lambda: [
        s for s in prom_query(prom, f'count(hitl_database_up{{service_name="hitl-review"}} {fresh}) == 1')
    ] and [s for s in prom_query(prom, probe) if s["value"][1] == "1"], timeout=90)
    assert not firing(prom, "DatabaseDown")
    mark = len(alert_sink.notifications)
    stopped = time.monotonic()
    stack.stop_service("postgres")
    try:
        wait_for("the probe's 0 in Prometheus", lambda: [s for s in prom_query(prom, probe) if s["value"][1] == "0"],
                 timeout=60, interval=0.5)
        seen_down = time.monotonic() - stopped
        wait_for("DatabaseDown to fire in Prometheus", lambda: firing(prom, "DatabaseDown"), timeout=60, interval=0.5)
        fired = time.monotonic() - stopped
        delivered(stack, alert_sink, "a PagerDuty trigger for DatabaseDown", "pagerduty", "DatabaseDown",
                  '"event_action": "trigger"', timeout=max(1, 60 - (time.monotonic() - stopped)))
        paged_after = time.monotonic() - stopped
        assert any("DatabaseDown" in n.text for n in alert_sink.notifications[mark:])
    finally:
        stack.start_service("postgres")
    print(f"\nPostgreSQL stopped: probe 0 in Prometheus after {seen_down:.1f} s, DatabaseDown firing after "
          f"{fired:.1f} s (for: capped at 5 s), PagerDuty paged after {paged_after:.1f} s")
    assert paged_after < 60
    delivered(stack, alert_sink, "a PagerDuty resolve for DatabaseDown", "pagerduty", "DatabaseDown",
              '"event_action": "resolve"', timeout=120)
    with live_app.client("viewer") as client:  # the service recovered by itself
        wait_for("the service to answer again", lambda: client.get("/api/v1/stats").status_code == 200, timeout=60)
