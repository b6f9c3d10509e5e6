#!/usr/bin/env bash
# The test command (README): installs the Python dependencies into a virtualenv cached outside
# the checkout (keyed by pyproject.toml), builds the native stack's pinned binaries (cached
# outside the checkout), starts a throwaway PostgreSQL and Redis, runs pytest with any arguments
# given (the end-to-end tests start their own native stack), and stops them again. Needs
# python3.11, Go, and Debian's postgresql and redis-server packages (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/venv.sh

# The end-to-end tests run the native stack: build its pinned binaries first, with progress shown
# (a no-op when cached; about 12 minutes on a cold machine, see README).
echo "== building the native stack's binaries (cached in ${HITL_STACK_CACHE:-~/.cache/hitl-stack})" >&2
bash stack/build.sh

echo "== starting PostgreSQL and Redis for the tests" >&2
eval "$(bash scripts/test-services.sh start)"
trap 'bash scripts/test-services.sh stop' EXIT

set +e
"$venv/bin/python" -m pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" = 5 ]; then echo "no tests ran" >&2; exit 1; fi
exit "$status"
