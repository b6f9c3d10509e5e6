#!/usr/bin/env bash
# Starts (or stops) a throwaway PostgreSQL and Redis for the test suite, on ports of their own
# so they never collide with the native stack (5432/6379): PostgreSQL on 55432, Redis on 56379.
# Data lives under $HITL_TEST_SERVICES (default /tmp/hitl-test-services-UID: the postgres user
# must reach it, and root's home is closed to it) and is recreated on
# every start. Needs Debian's postgresql and redis-server packages (.ci/run installs them).
set -euo pipefail

dir=${HITL_TEST_SERVICES:-${TMPDIR:-/tmp}/hitl-test-services-$(id -u)}
pg_port=${HITL_TEST_PG_PORT:-55432}
redis_port=${HITL_TEST_REDIS_PORT:-56379}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$pg_bin" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 1; }

# PostgreSQL refuses to run as root: run it as the 'postgres' user when we are root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

stop() {
  if [ -f "$dir/pg/PG_VERSION" ]; then as_pg "$pg_bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true; fi
  if [ -f "$dir/redis.pid" ]; then kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; rm -f "$dir/redis.pid"; fi
}

start() {
  stop
  rm -rf "$dir/pg" && mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres; chown postgres "$dir"; fi
  as_pg "$pg_bin/initdb" -D "$dir/pg" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  as_pg "$pg_bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
    -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
    || { tail -n 30 "$dir/pg.log" >&2; exit 1; }
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  echo "export TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$pg_port/postgres"
  echo "export TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
  echo "export HITL_TEST_PG_BIN=$pg_bin HITL_TEST_PG_DATA=$dir/pg"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
