# Sourced by scripts/test.sh and scripts/run.sh: makes sure the virtualenv with the project and
# its test dependencies exists (cached outside the checkout, keyed by pyproject.toml) and sets
# $venv to it. Needs python3.11.
cache=${HITL_CACHE:-$HOME/.cache/hitl}
key=$(sha256sum pyproject.toml | cut -c1-12)
venv=${HITL_VENV:-$cache/venv-$key}
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.installed" ]; then
  echo "== installing Python dependencies into $venv (first run only)" >&2
  rm -rf "$venv"
  command -v python3 >/dev/null || { echo "python3 not found: apt-get install python3 python3-venv" >&2; return 1; }
  if ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "python3 -m venv needs ensurepip: apt-get install python3-venv" >&2
    return 1
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -e '.[test]'
  touch "$venv/.installed"
else
  # The checkout may have moved (a fresh clone): point the editable install at this one.
  "$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e . >/dev/null 2>&1 \
    || "$venv/bin/pip" install --quiet --no-deps -e .
fi
