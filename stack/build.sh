#!/usr/bin/env bash
# stack/build.sh - build the pinned binaries of the native (no-Docker) monitoring stack.
#
# Builds every Go component at the version pinned in versions.env, from the Go module proxy, into
# a cache outside the checkout:
#     ${HITL_STACK_CACHE:-$HOME/.cache/hitl-stack}/bin/<name>-<version>/<binary>
# A target whose binaries all exist is skipped, so a second run takes well under a second.
# Builds are written to a temporary directory and renamed into place only when complete.
#
# Usage:  stack/build.sh [--jobs N] [TARGET...]     build (default: all targets)
#         stack/build.sh --paths                    print BINARY=PATH for every binary, build nothing
#         stack/build.sh --list                     print the targets
# Targets: otelcol-hitl otelcol-hitl-agent jaeger prometheus alertmanager victoria-logs sloth
#          composecheck (only when named: the compose.yaml validator of tests/compose, not part
#          of the running stack)
#          compose (only when named: the docker-compose CLI the tests/compose tests run)
#          telemetrygen (only when named: the load generator of benchmarks/gateway_capacity.py)
#          vegeta (only when named: the open-loop HTTP load generator of benchmarks/app_capacity.py)
#          kubernetes, etcd, kubeconform (only when named: the API server, controller manager,
#          kubectl, their store and the schema checker that tests/kubernetes runs)
#
# How each one is built (found by trying; see the comments at each target):
#   otelcol-hitl   OpenTelemetry Collector Builder with otel-collector/builder-config.yaml
#   otelcol-hitl-agent  the same, with otel-collector/agent-builder-config.yaml
#   prometheus     go install (v0.316.0's go.mod has no replace/exclude lines, so this works)
#   alertmanager   a copy of the module plus placeholder UI assets (the module lacks them)
#   jaeger         wrapper module stack/gomod/jaeger (upstream go.mod has a replace line)
#   victoria-logs  go install
#   sloth          go install
#   composecheck   go build of tools/composecheck (compose-spec/compose-go pinned in its go.mod)
#   compose        wrapper module tools/compose (upstream go.mod has exclude lines)
#   telemetrygen   go install (contrib's cmd/telemetrygen, at OTELCOL_VERSION)
#   vegeta         go install
#   kubernetes     wrapper module stack/gomod/kubernetes (staging modules replaced by releases)
#   etcd           wrapper module stack/gomod/etcd (upstream go.mod has replace lines)
#   kubeconform    go install
#
# Environment: HITL_STACK_CACHE (cache root), HITL_STACK_BUILD_JOBS (parallel builds, default 2
# for two cores; measured: a cold build of all six took 709 s with the module cache filled, and
# the machine peaked at ~5.2 GB used memory), GOCACHE / GOMODCACHE (Go defaults,
# persistent), GOTOOLCHAIN (default "local": use the installed Go; set go1.27.3 only when a
# pinned module requires it).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
set -a
# shellcheck source=../versions.env
. "$REPO_ROOT/versions.env"
set +a

CACHE_ROOT=${HITL_STACK_CACHE:-$HOME/.cache/hitl-stack}
BIN_ROOT=$CACHE_ROOT/bin
LOG_ROOT=$CACHE_ROOT/logs
WORK_ROOT=$CACHE_ROOT/work
JOBS=${HITL_STACK_BUILD_JOBS:-2}

export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
# -trimpath: reproducible paths; -buildvcs=false: the wrapper modules live inside this git
# checkout and VCS stamping would make the binary depend on the checkout's state.
export GOFLAGS="-trimpath -buildvcs=false"
export CGO_ENABLED=0
LDFLAGS_BASE="-s -w"

# Longest builds first, so two parallel slots finish close together.
ALL_TARGETS=(otelcol-hitl jaeger otelcol-hitl-agent prometheus alertmanager victoria-logs sloth)
# Built only when named on the command line (or with --paths composecheck).
EXTRA_TARGETS=(composecheck compose telemetrygen vegeta kubernetes etcd kubeconform)

# Debian 12 and Ubuntu 24.04 ship an older Go than the pinned modules need (GOLANG_VERSION).
check_go() {
  local want=${GOLANG_VERSION%.*} have
  have=$(go env GOVERSION 2>/dev/null) || have=
  have=${have#go}
  if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" = "$want" ]; then return 0; fi
  log "Go >= $want is needed (found: ${have:-none}). Either unpack go$GOLANG_VERSION.linux-amd64.tar.gz from"
  log "go.dev/dl into /usr/local and put /usr/local/go/bin on PATH, or, with the distribution's Go >= 1.21"
  log "(apt-get install golang-go), let it fetch the toolchain: export GOTOOLCHAIN=go$GOLANG_VERSION"
  return 1
}

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# A collector's cache directory includes a hash of its manifest: adding a component to
# a builder manifest must produce a new binary even though OTELCOL_VERSION did not change.
manifest_of() { case $1 in otelcol-hitl) echo "$REPO_ROOT/otel-collector/builder-config.yaml" ;;
                           otelcol-hitl-agent) echo "$REPO_ROOT/otel-collector/agent-builder-config.yaml" ;; esac; }
manifest_hash() { sha256sum "$(manifest_of "$1")" | cut -c1-8; }

# composecheck: the compose-go version its go.mod requires, plus a hash of its sources, so an
# edit to main.go or a bumped go.mod gives a new cache directory.
COMPOSECHECK_DIR=$REPO_ROOT/tools/composecheck
composecheck_version() {
  local v
  v=$(sed -n 's|^require github.com/compose-spec/compose-go/v2 \(v[^ ]*\)$|\1|p' "$COMPOSECHECK_DIR/go.mod")
  echo "${v:-unknown}-$(cat "$COMPOSECHECK_DIR/go.mod" "$COMPOSECHECK_DIR/go.sum" "$COMPOSECHECK_DIR"/*.go | sha256sum | cut -c1-8)"
}

# compose: a hash of the wrapper's go.mod and go.sum, so a re-tidied wrapper (same compose
# version, different dependency set) gives a new cache directory.
COMPOSE_DIR=$REPO_ROOT/tools/compose
compose_hash() { cat "$COMPOSE_DIR/go.mod" "$COMPOSE_DIR/go.sum" | sha256sum | cut -c1-8; }

# The same for the Kubernetes and etcd wrappers.
gomod_hash() { cat "$REPO_ROOT/stack/gomod/$1/go.mod" "$REPO_ROOT/stack/gomod/$1/go.sum" | sha256sum | cut -c1-8; }

# target -> "<dir-name> <binary> [<binary>...]"
target_spec() {
  case $1 in
    otelcol-hitl|otelcol-hitl-agent) echo "$1-$OTELCOL_VERSION-$(manifest_hash "$1") $1" ;;
    prometheus)    echo "prometheus-$PROMETHEUS_VERSION prometheus promtool" ;;
    alertmanager)  echo "alertmanager-$ALERTMANAGER_VERSION alertmanager amtool" ;;
    jaeger)        echo "jaeger-$JAEGER_VERSION jaeger" ;;
    victoria-logs) echo "victoria-logs-$VICTORIALOGS_VERSION victoria-logs" ;;
    sloth)         echo "sloth-$SLOTH_VERSION sloth" ;;
    composecheck)  echo "composecheck-$(composecheck_version) composecheck" ;;
    compose)       echo "compose-$COMPOSE_VERSION-$(compose_hash) docker-compose" ;;
    telemetrygen)  echo "telemetrygen-$OTELCOL_VERSION telemetrygen" ;;
    vegeta)        echo "vegeta-$VEGETA_VERSION vegeta" ;;
    kubernetes)    echo "kubernetes-$KUBERNETES_VERSION-$(gomod_hash kubernetes) kube-apiserver kube-controller-manager kubectl" ;;
    etcd)          echo "etcd-$ETCD_VERSION-$(gomod_hash etcd) etcd" ;;
    kubeconform)   echo "kubeconform-$KUBECONFORM_VERSION kubeconform" ;;
    *) log "unknown target: $1 (known: ${ALL_TARGETS[*]} ${EXTRA_TARGETS[*]})"; return 2 ;;
  esac
}

is_built() {
  local spec dir b
  spec=$(target_spec "$1")
  read -r dir _ <<<"$spec"
  for b in ${spec#* }; do [[ -x $BIN_ROOT/$dir/$b ]] || return 1; done
}

# Directory of a module version in the module cache (downloads it if needed).
module_dir() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# ---- one function per target; each gets the output directory as $1 -------------------------

# Both collectors (the gateway/single-node one and the agent): one builder, one manifest each.
build_collector() {
  local name=$1 out=$2 work=$WORK_ROOT/$1-$OTELCOL_VERSION manifest
  manifest=$(manifest_of "$name")
  # Every collector component must be at the pinned release (core beta modules v0.X, contrib
  # v0.X, core stable modules v$OTELCOL_STABLE_MODULE_VERSION); refuse a drifted manifest.
  local drift
  drift=$(grep -E '^\s*-\s*gomod:' "$manifest" | grep -vE " v(${OTELCOL_VERSION//./\\.}|${OTELCOL_STABLE_MODULE_VERSION//./\\.})\s*$" || true)
  if [[ -n $drift ]]; then
    echo "$(basename "$manifest") has modules not at v$OTELCOL_VERSION / v$OTELCOL_STABLE_MODULE_VERSION:"; echo "$drift"; return 1
  fi
  mkdir -p "$work/ocb"
  GOBIN=$work/ocb go install -ldflags "$LDFLAGS_BASE" "go.opentelemetry.io/collector/cmd/builder@v$OTELCOL_VERSION"
  rm -rf "$work/$name-dist"
  # output_path in the manifest is relative (./<name>-dist); the builder runs in $work. The
  # builder itself compiles with -trimpath and -ldflags "-s -w".
  (cd "$work" && ./ocb/builder --config "$manifest")
  cp "$work/$name-dist/$name" "$out/"
}
build_otelcol-hitl() { build_collector otelcol-hitl "$1"; }
build_otelcol-hitl-agent() { build_collector otelcol-hitl-agent "$1"; }

build_prometheus() {
  local out=$1
  GOBIN=$out go install \
    -ldflags "$LDFLAGS_BASE -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION"
}

# FILE -> FILE.br: a valid Brotli stream (RFC 7932) holding FILE uncompressed, so no brotli
# tool is needed: stream header WBITS=16 (bit 0), one uncompressed meta-block (ISLAST=0,
# MNIBBLES=4, MLEN-1, ISUNCOMPRESSED=1, padded to a byte), the bytes, then an empty last
# meta-block (ISLAST=1, ISLASTEMPTY=1). For files up to 64 KiB.
brotli_stored() {
  python3 - "$1" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
assert 0 < len(data) <= 65536
bits = 0 | 0 << 1 | 0 << 2 | (len(data) - 1) << 4 | 1 << 20
open(sys.argv[1] + ".br", "wb").write(bits.to_bytes(3, "little") + data + bytes([0b11]))
PY
}

build_alertmanager() {
  # From 0.32 on, ui/web.go embeds ui/app/dist, which the release process generates (Elm and
  # npm builds) and which is not part of the module zip, so `go install` fails with
  # "pattern app/dist: no matching files found". A go build -overlay cannot add the files
  # either (the go command refuses overlays beneath GOMODCACHE). So: copy the module source,
  # add a one-page placeholder for both UIs, and build from the copy. The HTTP API (/api/v2),
  # /-/ready, /metrics and amtool are unaffected; only the web UI is missing.
  local out=$1 src=$WORK_ROOT/alertmanager-$ALERTMANAGER_VERSION/src moddir
  moddir=$(module_dir "github.com/prometheus/alertmanager@v$ALERTMANAGER_VERSION")
  [[ -d $moddir ]] || { echo "module download failed"; return 1; }
  rm -rf "$src"; mkdir -p "$(dirname "$src")"
  cp -r "$moddir" "$src"; chmod -R u+w "$src"
  local ui
  for ui in elm mantine; do
    mkdir -p "$src/ui/app/dist/$ui"
    # ui/web.go serves .html only precompressed: index.html.br to clients that accept br (all
    # browsers; no fallback to .gz), index.html.gz to the others.
    printf '%s\n' '<!doctype html><meta charset="utf-8"><title>Alertmanager</title>' \
      '<p>This Alertmanager was built without its web UI (native HITL stack). Use the API: <a href="/api/v2/alerts">/api/v2/alerts</a>, or amtool.</p>' \
      >"$src/ui/app/dist/$ui/index.html"
    gzip -9 -n -k "$src/ui/app/dist/$ui/index.html"
    brotli_stored "$src/ui/app/dist/$ui/index.html"
    rm "$src/ui/app/dist/$ui/index.html"
  done
  local ld="$LDFLAGS_BASE -X github.com/prometheus/common/version.Version=$ALERTMANAGER_VERSION"
  (cd "$src" && go build -ldflags "$ld" -o "$out/alertmanager" ./cmd/alertmanager \
             && go build -ldflags "$ld" -o "$out/amtool" ./cmd/amtool)
}

build_jaeger() {
  # Jaeger's go.mod has `replace github.com/Shopify/sarama => ... v1.33.0`, so `go install
  # ...@version` refuses it; the wrapper module requires it and copies that replace line.
  local out=$1 wrapper=$REPO_ROOT/stack/gomod/jaeger pinned
  pinned=$(cd "$wrapper" && go list -m -f '{{.Version}}' github.com/jaegertracing/jaeger)
  if [[ $pinned != "$JAEGER_MODULE_VERSION" ]]; then
    echo "stack/gomod/jaeger requires jaeger $pinned but versions.env pins $JAEGER_MODULE_VERSION"; return 1
  fi
  (cd "$wrapper" && go build -mod=readonly -o "$out/jaeger" \
    -ldflags "$LDFLAGS_BASE -X github.com/jaegertracing/jaeger/internal/version.latestVersion=v$JAEGER_VERSION" \
    github.com/jaegertracing/jaeger/cmd/jaeger)
}

build_victoria-logs() {
  local out=$1
  GOBIN=$out go install \
    -ldflags "$LDFLAGS_BASE -X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-logs-v$VICTORIALOGS_VERSION" \
    "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v$VICTORIALOGS_VERSION"
}

build_sloth() {
  local out=$1
  # Sloth reads its version from this variable (else it prints "dev" when built as a main module).
  GOBIN=$out go install -ldflags "$LDFLAGS_BASE -X github.com/slok/sloth/internal/info.Version=v$SLOTH_VERSION" \
    "github.com/slok/sloth/cmd/sloth@v$SLOTH_VERSION"
}

build_composecheck() {
  local out=$1
  (cd "$COMPOSECHECK_DIR" && go build -mod=readonly -ldflags "$LDFLAGS_BASE" -o "$out/composecheck" .)
}

build_telemetrygen() {
  # The load generator of benchmarks/gateway_capacity.py, at the collector's release (its go.mod
  # has no replace lines, so go install works).
  GOBIN=$1 go install -ldflags "$LDFLAGS_BASE" \
    "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@v$OTELCOL_VERSION"
}

# The wrapper modules' pinned version must be versions.env's: a bump changes both or neither.
check_wrapper_pin() {  # DIR MODULE WANT
  local pinned
  pinned=$(cd "$REPO_ROOT/stack/gomod/$1" && go list -m -f '{{.Version}}' "$2")
  [[ $pinned == "$3" ]] || { echo "stack/gomod/$1 requires $2 $pinned but versions.env pins $3"; return 1; }
}

build_kubernetes() {
  # Cold on two cores: ~7 minutes for the API server, ~2.5 for the controller manager (sharing
  # most packages), ~0.5 for kubectl (docs/benchmarks.md). Without the version variables the
  # binaries report v0.0.0-master and kubectl warns about the skew.
  local out=$1 minor
  check_wrapper_pin kubernetes k8s.io/kubernetes "v$KUBERNETES_VERSION"
  minor=${KUBERNETES_VERSION#*.}; minor=${minor%%.*}
  local v=k8s.io/component-base/version
  local ld="$LDFLAGS_BASE -X $v.gitVersion=v$KUBERNETES_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor"
  ld+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
  local cmd
  for cmd in kube-apiserver kube-controller-manager kubectl; do
    (cd "$REPO_ROOT/stack/gomod/kubernetes" && go build -mod=readonly -ldflags "$ld" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd")
  done
}

build_etcd() {
  check_wrapper_pin etcd go.etcd.io/etcd/server/v3 "v$ETCD_VERSION"
  (cd "$REPO_ROOT/stack/gomod/etcd" && go build -mod=readonly -ldflags "$LDFLAGS_BASE" -o "$1/etcd" go.etcd.io/etcd/server/v3)
}

build_vegeta() {
  # Vegeta prints this variable in `vegeta -version` (its Makefile sets it the same way).
  GOBIN=$1 go install -ldflags "$LDFLAGS_BASE -X main.Version=v$VEGETA_VERSION" \
    "github.com/tsenart/vegeta/v12@v$VEGETA_VERSION"
}

build_kubeconform() {
  GOBIN=$1 go install -ldflags "$LDFLAGS_BASE -X main.version=v$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@v$KUBECONFORM_VERSION"
}

build_compose() {
  # Compose's go.mod has `exclude` lines (go-spew, go-difflib), so `go install ...@version`
  # refuses it; the wrapper module requires it and copies that exclude block.
  local out=$1 pinned
  pinned=$(cd "$COMPOSE_DIR" && go list -m -f '{{.Version}}' github.com/docker/compose/v2)
  if [[ $pinned != "v$COMPOSE_VERSION" ]]; then
    echo "tools/compose requires compose $pinned but versions.env pins v$COMPOSE_VERSION"; return 1
  fi
  # `docker-compose version` prints this variable (upstream's Makefile sets it the same way;
  # without it the binary reports "dev").
  (cd "$COMPOSE_DIR" && go build -mod=readonly -o "$out/docker-compose" \
    -ldflags "$LDFLAGS_BASE -X github.com/docker/compose/v2/internal.Version=v$COMPOSE_VERSION" \
    github.com/docker/compose/v2/cmd)
}

# ---- driver ---------------------------------------------------------------------------------

# Runs in a background subshell: build one target into a temp dir, rename into place.
run_target() {
  local t=$1 spec dir final tmp logf start rc
  spec=$(target_spec "$t"); read -r dir _ <<<"$spec"
  final=$BIN_ROOT/$dir tmp=$BIN_ROOT/.$dir.tmp.$BASHPID logf=$LOG_ROOT/$dir.log
  start=$(date +%s)
  log "$t: building $dir (log: $logf)"
  rm -rf "$tmp"; mkdir -p "$tmp"
  set +e
  # Run from the cache, never from inside some go.mod tree the caller happens to be in.
  ( set -euo pipefail; cd "$WORK_ROOT"; "build_$t" "$tmp" ) >"$logf" 2>&1
  rc=$?
  set -e
  local b
  if [[ $rc -eq 0 ]]; then
    for b in ${spec#* }; do [[ -x $tmp/$b ]] || { echo "binary $b missing after build" >>"$logf"; rc=1; }; done
  fi
  if [[ $rc -ne 0 ]]; then
    log "$t: FAILED after $(( $(date +%s) - start ))s; last lines of $logf:"
    tail -n 25 "$logf" | sed 's/^/    /' >&2
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$final"; mv "$tmp" "$final"
  log "$t: done in $(( $(date +%s) - start ))s -> $final"
}

main() {
  local targets=() mode=build
  while [[ $# -gt 0 ]]; do
    case $1 in
      --jobs) JOBS=$2; shift 2 ;;
      --jobs=*) JOBS=${1#--jobs=}; shift ;;
      --paths) mode=paths; shift ;;
      --list) printf '%s\n' "${ALL_TARGETS[@]}"; return 0 ;;
      -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; return 0 ;;
      -*) log "unknown option $1"; return 2 ;;
      *) target_spec "$1" >/dev/null; targets+=("$1"); shift ;;
    esac
  done
  [[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")

  if [[ $mode == paths ]]; then
    local t spec dir b
    for t in "${targets[@]}"; do
      spec=$(target_spec "$t"); read -r dir _ <<<"$spec"
      for b in ${spec#* }; do echo "$b=$BIN_ROOT/$dir/$b"; done
    done
    return 0
  fi

  check_go || return 1
  mkdir -p "$BIN_ROOT" "$LOG_ROOT" "$WORK_ROOT"
  local todo=() t
  for t in "${targets[@]}"; do
    if is_built "$t"; then log "$t: cached"; else todo+=("$t"); fi
  done
  [[ ${#todo[@]} -gt 0 ]] || { log "all ${#targets[@]} targets cached in $BIN_ROOT"; return 0; }

  local overall=$(date +%s) failed=0 running=0
  log "building ${#todo[@]} target(s), $JOBS at a time, with $(go version | cut -d' ' -f3)"
  for t in "${todo[@]}"; do
    while [[ $running -ge $JOBS ]]; do
      wait -n || failed=$((failed + 1)); running=$((running - 1))
    done
    run_target "$t" & running=$((running + 1))
  done
  while [[ $running -gt 0 ]]; do
    wait -n || failed=$((failed + 1)); running=$((running - 1))
  done
  if [[ $failed -gt 0 ]]; then
    log "$failed of ${#todo[@]} build(s) FAILED ($(( $(date +%s) - overall ))s)"; return 1
  fi
  log "all ${#todo[@]} build(s) done in $(( $(date +%s) - overall ))s"
}

main "$@"
