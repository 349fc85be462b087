#!/usr/bin/env python3
"""Planted-fault models for the fault-localization benchmark of archrepair-onnx.

Each output is a subject model (fixtures/subjects/<subject>.onnx) with a fault planted in exactly
one residual block, so a localizer can be scored on whether it ranks that block first. Blocks are
numbered in topological order: block k is `layer{k//3+1}.{k%3}` (0..8).

    .venv/bin/python bench/plant_faults.py --subject fashion_mnist_resnet20 --out DIR \
        [--blocks 0,1,...] [--kinds noise,swap] [--threads 2]

Kinds of fault:
  noise  Gaussian noise on the block's conv weights (conv1, conv2 and the 1x1 shortcut conv where
         there is one): W + sigma * std(W) * z, z ~ N(0, 1) drawn once per tensor from a generator
         seeded with stable_seed("plant-fault", subject, block, "noise") and reused for every sigma.
         sigma is searched (doubling/halving from 0.25, then geometric bisection; at most 12
         evaluations of the accuracy on the first 2,000 test images, offset by the clean model's
         difference to the full split) until it drops by 5 to 10 points (target 7.5); when the
         budget runs out, the sigma whose drop is nearest 7.5 is kept (and reported).
  swap   Fine-tune only the block's parameters (everything else frozen; the whole model stays in
         eval() mode, so no BatchNorm running statistics change) with SGD (lr 0.0001, momentum 0.9,
         batch 128) on the images of classes a = k % 10 and b = (k + 5) % 10 among the first
         55,000 training images, with their labels swapped, shuffled with a generator seeded with
         stable_seed("plant-fault", subject, block, "swap"). The accuracy on the first 2,000 test
         images is measured every 2 steps; training stops at the first measurement with a drop of
         at least 5 points, or
         after 300 steps (the model is kept either way and the drop recorded).

Accuracies are on the full 10k test split: torch eval mode, batch 1000, no_grad. Each faulty model
is exported exactly as fixtures/subjects/generate.py exports the subjects (export_ts, TorchScript,
BN kept, opset 17) to DIR/<subject>_block<k>_<kind>.onnx and measured again with onnxruntime
(generate.py's onnxruntime_test). DIR/manifest.json lists one entry per file; a file that exists
with an entry is skipped, so reruns only make what is missing. Subjects are loaded by name from the
ONNX initializers into the generate.py architecture (fixtures/attack_reference.py's loader).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("subjects_generate", ROOT / "fixtures" / "subjects" / "generate.py")
subjects = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(subjects)  # puts fixtures/ on sys.path and imports fixtures/generate.py as `generate`
sys.path.insert(0, str(ROOT / "fixtures"))
from attack_reference import load_onnx_weights  # noqa: E402
from generate import export_ts, stable_seed  # noqa: E402

SUBJECTS = ("fashion_mnist_resnet20", "mnist_resnet20")
KINDS = ("noise", "swap")
LOW, HIGH, TARGET = 5.0, 10.0, 7.5  # accuracy drop window, in points
MAX_EVALS = 12
SWAP_LR, SWAP_MOMENTUM, SWAP_BATCH, SWAP_EVERY, SWAP_MAX_STEPS = 0.0001, 0.9, 128, 2, 300
PROBE = 2000  # test images the searches look at (the final drop is measured on all 10,000)


def block_prefix(k: int) -> str:
    return f"layer{k // 3 + 1}.{k % 3}"


def get_block(model, k: int):
    return getattr(model, f"layer{k // 3 + 1}")[k % 3]


def test_accuracy(model, x, y) -> float:
    acc = subjects.accuracy(model, x, y)  # eval mode inside, but it leaves the model in train mode
    model.eval()
    return acc


def plant_noise(model, k, name, clean, x, y):
    block = get_block(model, k)
    convs = [block.conv1, block.conv2] + ([block.shortcut[0]] if len(block.shortcut) else [])
    gen = torch.Generator().manual_seed(stable_seed("plant-fault", name, k, "noise"))
    base = [(c.weight, c.weight.detach().clone(), c.weight.detach().std()) for c in convs]
    draws = [torch.randn(w0.shape, generator=gen) for _, w0, _ in base]
    history = []  # [sigma, estimated accuracy, estimated drop]
    clean_probe = test_accuracy(model, x[:PROBE], y[:PROBE])

    def set_sigma(sigma: float) -> None:
        with torch.no_grad():
            for (w, w0, std), z in zip(base, draws):
                w.copy_(w0 + sigma * std * z)

    def try_sigma(sigma: float) -> float:
        set_sigma(sigma)
        acc = test_accuracy(model, x[:PROBE], y[:PROBE]) - (clean_probe - clean)
        drop = round(100 * (clean - acc), 2)
        history.append([sigma, acc, drop])
        print(f"  {name} block {k} noise: sigma {sigma:.4f} -> accuracy {100 * acc:.2f}% "
              f"(drop {drop:.2f})", flush=True)
        return drop

    lo = hi = None  # largest sigma with drop < LOW, smallest with drop > HIGH
    sigma = 0.25
    while len(history) < MAX_EVALS:
        drop = try_sigma(sigma)
        if LOW <= drop <= HIGH:
            break
        if drop < LOW:
            lo = sigma if lo is None else max(lo, sigma)
        else:
            hi = sigma if hi is None else min(hi, sigma)
        sigma = sigma * 2 if hi is None else sigma / 2 if lo is None else math.sqrt(lo * hi)
    best = history[-1] if LOW <= history[-1][2] <= HIGH else min(history, key=lambda h: abs(h[2] - TARGET))
    set_sigma(best[0])
    if not LOW <= best[2] <= HIGH:
        print(f"  WARNING: {name} block {k} noise: no sigma in {MAX_EVALS} evaluations gives a "
              f"{LOW}-{HIGH} point drop; kept sigma {best[0]} (drop {best[2]})", flush=True)
    return test_accuracy(model, x, y), dict(sigma=best[0], sigma_search=history, evaluations=len(history))


def plant_swap(model, k, name, clean, x, y, x_train, y_train):
    a, b = k % 10, (k + 5) % 10
    # Only the two classes' images, labels swapped: a general fine-tune of an under-trained
    # subject would raise its accuracy instead of planting a fault.
    pair = (y_train == a) | (y_train == b)
    x_train, y_train = x_train[pair], y_train[pair]
    labels = torch.where(y_train == a, b, a)
    block = get_block(model, k)
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(block.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.SGD(params, lr=SWAP_LR, momentum=SWAP_MOMENTUM)
    gen = torch.Generator().manual_seed(stable_seed("plant-fault", name, k, "swap"))
    model.eval()
    clean_probe = test_accuracy(model, x[:PROBE], y[:PROBE])
    step, acc, drop, history = 0, clean, 0.0, []
    while step < SWAP_MAX_STEPS and drop < LOW:
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(order) - SWAP_BATCH + 1, SWAP_BATCH):
            idx = order[i:i + SWAP_BATCH]
            loss = F.cross_entropy(model(x_train[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % SWAP_EVERY == 0:
                acc = test_accuracy(model, x[:PROBE], y[:PROBE]) - (clean_probe - clean)
                drop = round(100 * (clean - acc), 2)
                history.append([step, acc, drop])
                print(f"  {name} block {k} swap {a}<->{b}: step {step}, loss {loss.item():.3f}, "
                      f"accuracy {100 * acc:.2f}% (drop {drop:.2f})", flush=True)
            if drop >= LOW or step >= SWAP_MAX_STEPS:
                break
    assert not model.training
    acc = test_accuracy(model, x, y)
    if drop < LOW:
        print(f"  WARNING: {name} block {k} swap: only {drop:.2f} points after {step} steps", flush=True)
    return acc, dict(pair=[a, b], steps=step, swap_history=history)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subject", required=True, choices=SUBJECTS)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--blocks", default=",".join(map(str, range(9))))
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    blocks = [int(b) for b in args.blocks.split(",")]
    kinds = args.kinds.split(",")
    if not all(0 <= b < 9 for b in blocks) or not set(kinds) <= set(KINDS):
        raise SystemExit(f"--blocks must be in 0..8 and --kinds in {','.join(KINDS)}")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    name, cfg = args.subject, subjects.SUBJECTS[args.subject]
    subject_path = ROOT / "fixtures" / "subjects" / f"{name}.onnx"
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else []
    x, y = subjects.load_split(cfg["data"], "t10k", cfg["pad"])
    x_train = y_train = clean = None
    for k in blocks:
        for kind in kinds:
            path = args.out / f"{name}_block{k}_{kind}.onnx"
            if path.exists() and any(e["file"] == path.name for e in manifest):
                print(f"{path.name}: exists, skipped", flush=True)
                continue
            if clean is None:
                clean = test_accuracy(load_onnx_weights(cfg["build"](), subject_path), x, y)
                print(f"{name}: clean torch test accuracy {100 * clean:.2f}%", flush=True)
            start = time.perf_counter()
            model = load_onnx_weights(cfg["build"](), subject_path)
            print(f"{path.name}: planting {kind} in block {k} ({block_prefix(k)})", flush=True)
            if kind == "noise":
                acc, extra = plant_noise(model, k, name, clean, x, y)
            else:
                if x_train is None:
                    x_all, y_all = subjects.load_split(cfg["data"], "train", cfg["pad"])
                    x_train, y_train = x_all[:-5000], y_all[:-5000]
                acc, extra = plant_swap(model, k, name, clean, x, y, x_train, y_train)
            model.eval()
            proto, _ = export_ts(model, torch.zeros(1, 1, 28 + 2 * cfg["pad"], 28 + 2 * cfg["pad"]), subjects.OPSET)
            path.write_bytes(proto.SerializeToString())
            ort = subjects.onnxruntime_test(path, cfg)
            entry = dict(file=path.name, subject=name, block=k, block_prefix=block_prefix(k), kind=kind,
                         **{key: extra[key] for key in ("sigma", "pair", "steps") if key in extra},
                         clean_accuracy=clean, torch_accuracy=acc, drop_points=round(100 * (clean - acc), 2),
                         onnxruntime_accuracy=ort["test_accuracy"], failures=ort["test_failures"],
                         seconds=round(time.perf_counter() - start, 1), threads=args.threads,
                         seed=f"stable_seed('plant-fault', '{name}', {k}, '{kind}')",
                         **{key: v for key, v in extra.items() if key not in ("sigma", "pair", "steps")})
            if abs(ort["test_accuracy"] - acc) > 0.001:
                print(f"  WARNING: torch {acc:.4f} vs onnxruntime {ort['test_accuracy']:.4f}", flush=True)
            print(f"  {path.name}: onnxruntime accuracy {100 * ort['test_accuracy']:.2f}% "
                  f"({ort['test_failures']} failures), {entry['seconds']} s", flush=True)
            manifest = [e for e in manifest if e["file"] != path.name] + [entry]
            manifest.sort(key=lambda e: (e["subject"], e["block"], e["kind"]))
            manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")

    print(f"\n{'file':<42} {'block':<9} {'kind':<6} {'sigma/pair,steps':<17} {'clean':>6} {'torch':>6} "
          f"{'ort':>6} {'drop':>5} {'fail':>5} {'s':>6}")
    for e in manifest:
        if e["subject"] != name:
            continue
        what = f"{e['sigma']:.4f}" if e["kind"] == "noise" else f"{e['pair'][0]}<->{e['pair'][1]},{e['steps']}"
        print(f"{e['file']:<42} {e['block_prefix']:<9} {e['kind']:<6} {what:<17} {100 * e['clean_accuracy']:6.2f} "
              f"{100 * e['torch_accuracy']:6.2f} {100 * e['onnxruntime_accuracy']:6.2f} {e['drop_points']:5.2f} "
              f"{e['failures']:>5} {e['seconds']:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
