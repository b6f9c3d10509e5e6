#!/usr/bin/env bash
# TEST FIXTURES: builds local twins of the images compose.yaml names but this machine cannot pull
# (no container registry is reachable), tagged exactly as compose names them, so that
# `docker compose build` and `docker compose up` run on the project's real files. A twin is never
# what a user runs; each Dockerfile beside this script says which upstream properties it
# reproduces, where they were read, and how it differs.
#
#   base images (imported, not pulled):
#     hitl-twin-base/debian:bookworm-rN  debootstrap --variant=minbase of Debian 12 (+ updates, security)
#     hitl-twin-base/busybox:<v>       Debian's busybox-static with its applets, passwd and group
#   twins:
#     python:$PYTHON_VERSION-slim, golang:$GOLANG_VERSION, alpine:$ALPINE_VERSION    (bases of ours)
#     postgres:$POSTGRES_VERSION, redis:$REDIS_VERSION                  (Debian's packages)
#     prom/prometheus, prom/alertmanager, jaegertracing/jaeger, victoriametrics/victoria-logs
#                                       (the native stack's binaries, stack/build.sh)
#
# Each twin carries a label with a hash of its inputs (Dockerfile folder, binaries, versions);
# one whose label matches is not rebuilt, so a second run takes seconds. The images live in the
# engine's data root (scripts/docker-engine.sh). The debootstrap tarball is cached under
# ${HITL_TWINS_CACHE:-~/.cache/hitl-stack/twins}/.
#
# Usage: DOCKER_HOST=... bash tests/compose/twins/build.sh [--print-tags | --no-binaries]
#   --no-binaries: only the twins that need no native binary (scripts/test.sh builds them while
#   stack/build.sh runs)
# Needs root (debootstrap), debootstrap (installed if missing), and the native binaries.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
set -a
# shellcheck source=../../../versions.env
. "$repo/versions.env"
set +a
cache=${HITL_TWINS_CACHE:-${HITL_STACK_CACHE:-$HOME/.cache/hitl-stack}/twins}
# The machine's CA bundle: what reaches the registries here goes through a TLS-inspecting proxy
# whose CA only this bundle carries.
ca_bundle=${HITL_TWIN_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
label=org.hitl.twin.inputs

log() { printf '[twins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# name -> the tag compose.yaml uses for it
declare -A tags=(
  [python]="python:$PYTHON_VERSION-slim"
  [golang]="golang:$GOLANG_VERSION"
  [alpine]="alpine:$ALPINE_VERSION"
  [postgres]="postgres:$POSTGRES_VERSION"
  [redis]="redis:$REDIS_VERSION"
  [prometheus]="prom/prometheus:v$PROMETHEUS_VERSION"
  [alertmanager]="prom/alertmanager:v$ALERTMANAGER_VERSION"
  [jaeger]="jaegertracing/jaeger:$JAEGER_VERSION"
  [victorialogs]="victoriametrics/victoria-logs:v$VICTORIALOGS_VERSION"
)
# Build order: a twin's base first (alpine is the jaeger twin's base).
order=(python golang alpine postgres redis prometheus alertmanager jaeger victorialogs)

if [[ ${1:-} == --print-tags ]]; then
  for n in "${order[@]}"; do echo "$n=${tags[$n]}"; done
  exit 0
fi

docker version --format '{{.Server.Version}}' >/dev/null \
  || { echo "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset}); see scripts/docker-engine.sh" >&2; exit 1; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# ---- base images ------------------------------------------------------------------------------

# rN: the recipe below; bump it when the recipe changes (the image is cached by its tag).
debian_base=hitl-twin-base/debian:bookworm-r2
make_debian_base() {
  have_image "$debian_base" && return
  local tarball=$cache/${debian_base##*:}.tar
  if [[ ! -s $tarball ]]; then
    command -v debootstrap >/dev/null || {
      log "apt-get install debootstrap"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    }
    local root=$cache/.debian-rootfs.$$
    rm -rf "$root"; mkdir -p "$root" "$cache"
    log "debootstrap --variant=minbase bookworm (about 2 minutes)"
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
      || { tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    # debootstrap configures the release only; the point releases and security fixes (what
    # Debian's current packages are, e.g. postgresql-15 15.20) come from these two.
    printf '%s\n' "deb http://deb.debian.org/debian bookworm main" \
      "deb http://deb.debian.org/debian bookworm-updates main" \
      "deb http://deb.debian.org/debian-security bookworm-security main" >"$root/etc/apt/sources.list"
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  docker import "$tarball" "$debian_base" >/dev/null
  log "imported $debian_base"
}

busybox_base=
make_busybox_base() {
  local work=$cache/.busybox.$$ deb version
  rm -rf "$work"; mkdir -p "$work/deb" "$work/root"/{bin,etc/ssl/certs,tmp,root}
  (cd "$work/deb" && apt-get download busybox-static >/dev/null 2>&1) \
    || { apt-get update -qq && (cd "$work/deb" && apt-get download busybox-static >/dev/null); }
  deb=$(ls "$work"/deb/busybox-static_*.deb)
  version=$(dpkg-deb -f "$deb" Version | tr '+~:' '---')
  busybox_base=hitl-twin-base/busybox:$version
  if have_image "$busybox_base"; then rm -rf "$work"; return; fi
  dpkg-deb -x "$deb" "$work/x"
  cp "$work/x/bin/busybox" "$work/root/bin/busybox"
  local applet
  for applet in $("$work/root/bin/busybox" --list); do
    [[ $applet == busybox ]] || ln -s busybox "$work/root/bin/$applet"
  done
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/home:/bin/false' >"$work/root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' >"$work/root/etc/group"
  cp "$ca_bundle" "$work/root/etc/ssl/certs/ca-certificates.crt"
  chmod 1777 "$work/root/tmp"; chmod 0700 "$work/root/root"
  tar -C "$work/root" --numeric-owner --owner=0 --group=0 -cf - . \
    | docker import --change 'ENV PATH=/bin' --change 'CMD ["sh"]' - "$busybox_base" >/dev/null
  rm -rf "$work"
  log "imported $busybox_base"
}

# ---- twins ------------------------------------------------------------------------------------

# twin NAME BASE [FILE=SOURCE]...: build the folder NAME with the given extra files staged beside
# its Dockerfile, unless the image's label says it was built from the same inputs.
twin() {
  local name=$1 base=$2; shift 2
  local tag=${tags[$name]} ctx=$cache/.ctx-$name.$$ inputs
  inputs=$( {
      echo "$tag $base $(docker image inspect -f '{{.Id}}' "$base" 2>/dev/null) $PYTHON_VERSION $GOLANG_VERSION $ALPINE_VERSION"
      (cd "$here/$name" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
      local spec src
      for spec in "$@"; do
        src=${spec#*=}
        if [[ -d $src ]]; then echo "$spec $(du -sb "$src" | cut -f1)"; else echo "$spec $(sha256sum <"$src")"; fi
      done
    } | sha256sum | cut -c1-16)
  if [[ $(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$tag" 2>/dev/null) == "$inputs" ]]; then
    log "$tag: up to date"; return
  fi
  local start=$SECONDS spec
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp -r "$here/$name/." "$ctx/"
  for spec in "$@"; do cp -a "${spec#*=}" "$ctx/${spec%%=*}"; done
  log "$tag: building"
  # The classic builder: a twin needs nothing BuildKit adds, and it needs no buildx plugin.
  if ! DOCKER_BUILDKIT=0 docker build -q --label "$label=$inputs" --build-arg "BASE=$base" \
      --build-arg "GOLANG_VERSION=$GOLANG_VERSION" --build-arg "ALPINE_VERSION=$ALPINE_VERSION" \
      -t "$tag" "$ctx" >"$cache/$name.log" 2>&1; then
    tail -n 30 "$cache/$name.log" >&2; rm -rf "$ctx"; log "$tag: FAILED"; exit 1
  fi
  rm -rf "$ctx"
  log "$tag: built in $((SECONDS - start))s"
}

mkdir -p "$cache"
make_debian_base
make_busybox_base

goroot=$(go env GOROOT)
[[ $(go env GOVERSION) == "go$GOLANG_VERSION" ]] \
  || { echo "the golang twin is this machine's Go: $(go env GOVERSION) is not go$GOLANG_VERSION (versions.env)" >&2; exit 1; }

twin python "$debian_base" ca-certificates.crt="$ca_bundle"
twin golang "$debian_base" ca-certificates.crt="$ca_bundle" go="$goroot"
twin alpine "$busybox_base"
twin postgres "$debian_base"
twin redis "$debian_base"
if [[ ${1:-} == --no-binaries ]]; then log "the twins without native binaries ready"; exit 0; fi

# Native binaries: BINARY=PATH lines from stack/build.sh (which builds them if needed).
declare -A bin
while IFS='=' read -r name path; do bin[$name]=$path; done < <(bash "$repo/stack/build.sh" --paths)

twin prometheus "$busybox_base" prometheus="${bin[prometheus]}" promtool="${bin[promtool]}"
twin alertmanager "$busybox_base" alertmanager="${bin[alertmanager]}" amtool="${bin[amtool]}"
twin jaeger "${tags[alpine]}" jaeger="${bin[jaeger]}"
twin victorialogs scratch ca-certificates.crt="$ca_bundle" victoria-logs="${bin[victoria-logs]}"
log "all twins ready"
