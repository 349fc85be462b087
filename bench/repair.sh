#!/usr/bin/env bash
# The repair benchmark (docs/BENCHMARKS.md, "Repair"): ArchRepair (`search`) on the Fashion-MNIST
# ResNet-20 subject, with the embedded default spec (block chosen by localization), on this
# machine; wall time and peak RSS from /usr/bin/time.
#   scenario 1: D_fail = 1,000 failures of the clean test split; evaluation on test minus D_fail.
#   scenario 2: D_fail = 1,000 failures of the test split under gaussian_noise severity 3;
#               accuracy on that corruption (minus D_fail), on the 14 others and on clean test.
#   scenario 1b: D_fail = every failure of the first half of the clean test split (--limit 5000);
#               accuracy also on the second half, which the repair never sees.
#
#   bench/repair.sh [OUT] [EXTRA SEARCH FLAGS...]     OUT default out/bench-repair
#
# Environment (defaults in brackets):
#   SCENARIOS    which scenarios run, space-separated ["1 1b 2"]
#   S2_LOCALIZE  scenario 2's `localize` section ["{method: spectrum, formula: ochiai}"]
#   S2_TRAIN     scenario 2's `train` section [absent: the defaults of docs/search.md]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh >&2
out="${1:-out/bench-repair}"
shift || true
bin="$root/target/release/archrepair-onnx"
model=fixtures/subjects/fashion_mnist_resnet20.onnx
fmnist=/usr/share/datasets/fashion-mnist
mkdir -p "$out"

scenarios=" ${SCENARIOS:-1 1b 2} "
runs() { [[ "$scenarios" == *" $1 "* ]]; }

echo "$(nproc) cores, $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD)" >&2

# Scenario 1.
if runs 1; then
  /usr/bin/time -f '%e %M' -o "$out/s1.time" "$bin" search "$model" \
    --spec fixtures/specs/fashion_mnist_resnet20.yaml --out "$out/s1" --force "$@" > "$out/s1.txt"
fi

# Scenario 1b: D_fail from the first half of the test split, the second half unseen.
if runs 1b; then
{
  cat fixtures/specs/fashion_mnist_resnet20.yaml
  echo "evaluate:"
  echo "  - {name: unseen test half, path: $fmnist, split: test, rows: [5000, 10000]}"
} > "$out/scenario1b.yaml"
/usr/bin/time -f '%e %M' -o "$out/s1b.time" "$bin" search "$model" \
  --spec "$out/scenario1b.yaml" --limit 5000 --out "$out/s1b" --force "$@" > "$out/s1b.txt"
fi

# Scenario 2: the corrupted test split at severity 3 (made once; kept across reruns).
if runs 2; then
corrupted="$out/corrupted"
if [ ! -f "$corrupted/manifest.json" ]; then
  "$bin" corrupt --data "$fmnist" --out "$corrupted" --severities 3 --force > /dev/null
fi
corrupted_abs="$(cd "$corrupted" && pwd)"
s2_localize='{method: spectrum, formula: ochiai}'
s2_localize="${S2_LOCALIZE:-$s2_localize}"
{
  echo "version: 1"
  echo "seed: 0"
  echo "data: {path: $corrupted_abs/gaussian_noise.npy}"
  echo "train_data: {path: $fmnist, split: train}"
  echo "evaluate:"
  echo "  - {name: clean, path: $fmnist, split: test}"
  for c in shot_noise impulse_noise defocus_blur glass_blur motion_blur zoom_blur snow frost fog \
           brightness contrast elastic_transform pixelate jpeg_compression; do
    echo "  - {name: $c, path: $corrupted_abs/$c.npy}"
  done
  echo "collect: {failures: 1000}"
  echo "attack: {method: pgd}"
  echo "localize: $s2_localize"
  if [ -n "${S2_TRAIN:-}" ]; then echo "train: $S2_TRAIN"; fi
} > "$out/scenario2.yaml"
/usr/bin/time -f '%e %M' -o "$out/s2.time" "$bin" search "$model" \
  --spec "$out/scenario2.yaml" --out "$out/s2" --force "$@" > "$out/s2.txt"
fi

.venv/bin/python bench/repair_table.py "$out"
