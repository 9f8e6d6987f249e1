"""The README's default run (`recipes/synthetic_tiny.yaml`), timed before and after issue 24.

Variants: the code before issue 24 (`--before REV`, default 1faf88d, checked out by `git
archive` into a temporary folder and run with this environment), then this tree with
AdamW's per-parameter loop (the optimizer before), as it is (fused AdamW; one-kernel GELU
and index_select gathers in the model), and with `--compile true` (the encoder's layers and
the pair path compiled by inductor).

Every variant trains the same seeded task on the same batches, so pairs per second of
training is steps per second times one constant. The variants alternate over `--repeats`
(drift on a shared machine hits each), and each run's rate is the median of its logged
windows after the first `--skip_windows` (warm-up, and compilation with `--compile`).

    python -m benchmarks.default_run                      # 90 steps, 2 repeats
    python -m benchmarks.default_run --steps 270 --repeats 1
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import core

REPO = Path(__file__).resolve().parent.parent
BEFORE = "1faf88d"
VARIANTS = {
    "loop AdamW": ["--adamw_implementation", "for_loop"],
    "now (the default)": [],
    "now + compile": ["--compile", "true"],
}


def archived_tree(revision: str, into: Path) -> Path:
    """The repository's files at `revision`, written under `into` (git archive)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision], cwd=REPO, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def one_run(tree: Path, flags: list[str], steps: int, out: Path, skip_windows: int) -> dict:
    command = [
        *(sys.executable, "ppi_dist/train.py", "--config", "recipes/synthetic_tiny.yaml"),
        *("--output_dir", str(out), "--max_steps", str(steps), "--eval_every", "1000000"),
        *("--plots", "false", "--report_to", "none", "--log_every", "10", *flags),
    ]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} in {tree} failed:\n{result.stderr[-3000:]}")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    rates = [row["train/pairs_per_s"] for row in log if "train/pairs_per_s" in row]
    return {"pairs_per_s": statistics.median(rates[skip_windows:]), "wall_s": wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip_windows", type=int, default=2, help="first logged windows left out")
    parser.add_argument("--before", default=BEFORE, help="git revision of the code before")
    args = parser.parse_args(argv)
    print(core.machine_line(torch.device("cpu")))
    with tempfile.TemporaryDirectory() as work:
        before = f"before issue 24 ({args.before})"
        trees = {before: archived_tree(args.before, Path(work) / "before")}
        trees.update({name: REPO for name in VARIANTS})
        flags = {before: [], **VARIANTS}
        results: dict[str, list[dict]] = {name: [] for name in trees}
        for repeat in range(args.repeats):
            for k, name in enumerate(trees):
                out = Path(work) / f"run{repeat}_{k}"
                run = one_run(trees[name], flags[name], args.steps, out, args.skip_windows)
                results[name].append(run)
                print(f"repeat {repeat} {name}: {run}", flush=True)
    base = statistics.median(r["pairs_per_s"] for r in results[before])
    head = f"training pairs/s (median of {args.repeats})"
    print(f"\n| variant | {head} | per run | speed-up | wall |")
    print("| --- | --- | --- | --- | --- |")
    for name, runs in results.items():
        rate = statistics.median(r["pairs_per_s"] for r in runs)
        each = ", ".join(f"{r['pairs_per_s']:.1f}" for r in runs)
        walls = ", ".join(f"{r['wall_s']:.0f} s" for r in runs)
        print(f"| {name} | {rate:.1f} | {each} | {rate / base:.2f}x | {walls} |")


if __name__ == "__main__":
    main()
