#!/usr/bin/env bash
# The run command (README).
#   bash scripts/run.sh                 the whole system, natively: builds the pinned collector,
#                                       Prometheus, Alertmanager, Jaeger and VictoriaLogs (first
#                                       time: ~30 min on 2 cores, docs/benchmarks.md), starts them
#                                       with PostgreSQL, Redis, the app
#                                       and the simulator, waits for health, prints the URLs
#   bash scripts/run.sh down|status     stop everything / show what runs (python -m stack ...)
#   bash scripts/run.sh app             only the review service, with its embedded defaults
#                                       (SQLite file under var/, in-process cache, no telemetry
#                                       export unless OTEL_EXPORTER_OTLP_ENDPOINT is set)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh

case ${1:-up} in
  app)
    shift || true
    # Without an OTLP endpoint there is nobody to export to: do not retry against localhost.
    if [ -z "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]; then export OTEL_SDK_DISABLED=${OTEL_SDK_DISABLED:-true}; fi
    "$venv/bin/python" -m stack check-app-port "$@"
    exec "$venv/bin/python" -m app serve "$@" ;;
  up)
    shift || true
    exec "$venv/bin/python" -m stack up --python "$venv/bin/python" "$@" ;;
  *)
    exec "$venv/bin/python" -m stack "$@" ;;
esac
