#!/usr/bin/env bash
# Create .venv with the tested dependency set and genforge installed in editable mode.
# constraints.txt pins torch to the local CPU wheel on these machines (see ENVIRONMENT.md);
# elsewhere use `pip install -e '.[dev]'` and let pip pick the torch build for your machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
  -r requirements-lock.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
echo "genforge installed in $(pwd)/.venv"
