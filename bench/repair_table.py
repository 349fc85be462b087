"""Prints the repair benchmark's results table from bench/repair.sh's output folder."""
import json
import sys
from pathlib import Path


def pct(v):
    return f"{100 * v:.2f}%"


def main(out: Path) -> None:
    for scenario in ("s1", "s1b", "s2"):
        path = out / scenario / "search.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        seconds, kib = (out / f"{scenario}.time").read_text().split()
        m = r["metrics"]
        print(f"### Scenario {scenario[1:]}")
        print()
        print(f"block {r['target']['block']} ({'residual branch' if r['target']['keeps_shortcut'] else 'whole block'}, chosen by {r['chosen_by']}); genotype `{r['genotype_text']}`")
        print()
        print("| measure | subject | repaired |")
        print("|---|---|---|")
        print(f"| accuracy on the evaluation split minus D_fail ({m['evaluated'] - m['failures']} images) | {pct(m['accuracy_before'])} | {pct(m['accuracy_after'])} |")
        print(f"| accuracy on the whole split (D_fail included) | {pct(m['full_accuracy_before'])} | {pct(m['full_accuracy_after'])} |")
        print(f"| repair rate (D_fail, {m['failures']} images) | 0.00% | {pct(m['repair_rate'])} |")
        print(f"| break rate ({m['previously_correct']} previously correct) | - | {pct(m['break_rate'])} |")
        print(f"| held-out slice of the repair data | {pct(r['kept']['holdout_accuracy_before'])} | {pct(r['kept']['holdout_accuracy'])} |")
        for e in r["extra"]:
            print(f"| {e['name']} ({e['evaluated']} images) | {pct(e['before'])} | {pct(e['after'])} |")
        if any(e["name"] == "clean" for e in r["extra"]):
            others = [e for e in r["extra"] if e["name"] != "clean"]
            if others:
                before = sum(e["before"] for e in others) / len(others)
                after = sum(e["after"] for e in others) / len(others)
                print(f"| mean of the {len(others)} other corruptions | {pct(before)} | {pct(after)} |")
        s = r["seconds"]
        print(f"| wall time (localize / collect / search / train / evaluate) | | {float(seconds):.0f} s ({s['localize']:.0f} / {s['collect']:.0f} / {s['search']:.0f} / {s['train']:.0f} / {s['evaluate']:.0f}) |")
        print(f"| peak RSS | | {int(kib) // 1024} MiB |")
        print()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/bench-repair"))
