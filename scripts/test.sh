#!/usr/bin/env bash
# The test command (README): installs the Python dependencies into a virtualenv cached outside
# the checkout (keyed by pyproject.toml), starts a throwaway PostgreSQL and Redis, runs pytest
# with any arguments given, and stops them again. Needs python3.11, and Debian's postgresql and
# redis-server packages (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${HITL_CACHE:-$HOME/.cache/hitl}
key=$(sha256sum pyproject.toml | cut -c1-12)
venv=${HITL_VENV:-$cache/venv-$key}
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.installed" ]; then
  echo "== installing Python dependencies into $venv (first run only)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -e '.[test]'
  touch "$venv/.installed"
else
  "$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e . >/dev/null 2>&1 \
    || "$venv/bin/pip" install --quiet --no-deps -e .
fi

echo "== starting PostgreSQL and Redis for the tests" >&2
eval "$(bash scripts/test-services.sh start)"
trap 'bash scripts/test-services.sh stop' EXIT

set +e
"$venv/bin/python" -m pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" = 5 ]; then echo "no tests ran" >&2; exit 1; fi
exit "$status"
