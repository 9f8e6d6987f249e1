"""The README's default run (`recipes/synthetic_tiny.yaml`) timed as it is and compiled.

Both variants train the same seeded task on the same batches, so pairs per second of
training is steps per second times one constant. They alternate over `--repeats` (drift on
a shared machine hits each), and each run's rate is the median of its logged windows after
the first `--skip_windows` (warm-up, and compilation with `--compile`).

    python -m benchmarks.default_run                      # 90 steps, 2 repeats
    python -m benchmarks.default_run --steps 270 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import core
from benchmarks.tables import markdown_table

VARIANTS = {"the default": [], "compiled": ["--compile", "true"]}


def one_run(flags: list[str], steps: int, out: Path, skip_windows: int) -> dict:
    command = [
        *(sys.executable, "ppi_dist/train.py", "--config", "recipes/synthetic_tiny.yaml"),
        *("--output_dir", str(out), "--max_steps", str(steps), "--eval_every", "1000000"),
        *("--plots", "false", "--report_to", "none", "--log_every", "10", *flags),
    ]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=core.REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    rates = [row["train/pairs_per_s"] for row in log if "train/pairs_per_s" in row]
    return {"pairs_per_s": statistics.median(rates[skip_windows:]), "wall_s": wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip_windows", type=int, default=2, help="first logged windows left out")
    args = parser.parse_args(argv)
    print(core.machine_line(torch.device("cpu")))
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as work:
        for repeat in range(args.repeats):
            for k, (name, flags) in enumerate(VARIANTS.items()):
                out = Path(work) / f"run{repeat}_{k}"
                results[name].append(one_run(flags, args.steps, out, args.skip_windows))
                print(f"repeat {repeat} {name}: {results[name][-1]}", flush=True)
    base = statistics.median(r["pairs_per_s"] for r in results["the default"])
    rows = []
    for name, runs in results.items():
        rate = statistics.median(r["pairs_per_s"] for r in runs)
        each = ", ".join(f"{r['pairs_per_s']:.1f}" for r in runs)
        walls = ", ".join(f"{r['wall_s']:.0f} s" for r in runs)
        rows.append((name, f"{rate:.1f}", each, f"{rate / base:.2f}x", walls))
    head = f"training pairs/s (median of {args.repeats})"
    print("\n".join(markdown_table(("variant", head, "per run", "speed-up", "wall"), rows)))


if __name__ == "__main__":
    main()
