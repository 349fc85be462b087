#!/usr/bin/env bash
# The main job on the embedded default: set-up (idempotent), then inspect the Fashion-MNIST
# subject model (fixtures/subjects: a ResNet-20 trained to 89% test accuracy), list its
# repairable blocks, and evaluate it on the installed Fashion-MNIST test split with onnxruntime
# and the lowered libtorch graph side by side, plus its accuracy under the 15 corruptions x 5
# severities (first 2,000 test images; `eval --corruptions all` without --limit takes ~6 min),
# then localize its most vulnerable block with the spec fixtures/specs/fashion_mnist_resnet20.yaml
# (1,000 failures, PGD-augmented spectrum; ranking.json and ranking.svg go to out/localize),
# then the main command: repair the top-ranked block with the spec fixtures/specs/demo.yaml
# (1 search epoch on 4,000 training images, 1 training epoch of the derived cell), export
# out/demo/repaired.onnx, validate it in onnxruntime and tract, measure before/after with
# onnxruntime and apply the gate; the report goes to out/demo/repaired-report (json, md, html).
# The benchmark's full defaults take about 11 minutes, docs/BENCHMARKS.md "Repair".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
model="fixtures/subjects/fashion_mnist_resnet20.onnx"
data="/usr/share/datasets/fashion-mnist"
target/release/archrepair-onnx inspect "$model"
echo
target/release/archrepair-onnx blocks "$model"
echo
target/release/archrepair-onnx eval "$model" --data "$data" --limit 2000 --corruptions all
echo
target/release/archrepair-onnx localize "$model" --spec fixtures/specs/fashion_mnist_resnet20.yaml --out out/localize --force "$@"
echo
mkdir -p out/demo
target/release/archrepair-onnx "$model" out/demo/repaired.onnx --spec fixtures/specs/demo.yaml --force
