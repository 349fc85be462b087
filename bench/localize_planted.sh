#!/usr/bin/env bash
# The localization benchmark (docs/BENCHMARKS.md, "Localization"):
#   1. time of `localize` on the Fashion-MNIST subject with 1,000 and 100 failures (defaults: PGD,
#      spectrum) and with 1,000 failures and `--method drift`, wall time and peak RSS;
#   2. planted faults: bench/plant_faults.py damages each of the 9 blocks of the two ResNet-20
#      subjects (weight noise; label-swap fine-tune) into out/planted/<subject>/ (kept: reruns
#      only make what is missing), then bench/localize_planted.py localizes every faulty model with
#      1,000 and 100 failures and each seed and prints top-1/top-3 hit rates per method (drift
#      included: it is part of --compare).
#
#   bench/localize_planted.sh [SEEDS] [SUBJECTS] [EXTRA LOCALIZE FLAGS]
#     SEEDS default 0,1,2; SUBJECTS default fashion_mnist_resnet20,mnist_resnet20
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh >&2
seeds="${1:-0,1,2}"
subjects="${2:-fashion_mnist_resnet20,mnist_resnet20}"
extra="${3:-}"
bin="$root/target/release/archrepair-onnx"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "$(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| localize (Fashion-MNIST ResNet-20, 10,000 test images) | wall s | peak RSS MiB |"
echo "|---|---|---|"
# One table row: LABEL, then the localize flags it is timed with.
timed_row() {
  local label="$1"
  shift
  /usr/bin/time -f '%e %M' -o "$work/time" "$bin" localize fixtures/subjects/fashion_mnist_resnet20.onnx \
    --spec fixtures/specs/fashion_mnist_resnet20.yaml "$@" --out "$work/loc" --force > /dev/null
  read -r seconds kib < "$work/time"
  printf '| %s | %s | %d |\n' "$label" "$seconds" $((kib / 1024))
}
for failures in 1000 100; do
  timed_row "$failures failures, PGD 10 steps on as many passing inputs, spectrum" --failures "$failures"
done
timed_row "1000 failures (+ 1000 passing), drift (forward passes only)" --failures 1000 --method drift
echo

IFS=, read -r -a names <<< "$subjects"
for subject in "${names[@]}"; do
  .venv/bin/python bench/plant_faults.py --subject "$subject" --out "out/planted/$subject" >&2
done
for subject in "${names[@]}"; do
  .venv/bin/python bench/localize_planted.py --planted "out/planted/$subject" --subjects "$subject" --seeds "$seeds" --extra "$extra"
  echo
done
