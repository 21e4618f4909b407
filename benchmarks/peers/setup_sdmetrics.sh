#!/usr/bin/env bash
# sdmetrics (MIT) in its own venv: benchmarks/peers/.venv-sdmetrics. Never a genforge
# dependency: it pulls in copulas, which is BUSL-1.1.
#   bash benchmarks/peers/setup_sdmetrics.sh [python3.11]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${1:-python3.11}"
constraints="${GENFORGE_CONSTRAINTS:-$repo/constraints.txt}"
[ -f "$constraints" ] || constraints=/work/main/constraints.txt
venv="$here/.venv-sdmetrics"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -c "$constraints" "sdmetrics==0.32.0"
"$venv/bin/python" -c "import sdmetrics; print('sdmetrics ready', sdmetrics.__version__)"
