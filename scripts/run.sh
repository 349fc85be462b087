#!/usr/bin/env bash
# The main job on the embedded default: set-up (idempotent), then inspect the fixture
# ResNet-20 (28x28), list its repairable blocks, and evaluate it on the installed Fashion-MNIST test split with onnxruntime
# and with the lowered libtorch graph side by side.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
model="fixtures/models/resnet20_28_ts_op17_bn.onnx"
data="/usr/share/datasets/fashion-mnist"
target/release/archrepair-onnx inspect "$model"
echo
target/release/archrepair-onnx blocks "$model"
echo
target/release/archrepair-onnx eval "$model" --data "$data" "$@"
