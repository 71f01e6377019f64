#!/usr/bin/env bash
# Run the main job on this machine (CPU, one GPU, or all local accelerators).
#   launch/local.sh [configs/joint.py] [extra absl flags, e.g. --workdir runs/x --config.fesgan.steps=3000]
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/joint.py}"
shift || true
exec python -m jfesgan.main --config "$config" "$@"
