#!/usr/bin/env bash
# Fidelity of our 15 corruptions x 5 severities against the reference Python implementation
# corrupt-tta, on the same Fashion-MNIST images; writes docs/corruption-fidelity.md.
# Set-up first (venv with corrupt-tta, data, release build), then bench/corruption_fidelity.py.
#
#   bench/corruption_fidelity.sh [--images 500] [--repeats 3] [--seed 0] [--model M.onnx] [--no-write]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh >&2
eval "$(scripts/setup.sh --print-env)"
cargo build --release --locked --quiet
exec .venv/bin/python bench/corruption_fidelity.py "$@"
