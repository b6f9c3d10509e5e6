"""The native (no-Docker) HITL monitoring stack: build, start, check and stop it.

``python3 -m stack build|up|down|status`` - see ``python3 -m stack --help``.

Builds the pinned binaries (stack/build.sh), renders the repository's config files for
localhost into a run directory and runs every backend as a detached local process listening on
127.0.0.1 only: PostgreSQL and Redis (Debian packages), Jaeger, VictoriaLogs, the OpenTelemetry
Collector, Prometheus, Alertmanager, then the app and the simulator. Standard library and PyYAML
(the configs it derives are loaded, changed and dumped as data).
"""
