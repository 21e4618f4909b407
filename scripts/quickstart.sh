#!/usr/bin/env bash
# Set everything up, then train the main job (mnist-quick: a small conditional DCGAN with an
# EMA generator on the bundled MNIST, about 5 minutes on a 2-core CPU) and say where the
# samples are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/genforge train mnist-quick "$@"
