"""Every gateway emits the same span-metric series, told apart only by collector_instance_id: every
recording rule, alert, SLO rule and dashboard query must sum it away, or a panel would draw three
lines (or a third of the truth) and an alert fire once per gateway. Checked on the live HA stack
after traffic went through all three gateways (test_shards runs first: the file names sort).
"""

from __future__ import annotations

import pytest

from dashboards.queries import PROMETHEUS, panel_queries
from tests.e2e.backends import prom_query
from tests.e2e.test_grafana_queries import promql_result

LABEL = "collector_instance_id"


def test_no_recorded_series_and_no_alert_keeps_the_gateway_label(ha_stack):
    recorded = prom_query(ha_stack.prometheus_url, f'count by (__name__) ({{__name__=~".+:.+", {LABEL}!=""}})')
    assert not recorded, f"recording rules that keep {LABEL}: {[s['metric']['__name__'] for s in recorded]}"
    # The raw span metrics do carry it (one series per gateway): the check above is not vacuous.
    raw = prom_query(ha_stack.prometheus_url, f'count by ({LABEL}) (traces_span_metrics_calls_total)')
    assert len(raw) == ha_stack.gateways
    assert not prom_query(ha_stack.prometheus_url, f'ALERTS{{{LABEL}!=""}}')
    assert prom_query(ha_stack.prometheus_url, 'service:http_server_requests:rate5m{deployment_environment_name="ha-shards"}')


@pytest.mark.parametrize("query", [q for q in panel_queries({"env": "ha-shards"}) if q.datasource == PROMETHEUS],
                         ids=lambda q: q.where)
def test_no_dashboard_query_returns_one_series_per_gateway(ha_stack, query):
    result = promql_result(ha_stack.prometheus_url, query.text)
    kept = [s["metric"] for s in result if LABEL in s["metric"]]
    assert not kept, f"{query.where}: {query.text}\nreturns series per gateway: {kept[:3]}"
