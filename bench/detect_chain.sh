#!/usr/bin/env bash
# Benchmark (not a test): block detection time on synthetic chains of basic residual blocks
# (100 and 1000 blocks, Conv-Relu-Conv-Add-Relu each, 4 channels) and on real models. Prints a
# Markdown table; docs/BENCHMARKS.md keeps the results.
#
#   bench/detect_chain.sh [REPEATS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
repeats="${1:-5}"
scripts/setup.sh >&2
eval "$(scripts/setup.sh --print-env)"
cargo build --release --locked --quiet --example bench_detect
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
.venv/bin/python - "$dir" <<'PY'
import sys
import numpy as np
import onnx
from onnx import helper, TensorProto, numpy_helper

for blocks in (100, 1000):
    nodes, inits, t = [], [], "x"
    rng = np.random.default_rng(0)
    for i in range(blocks):
        for j in (1, 2):
            inits.append(numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), f"b{i}.w{j}"))
        nodes += [
            helper.make_node("Conv", [t, f"b{i}.w1"], [f"b{i}.c1"], name=f"b{i}.conv1", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"b{i}.c1"], [f"b{i}.r1"], name=f"b{i}.relu1"),
            helper.make_node("Conv", [f"b{i}.r1", f"b{i}.w2"], [f"b{i}.c2"], name=f"b{i}.conv2", pads=[1, 1, 1, 1]),
            helper.make_node("Add", [t, f"b{i}.c2"], [f"b{i}.sum"], name=f"b{i}.add"),
        ]
        out = "y" if i == blocks - 1 else f"b{i}.out"
        nodes.append(helper.make_node("Relu", [f"b{i}.sum"], [out], name=f"b{i}.relu2"))
        t = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, f"{sys.argv[1]}/chain_{blocks}_blocks.onnx")
PY
light="$(ls -d .venv/lib/python3*/site-packages/onnx/backend/test/data/light)"
target/release/examples/bench_detect "$dir/chain_100_blocks.onnx" "$dir/chain_1000_blocks.onnx" \
  fixtures/models/resnet20_ts_op17_bn.onnx fixtures/models/mobilenetv2_dynamo_op17_bn.onnx \
  "$light/light_resnet50.onnx" "$light/light_densenet121.onnx" --repeats "$repeats"
