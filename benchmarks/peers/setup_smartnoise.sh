#!/usr/bin/env bash
# smartnoise-synth (MIT) in its own venv: benchmarks/peers/.venv-smartnoise. Never a genforge
# dependency: it pins opacus<0.15 and mbi<2, which cannot share genforge's venv.
#   bash benchmarks/peers/setup_smartnoise.sh [python3.11]
# Its torch dependency (through opacus) must resolve to the local CPU wheel; the constraints
# file (one line, torch==2.13.0+cpu) makes pip fail at once rather than download a CUDA build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${1:-python3.11}"
constraints="${GENFORGE_CONSTRAINTS:-$repo/constraints.txt}"
[ -f "$constraints" ] || constraints=/work/main/constraints.txt
venv="$here/.venv-smartnoise"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -c "$constraints" "smartnoise-synth==1.0.8"
"$venv/bin/python" -c "import snsynth, torch; print('smartnoise-synth ready, torch', torch.__version__)"
