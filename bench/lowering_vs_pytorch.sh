#!/usr/bin/env bash
# Benchmark (not a test): throughput of the lowered ResNet-20 (fixtures/models/resnet20_ts_op17_bn.onnx,
# run by libtorch through archrepair-onnx) vs the same architecture in PyTorch eager, same threads and
# batch, inference and SGD train step. Prints a Markdown table; docs/BENCHMARKS.md keeps the results.
#
#   bench/lowering_vs_pytorch.sh [THREADS] [BATCH] [ITERS] [REPEATS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
threads="${1:-2}"; batch="${2:-64}"; iters="${3:-20}"; repeats="${4:-3}"
scripts/setup.sh >&2
eval "$(scripts/setup.sh --print-env)"
cargo build --release --locked --quiet --example bench_lowered
model="fixtures/models/resnet20_ts_op17_bn.onnx"
out="$(mktemp)"
# Interleave the two so that machine noise hits both alike.
for _ in $(seq "$repeats"); do
  target/release/examples/bench_lowered "$model" --threads "$threads" --batch "$batch" --iters "$iters" >> "$out"
  .venv/bin/python bench/pytorch_reference.py --threads "$threads" --batch "$batch" --iters "$iters" >> "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
ours = [r for r in rows if r["framework"] != "pytorch"]
ref = [r for r in rows if r["framework"] == "pytorch"]
med = lambda rs, k: statistics.median(r[k] for r in rs)
print(f"threads={ours[0]['threads']} batch={ours[0]['batch']} runs={len(ours)} (median)")
print("| workload | archrepair-onnx (lowered) img/s | PyTorch eager img/s | ratio |")
print("|---|---|---|---|")
for key, label in [("infer_images_per_s", "inference (eval)"), ("train_images_per_s", "SGD train step")]:
    a, b = med(ours, key), med(ref, key)
    print(f"| {label} | {a:.0f} | {b:.0f} | {a / b:.3f} |")
PY
