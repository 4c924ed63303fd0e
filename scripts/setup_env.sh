#!/usr/bin/env bash
# Create .venv and install cxr with the exact versions of constraints.txt.
# Idempotent: skips the install when constraints.txt and pyproject.toml are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${CXR_VENV:-.venv}
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PY=$candidate; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup: no python3.11 found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || {
  echo "setup: cxr's lock (constraints.txt) is for Python 3.11; $PY is $("$PY" -V 2>&1)." >&2
  echo "setup: set PYTHON=/path/to/python3.11" >&2
  exit 1
}

want=$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-64)
stamp="$VENV/.cxr-install-stamp"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
log="$VENV/install.log"
echo "setup: installing cxr and its locked dependencies into $VENV (a few minutes the first time; log: $log)"
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -c constraints.txt -e '.[dev]' >"$log" 2>&1; then
  grep -v 'is ignored: it is neither a file nor a directory' "$log" | tail -n 30 >&2
  echo "setup: pip install failed (full log: $log)" >&2
  exit 1
fi
if ! "$VENV/bin/python" -m pip check >>"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "setup: pip check found conflicting versions" >&2
  exit 1
fi
echo "$want" > "$stamp"
echo "setup: done"
