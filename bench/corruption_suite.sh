#!/usr/bin/env bash
# Time of the corruption suite on this machine, on the Fashion-MNIST subject and its test split:
#   1. `corrupt` of all 10,000 test images x 15 corruptions x 5 severities (grey28) to NPY files;
#   2. `eval --corruptions all`: clean accuracy (onnxruntime + lowered graph) and the 15 x 5 table
#      measured by onnxruntime on the images corrupted on the fly.
# Prints a Markdown table (wall time and peak RSS from /usr/bin/time) for docs/BENCHMARKS.md.
#
#   bench/corruption_suite.sh [LIMIT]     (LIMIT: test images, default all 10000)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh >&2
limit="${1:-10000}"
bin="$root/target/release/archrepair-onnx"
model="fixtures/subjects/fashion_mnist_resnet20.onnx"
data="/usr/share/datasets/fashion-mnist"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

measure() { # name, command...: prints "| name | seconds | MiB |"
  local name="$1"; shift
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" > "$work/out" 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
  read -r seconds kib < "$work/time"
  printf '| %s | %s | %d |\n' "$name" "$seconds" $((kib / 1024))
}

echo "$(nproc) cores, $limit test images, $(date -u +%Y-%m-%d)"
echo
echo "| step | wall s | peak RSS MiB |"
echo "|---|---|---|"
measure "corrupt: $limit images x 15 x 5 to NPY (grey28)" "$bin" corrupt --data "$data" --limit "$limit" --out "$work/c" --force
measure "eval --corruptions all ($limit images per cell)" "$bin" eval "$model" --data "$data" --limit "$limit" --corruptions all --json
python3 - "$work/out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["corruptions"]
print(f"\nclean accuracy (onnxruntime) {100 * r['onnxruntime_accuracy']:.2f}%, "
      f"mean corruption accuracy {100 * t['mean_corruption_accuracy']:.2f}% over {len(t['rows'])} x {len(t['severities'])} cells")
PY
