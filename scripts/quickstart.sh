#!/usr/bin/env bash
# Set everything up, then train the default preset (DCGAN on the bundled MNIST) for a few
# minutes on the CPU and say where the samples are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/genforge train mnist-dcgan "$@"
