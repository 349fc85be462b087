"""The comparison grid of bench/bench.yaml as one table, from the results.csv of one or more
bench runs (docs/BENCHMARKS.md "The grid").

    python3 bench/grid_table.py out/bench
    python3 bench/grid_table.py [--variant NAME]... [--seeds 1,2] RUN...

`--variant NAME` adds a column for a method variant of a bench file (e.g.
`archrepair-drift-finetune`) and its gap to the best baseline; `--seeds` keeps those seeds only,
so a variant run on fewer seeds is compared with the same seeds of the grid.

Reads each folder's results.csv (or a results.csv path), keeps the six methods of the
comparison and the variants named by `--variant` (other variants are left out), and prints, per subject and scenario, the
goal's measure for every method as mean ± sample std over seeds, the best in bold, then
ArchRepair's gap to the best baseline and its time against network-level fine-tuning:

- scenario 1 (`clean`): accuracy on the test split minus D_fail;
- scenario 2 (a corruption): mean corruption accuracy, the mean of the four corruptions (the
  scenario's own corruption minus D_fail, and the three others).

A cell whose method returned the subject unchanged (repair and break rate both 0: Arachne's
patch undone by its held-out check) repairs nothing; it is left out of the mean and counted as
"undone", since the unchanged subject would otherwise top scenario 1's measure, which excludes
D_fail. A cell measured by two runs is an error: the grid must not mix two runs of one cell.
"""
import csv
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

METHODS = ["archrepair", "finetune-network", "finetune-layer", "finetune-block", "arachne", "apricot"]
CORRUPTIONS = ["gaussian_noise", "motion_blur", "contrast", "fog"]


def number(text):
    return float(text) if text not in ("", None) else math.nan


def measure(row, when="after"):
    """The goal's measure of one cell, a fraction (NaN when the cell has no numbers); `when` is
    "after" (the repaired model) or "before" (the subject)."""
    if row["scenario"] == "clean":
        return number(row[f"accuracy_{when}"])
    own = row["scenario"].rsplit("-", 1)[0]
    others = [number(row.get(f"{c}_{when}")) for c in CORRUPTIONS if c != own]
    values = [number(row[f"accuracy_{when}"])] + others
    return sum(values) / len(values)


def unchanged(row):
    return number(row["repair_rate"]) == 0 and number(row["break_rate"]) == 0


def read(paths, methods, seeds):
    cells = {}
    for path in paths:
        path = Path(path)
        csv_path = path / "results.csv" if path.is_dir() else path
        if not csv_path.is_file():
            sys.exit(f"{csv_path}: no such file; pass a bench output folder (with results.csv) or a results.csv")
        with open(csv_path, newline="") as f:
            for row in csv.DictReader(f):
                if row["method"] not in methods or row["outcome"] == "failed":
                    continue
                if seeds and int(row["seed"]) not in seeds:
                    continue
                key = (row["subject"], row["scenario"], row["method"], int(row["seed"]))
                if key in cells:
                    sys.exit(f"{csv_path}: cell {'/'.join(map(str, key))} is also in {cells[key][1]}; pass each cell's run once")
                cells[key] = (row, csv_path)
    return cells


def mean_std(values):
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def pct(mean, std):
    if math.isnan(mean):
        return "n/a"
    return f"{100 * mean:.2f}%" if math.isnan(std) else f"{100 * mean:.2f} ± {100 * std:.2f}%"


def shown(stats, undone, bold):
    text = f"**{pct(*stats)}**" if bold else pct(*stats)
    if undone:
        text = f"undone ×{undone}" if math.isnan(stats[0]) else f"{text} ({undone} undone)"
    return text


def gap_text(value, baselines):
    return "n/a" if math.isnan(value) or not baselines else f"{100 * (value - max(baselines)):+.2f}"


def main(paths, variants=(), seeds=()):
    columns = METHODS + list(variants)
    cells = read(paths, columns, set(seeds))
    groups = defaultdict(lambda: defaultdict(list))
    for (subject, scenario, method, _seed), (row, _) in sorted(cells.items()):
        groups[(subject, scenario)][method].append(row)

    gaps = ["ArchRepair − best baseline"] + [f"{v} − best baseline" for v in variants]
    print("| subject | scenario | seeds | subject model | " + " | ".join(columns + gaps) + " | ArchRepair time / network's |")
    print("|---|---|---|---|" + "---|" * (len(columns) + len(gaps)) + "---|")
    for (subject, scenario), by_method in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] != "clean", g[0][1])):
        stats = {m: mean_std([measure(r) for r in by_method.get(m, []) if not unchanged(r)]) for m in columns}
        undone = {m: sum(unchanged(r) for r in by_method.get(m, [])) for m in columns}
        best = max((m for m in columns if not math.isnan(stats[m][0])), key=lambda m: stats[m][0], default=None)
        baselines = [stats[m][0] for m in METHODS[1:] if not math.isnan(stats[m][0])]
        seconds = {m: mean_std([number(r["total_s"]) for r in by_method.get(m, [])])[0] for m in ("archrepair", "finetune-network")}
        ratio = seconds["archrepair"] / seconds["finetune-network"] if seconds["finetune-network"] else math.nan
        before = mean_std([measure(r, "before") for rows in by_method.values() for r in rows])[0]
        seen = sorted({int(r["seed"]) for rows in by_method.values() for r in rows})
        shown_columns = [shown(stats[m], undone[m], m == best) for m in columns]
        shown_gaps = [gap_text(stats[m][0], baselines) for m in ["archrepair", *variants]]
        ratio_text = "n/a" if math.isnan(ratio) else f"{100 * ratio:.0f}%"
        print(f"| {subject} | {scenario} | {','.join(map(str, seen))} | {pct(before, math.nan)} | " + " | ".join(shown_columns + shown_gaps) + f" | {ratio_text} |")


def parse(args):
    paths, variants, seeds = [], [], []
    args = iter(args)
    for arg in args:
        if arg in ("--variant", "--seeds"):
            value = next(args, None)
            if value is None:
                sys.exit(f"{arg} needs a value\n\n{__doc__}")
            if arg == "--variant":
                variants.append(value)
            else:
                try:
                    seeds += [int(seed) for seed in value.split(",")]
                except ValueError:
                    sys.exit(f"--seeds {value}: expected seeds separated by commas, e.g. 1,2")
        else:
            paths.append(arg)
    if not paths:
        sys.exit(__doc__)
    return paths, variants, seeds


if __name__ == "__main__":
    paths, variants, seeds = parse(sys.argv[1:])
    main(paths, variants, seeds)
