"""Business: what the reviewers and the pipeline are doing - reviews submitted and decided by
decision and severity, how long decisions take, the queue still waiting and how old it is, and
the code-host actions: those that failed, and the outbox of those not carried out yet.

The queue and the outbox are state every process reads from the one database; they are read
from the newest reading (recording rules `*:newest`, prometheus/rules/recording.yml), never
summed over processes, which would count them once per process and once more for a process
that stopped within the hour."""

from dashboards import objectives as o
from dashboards.panels import (
    UID_BUSINESS, app_metric, bargauge_panel, env_variable, heatmap_panel, logs_panel, logsql,
    new_dashboard, prom, quantile, rate, row, service_variable, stat_panel, steps, table_panel, timeseries_panel,
)

CREATED = "hitl_reviews_created_total"
DECISIONS = "hitl_decisions_total"
DECISION_BUCKET = "hitl_decision_duration_seconds_bucket"
PENDING = "service_severity:hitl_reviews_pending:newest"
OLDEST = "service_severity:hitl_reviews_pending_oldest_age_seconds:newest"
OUTBOX = "service:hitl_actions_outbox_entries:newest"
OUTBOX_AGE = "service:hitl_actions_outbox_oldest_age_seconds:newest"
OUTBOX_OVERDUE = "service:hitl_actions_outbox_overdue_seconds:newest"
FAILED_FOR_GOOD = "service_action:hitl_actions_failed:newest"
ACTIONS = "hitl_actions_total"
FAILED_ACTIONS = app_metric(ACTIONS, 'hitl_action_outcome="failed"')

HOUR = 3600
WAITING = steps("green", (o.WAITING_REVIEWS[0], "yellow"), (o.WAITING_REVIEWS[1], "red"))
OLD = steps("green", (o.OLDEST_WAITING_REVIEW_SECONDS[0], "yellow"), (o.OLDEST_WAITING_REVIEW_SECONDS[1], "red"))


def build():
    return (
        new_dashboard(
            UID_BUSINESS,
            "HITL / Business",
            "Reviews submitted and decided, decision latency, the waiting queue and failed code-host actions.",
            "business",
        )
        .with_variable(env_variable())
        .with_variable(service_variable())
        .with_row(row("In the selected time range"))
        .with_panel(stat_panel(
            "Reviews submitted",
            "APVs the pipeline submitted for human review in the selected time range.",
            [prom(f"sum(increase({app_metric(CREATED)}[$__range]))", instant=True)],
            unit="short", decimals=0, sparkline=False, thresholds=steps("blue"),
        ))
        .with_panel(stat_panel(
            "Decisions taken",
            "Decisions reviewers recorded (approve, reject, modify, escalate) in the selected time range.",
            [prom(f"sum(increase({app_metric(DECISIONS)}[$__range]))", instant=True)],
            unit="short", decimals=0, sparkline=False, thresholds=steps("blue"),
        ))
        .with_panel(stat_panel(
            "Waiting for a decision",
            "Reviews pending or escalated right now, all severities.",
            [prom(f"sum({app_metric(PENDING)})")],
            unit="short", decimals=0, thresholds=WAITING,
        ))
        .with_panel(stat_panel(
            "Oldest waiting review",
            "How long the oldest review still waiting has waited. Yellow after 4 hours, red after a day: a "
            "critical CVE should not wait that long for a human.",
            [prom(f"max({app_metric(OLDEST)})")],
            unit="s", thresholds=OLD,
        ))
        .with_panel(stat_panel(
            "Median decision time",
            "Median time from a review's submission to its decision over the selected time range.",
            [prom(f"histogram_quantile(0.5, sum by (le) (increase({app_metric(DECISION_BUCKET)}[$__range])))", instant=True)],
            unit="s", sparkline=False, thresholds=OLD,
        ))
        .with_panel(stat_panel(
            "Failed code-host actions",
            "Share of code-host actions (merge, close, request changes, escalate) that failed after a decision in "
            "the selected time range; failed ones are retried, and stay failed after the last attempt.",
            [prom(f"(sum(increase({FAILED_ACTIONS}[$__range])) or vector(0)) / sum(increase({app_metric(ACTIONS)}[$__range]))",
                  instant=True)],
            unit="percentunit", decimals=1, sparkline=False,
            thresholds=steps("green", (o.FAILED_ACTION_RATIO[0], "yellow"), (o.FAILED_ACTION_RATIO[1], "red")),
        ))
        .with_row(row("Flow of reviews"))
        .with_panel(timeseries_panel(
            "Reviews submitted by severity",
            "APVs submitted per hour, by CVE severity.",
            [prom(f"{HOUR} * sum by (hitl_review_severity) ({rate(app_metric(CREATED))})", "{{hitl_review_severity}}")],
            unit="short", width=12, stack=True,
        ))
        .with_panel(timeseries_panel(
            "Decisions by decision",
            "Decisions per hour by kind: approve, reject, modify, escalate.",
            [prom(f"{HOUR} * sum by (hitl_decision) ({rate(app_metric(DECISIONS))})", "{{hitl_decision}}")],
            unit="short", width=12, stack=True,
        ))
        .with_panel(table_panel(
            "Decisions by decision and severity",
            "Decisions in the selected time range for each combination of decision and severity - e.g. how many "
            "critical CVEs were rejected.",
            [prom(f"sum by (hitl_decision, hitl_review_severity) (increase({app_metric(DECISIONS)}[$__range]))",
                  instant=True, table_format=True)],
            unit="short", width=12,
        ))
        .with_panel(heatmap_panel(
            "Decision time distribution",
            "How long reviews waited for their decision (submission to decision), per bucket over time: seconds "
            "for the simulator, hours to days for people.",
            [prom(f"sum by (le) (increase({app_metric(DECISION_BUCKET)}[$__rate_interval]))", "{{le}}", heatmap_format=True)],
            unit="s", width=12,
        ))
        .with_panel(timeseries_panel(
            "Decision time by decision (p50 / p90)",
            "Median and 90th percentile of the time to decide, by kind of decision.",
            [
                prom(quantile(0.5, app_metric(DECISION_BUCKET), by="hitl_decision", window="30m"), "p50 {{hitl_decision}}"),
                prom(quantile(0.9, app_metric(DECISION_BUCKET), by="hitl_decision", window="30m"), "p90 {{hitl_decision}}"),
            ],
            unit="s", width=12,
        ))
        .with_panel(timeseries_panel(
            "Code-host actions by outcome",
            "Actions per hour after decisions, by action and outcome (succeeded; skipped when no code host is "
            "configured or the review has no pull request; failed). Failed actions are the ones to look at.",
            [prom(f"{HOUR} * sum by (hitl_action, hitl_action_outcome) ({rate(app_metric(ACTIONS))})",
                  "{{hitl_action}} {{hitl_action_outcome}}")],
            unit="short", width=12, stack=True,
        ))
        .with_row(row("The queue"))
        .with_panel(bargauge_panel(
            "Waiting by severity",
            "Reviews pending or escalated now, per severity.",
            [prom(f"sum by (hitl_review_severity) ({app_metric(PENDING)})", "{{hitl_review_severity}}", instant=True)],
            unit="short", width=12, thresholds=WAITING,
        ))
        .with_panel(bargauge_panel(
            "Oldest waiting review by severity",
            "Age of the oldest review still waiting, per severity. Yellow after 4 hours, red after a day.",
            [prom(f"max by (hitl_review_severity) ({app_metric(OLDEST)})", "{{hitl_review_severity}}", instant=True)],
            unit="s", width=12, thresholds=OLD,
        ))
        .with_row(row("Actions not carried out yet (the outbox)"))
        .with_panel(stat_panel(
            "Actions waiting",
            "Decided actions the code host has not carried out yet: an attempt in flight, or a retry waiting for "
            "its time. Each is carried out once by some process (docs/observability.md, the outbox).",
            [prom(f"sum({app_metric(OUTBOX)})")],
            unit="short", decimals=0, width=6, thresholds=steps("green"),
        ))
        .with_panel(stat_panel(
            "Oldest action waiting",
            "Time since the decision of the oldest action not carried out yet (retries back off for about a "
            "minute before an action fails for good).",
            [prom(f"max({app_metric(OUTBOX_AGE)})")],
            unit="s", width=6, thresholds=steps("green"),
        ))
        .with_panel(stat_panel(
            "Most overdue action",
            "How far the most overdue action is past its retry time or its attempt's lease. Red at the "
            "ActionsOverdue threshold: no process is carrying actions out.",
            [prom(f"max({app_metric(OUTBOX_OVERDUE)})")],
            unit="s", width=6, thresholds=steps("green", (o.ACTIONS_OVERDUE_SECONDS, "red")),
        ))
        .with_panel(stat_panel(
            "Actions failed for good",
            "Actions that failed on every attempt and wait for a person (ActionsFailed; `python -m app "
            "retry-failed-actions` once the code host works).",
            [prom(f"sum({app_metric(FAILED_FOR_GOOD)})")],
            unit="short", decimals=0, width=6, thresholds=steps("green", (1, "red")),
        ))
        .with_panel(logs_panel(
            "Decision log",
            "The service's log record for each decision, with its review id, severity and decision. The trace_id "
            "field links to the request's trace in Jaeger.",
            [logsql('service.name:="$service" hitl.decision:*')],
        ))
    )
