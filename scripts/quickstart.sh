#!/usr/bin/env bash
# Set everything up, then train the main job (mnist-cvae: a conditional VAE on the bundled
# MNIST, one grid column per digit; a few minutes on a 2-core CPU) and say where the samples
# are. For sharper digits in more time: genforge train mnist-quick (a conditional DCGAN).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/genforge train mnist-cvae "$@"
