#!/usr/bin/env python3
"""Planted-fault benchmark of `archrepair-onnx localize`: is the faulty block ranked first?

For every faulty model listed in DIR/manifest.json (made by bench/plant_faults.py: one block of a
ResNet-20 subject damaged by weight noise or by a label-swap fine-tune), runs

    archrepair-onnx localize MODEL --data <the subject's test split> --compare \
        --failures N --seed S --json [EXTRA FLAGS]

for each N in --failures and each seed in --seeds, and scores every method of the comparison
(spectrum and activation with each formula, gradient, random): top-1 hit when the planted block
is ranked first, top-3 when it is among the first three. The planted block is found by name: the
ranking names each block by its node scope (`layer2.1`), which is the manifest's block_prefix.

With `--method M`, runs `--method M` instead of `--compare` and scores that localizer alone (the
inputs are the same: the collect stage depends on the seed only), e.g. a localizer that needs no
attack and no backward pass in a few seconds per run.

Prints a Markdown table (hit rates per method, per N and fault kind) and the median localize time,
and appends every run's orders to --results (JSON lines); `--table-only` re-makes the table from
that file without running anything (e.g. from a partial run).

    bench/localize_planted.py --planted out/planted/<subject> [--failures 1000,100] [--seeds 0,1,2]
        [--subjects fashion_mnist_resnet20,mnist_resnet20] [--extra "--attack none"] [--method drift]
        [--table-only]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "archrepair-onnx"
DATA = {
    "fashion_mnist_resnet20": "/usr/share/datasets/fashion-mnist",
    "mnist_resnet20": str(ROOT / ".data" / "mnist"),
}


def method_name(entry: dict) -> str:
    return entry["method"] + (f" {entry['formula']}" if entry.get("formula") else "")


def localize(model: Path, data: str, failures: int, seed: int, method: str | None, extra: list[str], out: Path) -> dict:
    which = ["--method", method] if method else ["--compare"]
    command = [str(BIN), "localize", str(model), "--data", data, *which, "--failures", str(failures),
               "--seed", str(seed), "--out", str(out), "--force", "--json", *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"localize failed ({done.returncode}): {shlex.join(command)}\n{done.stderr}")
    return json.loads(done.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--planted", type=Path, required=True, help="folder of bench/plant_faults.py")
    parser.add_argument("--failures", default="1000,100")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--subjects", default=",".join(DATA))
    parser.add_argument("--kinds", default="noise,swap")
    parser.add_argument("--method", help="score this localizer alone (one `--method` run, not `--compare`)")
    parser.add_argument("--extra", default="", help="more localize flags, e.g. \"--attack none\"")
    parser.add_argument("--results", type=Path, help="JSON lines of every run (default: <planted>/results.jsonl)")
    parser.add_argument("--table-only", action="store_true", help="only print the table of the runs in --results")
    args = parser.parse_args(argv)
    extra = shlex.split(args.extra)
    failures = [int(n) for n in args.failures.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    subjects, kinds = args.subjects.split(","), args.kinds.split(",")
    manifest = json.loads((args.planted / "manifest.json").read_text())
    faulty = [e for e in manifest if e["subject"] in subjects and e["kind"] in kinds]
    if not faulty:
        sys.exit(f"no faulty models for {subjects} / {kinds} in {args.planted}/manifest.json")
    results_path = args.results or args.planted / "results.jsonl"

    rows = [] if not args.table_only else [
        row for row in map(json.loads, results_path.read_text().splitlines())
        if row["extra"] == args.extra and row.get("method") == args.method and row["failures"] in failures
        and row["seed"] in seeds and row["kind"] in kinds
    ]
    if not args.table_only:
        with tempfile.TemporaryDirectory() as work, results_path.open("a") as results:
            for entry in faulty:
                model = args.planted / entry["file"]
                for n in failures:
                    for seed in seeds:
                        ranking = localize(model, DATA[entry["subject"]], n, seed, args.method, extra, Path(work))
                        ids = {u["name"]: u["id"] for u in ranking["units"]}
                        truth = ids.get(entry["block_prefix"])
                        if truth is None:
                            sys.exit(f"{entry['file']}: no unit named {entry['block_prefix']} in {sorted(ids)}")
                        row = {"file": entry["file"], "kind": entry["kind"], "block": entry["block"], "failures": n,
                               "seed": seed, "extra": args.extra, "method": args.method, "truth": truth, "d_fail": ranking["collect"]["failures"],
                               "seconds": ranking["seconds"]["total"],
                               "orders": {method_name(m): m["order"] for m in ranking["comparison"]} if not args.method
                               else {method_name(ranking): [u["id"] for u in ranking["units"]]}}
                        rows.append(row)
                        results.write(json.dumps(row) + "\n")
                        results.flush()
                        first = next(iter(row["orders"].items()))
                        print(f"{entry['file']} N={n} seed={seed}: {first[0]} order {first[1][:3]}, "
                              f"truth {truth}, {row['seconds']:.1f} s", file=sys.stderr, flush=True)

    # hits[(n, kind)][method] = [top1, top3, runs]
    hits: dict = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    seconds: dict = defaultdict(list)
    for row in rows:
        for name, order in row["orders"].items():
            rank = order.index(row["truth"]) + 1
            for key in ((row["failures"], row["kind"]), (row["failures"], "all")):
                h = hits[key][name]
                h[0] += rank == 1
                h[1] += rank <= 3
                h[2] += 1
        seconds[row["failures"]].append(row["seconds"])
    if not rows:
        sys.exit(f"no runs to tabulate in {results_path}")

    columns = [(n, k) for n in failures for k in kinds + ["all"]]
    models = len({row["file"] for row in rows})
    print(f"planted faults: {models} models ({', '.join(subjects)}; {', '.join(kinds)}), seeds {args.seeds}"
          + (f", `--method {args.method}` alone" if args.method else "")
          + (f", extra flags `{args.extra}`" if args.extra else ""))
    print()
    print("| method | " + " | ".join(f"N={n} {k} top-1 / top-3" for n, k in columns) + " |")
    print("|---|" + "---|" * len(columns))
    methods = list(next(iter(hits.values())).keys())
    for name in methods:
        cells = []
        for key in columns:
            top1, top3, runs = hits[key][name]
            cells.append(f"{100 * top1 / runs:.0f}% / {100 * top3 / runs:.0f}% ({runs})" if runs else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    for n in [n for n in failures if seconds[n]]:
        print(f"median localize time, N={n}: {statistics.median(seconds[n]):.1f} s over {len(seconds[n])} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
