"""Digits accuracy and training wall time over several training seeds (a benchmark, not a test).

    .venv/bin/python bench/train_seeds.py [--seeds 0 1 2]

Each run is `tlserve train --data builtin:digits` with the default settings and the default split (the
one scikit-learn's SVC baseline, 0.991, was measured on); only the training seed changes. Prints one
line per seed and the spread, and writes bench/results/train_seeds.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train_seeds.json"


def run(seed: int, out: Path) -> dict:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "tlserve.cli", "train", "--data", "builtin:digits", "--name", "digits",
                    "--seed", str(seed), "--out", str(out), "--quiet"], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.monotonic() - started
    version = max((p for p in (out / "digits").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    report = json.loads((version / "assets.extra" / "report" / "report.json").read_text())
    errors = round(report["n"] * (1 - report["accuracy"]))
    return {"seed": seed, "accuracy": report["accuracy"], "errors": errors, "test_images": report["n"],
            "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            row = run(seed, Path(tmp) / f"seed{seed}")
            rows.append(row)
            print(f"seed {seed}: accuracy {row['accuracy']:.4f} ({row['errors']} errors of {row['test_images']}), "
                  f"wall {row['wall_s']:.0f} s", flush=True)
    accuracies = [r["accuracy"] for r in rows]
    summary = {"mean": statistics.mean(accuracies), "min": min(accuracies), "max": max(accuracies),
               "stdev": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0}
    print(f"accuracy mean {summary['mean']:.4f}  min {summary['min']:.4f}  max {summary['max']:.4f}  "
          f"stdev {summary['stdev']:.4f}  (SVC baseline on raw pixels: 0.991)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": f"{platform.node()} {os.cpu_count()} cores", "rows": rows,
                                   "summary": summary, "command": "python bench/train_seeds.py"}, indent=2) + "\n")


if __name__ == "__main__":
    main()
