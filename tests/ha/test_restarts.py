"""Restart durability on the native HA stack: a store that restarts keeps what it had.

Jaeger (Badger) and VictoriaLogs restart in test_faults' stores-down fault, and every trace and log
record sent before the stop is checked afterwards. Here: Prometheus. Series are on disk (the TSDB
and its WAL); exemplars live only in memory and in the WAL, so they come back by WAL replay - a
restart keeps them, but they are never compacted into blocks and go when the WAL segment holding
them is truncated (after a head compaction, about every 2 hours): exemplars are recent-only.
"""

from __future__ import annotations

import time

from harness.polling import wait_for
from tests.e2e.backends import prom_exemplars, prom_query
from tests.ha.load import SteadyLoad, counted_requests

ENV = "ha-restart"


def test_a_killed_prometheus_replica_comes_back_with_its_series_and_exemplars(ha_stack, start_app):
    replica = ha_stack.prometheus_urls[1]
    app = start_app(ENV)
    started = time.time()
    load = SteadyLoad(app.url, app.keys, rate=10).start()
    time.sleep(10)
    load.stop()
    sent = load.counts()
    wait_for("the requests counted by replica 1", lambda: counted_requests(replica, ENV) == sent, timeout=60)
    query = f'traces_span_metrics_duration_seconds_bucket{{deployment_environment_name="{ENV}"}}'
    before = wait_for("exemplars in replica 1", lambda: prom_exemplars(replica, query, started - 5), timeout=60)
    time.sleep(3)  # the WAL is written as samples arrive; give the last scrape time to land
    at = time.time()

    ha_stack.kill("prometheus-1")
    ha_stack.start()
    wait_for("replica 1 answering again", lambda: prom_query(replica, "up"), timeout=120)

    assert counted_requests(replica, ENV, window=f"{int(time.time() - started) + 30}s") == sent
    after = prom_exemplars(replica, query, started - 5, at)
    ids = {(e["labels"]["trace_id"], e["labels"]["span_id"]) for e in before}
    assert ids <= {(e["labels"]["trace_id"], e["labels"]["span_id"]) for e in after}, \
        f"{len(ids)} exemplars before the kill, {len(after)} after"
    print(f"\nreplica 1 SIGKILLed and restarted: {sum(sent.values())} requests still counted, "
          f"{len(ids)} exemplars of {len(ids)} back from the WAL")
