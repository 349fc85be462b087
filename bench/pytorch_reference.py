#!/usr/bin/env python3
"""PyTorch eager reference throughput for ResNet-20 (3x32x32, 10 classes) on CPU.

The side-by-side baseline for archrepair-onnx's tch-based forward/training step: same network
(the ResNet20 class of fixtures/generate.py, imported from there), PyTorch eager, CPU.

    .venv/bin/python bench/pytorch_reference.py --threads 2 --batch 64 --iters 20 --warmup 3

Measures
  * inference: model.eval(), torch.no_grad(), forward only;
  * train step: model.train(), forward + F.cross_entropy + backward + SGD(lr=0.1) step
    (optimizer.zero_grad(set_to_none=True) included);
and prints one JSON line:
  {"framework":"pytorch","threads":..,"batch":..,"infer_images_per_s":..,"train_images_per_s":..}
(plus the iteration counts, torch version and per-iteration median times).  images/s is
batch * iters / total wall time of the timed loop.  Inputs are uniform [0,1) and labels uniform
in [0,10) from a fixed seed; the weights are random (throughput does not depend on them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent


def _load_generator():
    """Import fixtures/generate.py as a module (its generation only runs under __main__)."""
    path = REPO / "fixtures" / "generate.py"
    spec = importlib.util.spec_from_file_location("archrepair_fixtures_generate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _timed(fn, iters: int, warmup: int) -> tuple[float, list[float]]:
    """Run fn warmup times untimed, then iters times; return (total seconds, per-iter seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return time.perf_counter() - start, times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="PyTorch eager CPU throughput of ResNet-20")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    ap.add_argument("--iters", type=int, default=20, help="timed iterations (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed iterations first (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = _load_generator()
    model = gen.ResNet20(in_channels=3, num_classes=10)
    x = torch.rand(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,), dtype=torch.int64)

    model.eval()

    def infer():
        with torch.no_grad():
            model(x)

    infer_s, infer_t = _timed(infer, args.iters, args.warmup)

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.0, weight_decay=0.0)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    train_s, train_t = _timed(train_step, args.iters, args.warmup)

    n = args.batch * args.iters
    print(json.dumps({
        "framework": "pytorch",
        "threads": args.threads,
        "batch": args.batch,
        "infer_images_per_s": round(n / infer_s, 1),
        "train_images_per_s": round(n / train_s, 1),
        "iters": args.iters,
        "warmup": args.warmup,
        "infer_ms_median": round(1e3 * statistics.median(infer_t), 3),
        "train_ms_median": round(1e3 * statistics.median(train_t), 3),
        "torch": torch.__version__,
        "model": "resnet20 (fixtures/generate.py ResNet20), input 3x32x32",
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
