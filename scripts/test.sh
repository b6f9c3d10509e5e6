#!/usr/bin/env bash
# The test command (README): installs the Python dependencies into a virtualenv cached outside
# the checkout (keyed by pyproject.toml), builds the native stack's pinned binaries (cached
# outside the checkout), starts the project's Docker engine and builds the Compose CLI and the
# image twins for the compose tests, starts a throwaway PostgreSQL and Redis, runs pytest with
# any arguments given (the end-to-end tests start their own native stack and compose stack), and
# stops them again. Needs root (dockerd), python3.11, Go, and Debian's postgresql and
# redis-server packages (.ci/run installs them; docker.io is installed here if missing).
#
# --lanes (first argument): the suite as two pytest processes side by side, see below. Measured on
# the 2-core CI machine: 32 min instead of ~40, but three timing-bound tests failed under the
# contention, so .ci/run does not use it; with more cores it is the faster way.
set -euo pipefail
cd "$(dirname "$0")/.."

lanes=0
if [ "${1:-}" = --lanes ]; then lanes=1; shift; fi

# This command proves everything (README), so a test whose prerequisite is missing (a test
# database, a binary) fails instead of skipping, on a developer's machine as in CI
# (tests/conftest.py: missing_prerequisite). CI=false in the environment keeps the skips.
export CI="${CI:-true}"

. scripts/venv.sh

# Fixed ports the tests listen on inside the kernel's ephemeral range are reserved for the run, so
# no client's source port takes one first (tests/support/ports.py); put back as found at the end.
reserved=/proc/sys/net/ipv4/ip_local_reserved_ports
reserved_before=
if [ -w "$reserved" ]; then
  reserved_before=$(cat "$reserved")
  to_reserve=$("$venv/bin/python" -m tests.support.ports)
  if [ -n "$to_reserve" ]; then
    echo "${reserved_before:+$reserved_before,}$to_reserve" >"$reserved"
    echo "== reserved the tests' fixed ports in the ephemeral range: $to_reserve" >&2
  fi
else
  echo "== cannot write $reserved (not root?): a fixed port may rarely be taken as a source port" >&2
fi

# The end-to-end tests run the native stack; the compose tests the Compose CLI; tests/kubernetes a
# kube-apiserver, controller manager, kubectl, etcd and kubeconform; the benchmark smoke tests
# telemetrygen and vegeta; the generated files' drift check (tests/test_generated.py) Sloth.
# Each build.sh call is a no-op when cached (cold: docs/benchmarks.md).
# - The stack and the Compose CLI are built first, in the background while the Docker engine
#   starts and the twins that need no native binary are built (debootstrap, the Go twin).
# - The late targets, which only a few tests need, are built at idle CPU priority from the start
#   and on while the suite runs: those tests run last and wait for them (tests/conftest.py). On a
#   new machine that takes the Kubernetes build (~20 min of a build slot) off the time to the
#   first test, and it uses the cores while the suite waits on outages and alert timers.
late_targets="kubernetes etcd kubeconform telemetrygen vegeta sloth"
echo "== building the pinned binaries (cached in ${HITL_STACK_CACHE:-~/.cache/hitl-stack})" >&2
late_dir=$(mktemp -d -t hitl-late-build.XXXXXX)
export HITL_LATE_BUILD_TARGETS=$late_targets HITL_LATE_BUILD_STATUS=$late_dir/status HITL_LATE_BUILD_LOG=$late_dir/build.log
# Each in a process group of its own, so that an early exit stops the compilers too.
# shellcheck disable=SC2086 # one target per word
setsid -w bash -c 'chrt --idle 0 bash stack/build.sh "$@" >"$HITL_LATE_BUILD_LOG" 2>&1; echo $? >"$HITL_LATE_BUILD_STATUS.tmp"
  mv "$HITL_LATE_BUILD_STATUS.tmp" "$HITL_LATE_BUILD_STATUS"' late-build $late_targets &
late_pid=$!
# shellcheck disable=SC2046 # one target per word
setsid -w bash stack/build.sh $(bash stack/build.sh --list | grep -vxF "${late_targets// /$'\n'}") compose &
build_pid=$!
cleanup() {
  if [ -w "$reserved" ] && [ -n "${to_reserve:-}" ]; then echo "$reserved_before" >"$reserved"; fi
  if [ -n "$build_pid" ]; then kill -- "-$build_pid" 2>/dev/null || true; fi
  # Still building (no status yet): the tests that needed it did not run; stop it.
  if [ ! -e "$HITL_LATE_BUILD_STATUS" ]; then kill -- "-$late_pid" 2>/dev/null || true; fi
  if [ -s "$HITL_LATE_BUILD_LOG" ]; then
    echo "== the late build (${late_targets}):" >&2
    grep -E ': (done|cached|FAILED)|all .*(done|cached)' "$HITL_LATE_BUILD_LOG" >&2 || true
  fi
  rm -rf "$late_dir"
  if [ -n "${services_started:-}" ]; then bash scripts/test-services.sh stop; fi
  if [ -n "${engine_started:-}" ]; then bash scripts/docker-engine.sh stop; fi
}
trap cleanup EXIT

# The compose tests run compose.yaml on a Docker engine of the project's own (Debian's docker.io,
# installed if missing), with the pinned Compose CLI (built above) and local twins of the images no registry
# here serves (tests/compose/twins). All cached outside the checkout; first run: see README.
echo "== starting the Docker engine (scripts/docker-engine.sh)" >&2
engine_env=$(bash scripts/docker-engine.sh start)
eval "$engine_env"
engine_started=1
echo "== building the image twins that need no native binary (cached)" >&2
bash tests/compose/twins/build.sh --no-binaries
wait "$build_pid" || { echo "stack/build.sh failed (its output is above)" >&2; exit 1; }
build_pid=  # done: its number may belong to another process group by the end
echo "== building the other image twins (cached)" >&2
bash tests/compose/twins/build.sh

echo "== starting PostgreSQL and Redis for the tests" >&2
services_env=$(bash scripts/test-services.sh start)
eval "$services_env"
services_started=1

set +e
if [ "$lanes" = 1 ]; then
  # Two pytest processes side by side (tests/conftest.py, lane_engine): the engine's lane writes to
  # a log, shown when both are done; the other prints as it goes. Most of both lanes is waiting
  # (outages, alert `for`s, peer timeouts), so two share the two cores well.
  lane_log=$(mktemp -t hitl-lane-engine.XXXXXX.log)
  # Each its own temporary folder: pytest prunes the older ones of a shared default.
  lane_tmp=$(mktemp -d -t hitl-lanes.XXXXXX)
  "$venv/bin/python" -m pytest -p no:cacheprovider --basetemp="$lane_tmp/engine" -m lane_engine "$@" >"$lane_log" 2>&1 &
  engine_pid=$!
  "$venv/bin/python" -m pytest -p no:cacheprovider --basetemp="$lane_tmp/other" -m "not lane_engine" "$@"
  other=$?
  wait "$engine_pid"
  engine=$?
  echo "== lane_engine (the Docker engine's tests, alerting, telemetry, Kubernetes, benchmarks):" >&2
  cat "$lane_log"
  rm -rf "$lane_log" "$lane_tmp"
  echo "== lanes: other exit $other, lane_engine exit $engine" >&2
  set -e
  # 5 = no tests selected in that lane (e.g. -k picked tests of one lane only).
  if [ "$other" = 5 ] && [ "$engine" = 5 ]; then echo "no tests ran" >&2; exit 1; fi
  for status in "$other" "$engine"; do
    if [ "$status" != 0 ] && [ "$status" != 5 ]; then exit "$status"; fi
  done
  exit 0
fi
"$venv/bin/python" -m pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" = 5 ]; then echo "no tests ran" >&2; exit 1; fi
exit "$status"
