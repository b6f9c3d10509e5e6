#!/usr/bin/env bash
# A Docker engine of the project's own, for the compose tests: Debian's docker.io (Engine 20.10
# with containerd and runc), started as `dockerd` with its own data root, exec root and socket,
# so it never touches (or needs) a system engine. Images and BuildKit's cache live in the data
# root under ${HITL_DOCKER_HOME:-~/.cache/hitl-docker}, so a second run finds every image built.
#
#   bash scripts/docker-engine.sh start   installs docker.io if missing, starts the engine unless
#                                          it already answers, prints `export DOCKER_HOST=...`
#   bash scripts/docker-engine.sh stop    stops an engine this script started
#   bash scripts/docker-engine.sh env     prints the export line only
#
# Needs root (dockerd does). Ports the tests publish are bound to 127.0.0.1.
set -euo pipefail

home=${HITL_DOCKER_HOME:-$HOME/.cache/hitl-docker}
sock=$home/run/docker.sock
host=unix://$sock

answers() { DOCKER_HOST=$host docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install() {
  command -v dockerd >/dev/null && return
  echo "== apt-get install docker.io" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  # The package may start a system engine of its own; ours does not use it.
  service docker stop >/dev/null 2>&1 || true
}

start() {
  [ "$(id -u)" = 0 ] || { echo "dockerd needs root" >&2; exit 1; }
  install
  mkdir -p "$home/data" "$home/exec" "$home/run"
  if ! answers; then
    # A pid file left by an engine that died would make dockerd refuse to start.
    rm -f "$home/run/docker.pid"
    # setsid: the engine outlives this shell (CI and the tests call `stop`).
    setsid dockerd --data-root "$home/data" --exec-root "$home/exec" --host "$host" \
      --pidfile "$home/run/docker.pid" >>"$home/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 120); do answers && break; sleep 0.5; done
    answers || { tail -n 30 "$home/dockerd.log" >&2; echo "dockerd did not answer on $sock" >&2; exit 1; }
    touch "$home/run/started-by-script"
  fi
  echo "export DOCKER_HOST=$host"
}

stop() {
  [ -f "$home/run/started-by-script" ] || return 0
  local pid
  pid=$(cat "$home/run/docker.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
    # dockerd stops its containers (10 s each at most) and its containerd before exiting.
    for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$home/run/started-by-script"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  env) echo "export DOCKER_HOST=$host" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
