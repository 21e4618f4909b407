#!/usr/bin/env bash
# A peer in its own venv, benchmarks/peers/.venv-NAME: never a genforge dependency.
#   bash benchmarks/peers/setup_venv.sh smartnoise [python3.11]   # smartnoise-synth (MIT); it
#       pins opacus<0.15 and mbi<2, which cannot share genforge's venv
#   bash benchmarks/peers/setup_venv.sh sdmetrics [python3.11]    # sdmetrics (MIT); it pulls
#       in copulas, which is BUSL-1.1
# Torch (through opacus) must resolve to the local CPU wheel: the repo's constraints file
# (one line, torch==2.13.0+cpu) makes pip fail at once rather than download a CUDA build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
name="${1:?usage: setup_venv.sh smartnoise|sdmetrics [python]}"
python="${2:-python3.11}"
case "$name" in
  smartnoise) package="smartnoise-synth==1.0.8"; check="import snsynth, torch; print('torch', torch.__version__)" ;;
  sdmetrics) package="sdmetrics==0.32.0"; check="import sdmetrics; print(sdmetrics.__version__)" ;;
  *) echo "error: unknown peer '$name' (smartnoise or sdmetrics)" >&2; exit 2 ;;
esac
constraints="${GENFORGE_CONSTRAINTS:-$repo/constraints.txt}"
venv="$here/.venv-$name"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -c "$constraints" "$package"
"$venv/bin/python" -c "$check"
echo "$name ready in $venv"
