"""SE-CAI (frozen 8M by default; --variants) on real PPI splits beside the node-degree
baseline and "all positive", every threshold chosen on validation; a yeast split's
validation is a similarity-disjoint hold-out of 10% of its training file. --seeds N pools N
seeds (mean ± sd) with earlier ones of the same settings in --work_dir's results.json; a seed
stopped before its metrics continues from its checkpoint. BENCHMARKS.md, Real data.

    python -m benchmarks.real_data --datasets yeast-c3 --train_pairs 2000
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from benchmarks.core import ENCODER_8M, REPO, SHARED, benchmark_config, build_model
from benchmarks.tables import METRICS, metrics_section
from ppi_dist.data.clusters import similarity_links
from ppi_dist.data.fasta import read_fasta
from ppi_dist.data.pairs import Pair, write_pairs
from ppi_dist.data.split import split_pairs
from ppi_dist.evaluation.audit import degree_baseline_scores, read_pairs
from ppi_dist.evaluation.threshold import evaluate_at, search_threshold
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.models.windows import WINDOW_MODES, Windowing
from ppi_dist.training.checkpoint import latest_checkpoint
from ppi_dist.training.machine import default_device, device_name, machine_line
from ppi_dist.training.rundir import run_contents


class Dataset(NamedTuple):
    """A real split under ../shared/data."""

    folder: str  # train.tsv, test.tsv and, where the split ships one, valid.tsv
    fasta_folder: str  # sequences.fasta; the yeast splits' 4,424 proteins are encoded once
    published: str  # the published figures, printed under the table


DATASETS = {
    "yeast-random": Dataset(
        "yeast-du2017/random",
        "yeast-du2017",
        "published methods about 0.9 accuracy (Bernett et al. 2024)",
    ),
    "yeast-c3": Dataset(
        "yeast-du2017/c3",
        "yeast-du2017",
        "published methods near chance (Bernett et al. 2024)",
    ),
    "bernett": Dataset(
        "bernett-gold",
        "bernett-gold",
        "accuracy: D-SCRIPT 0.50, PIPR 0.52, "
        "Richoux-ESM-2 0.63, TUnA 0.648 (AUPR 0.692), TUnA + cross-attention 0.66",
    ),
}


def fasta_of(name: str) -> Path:
    return SHARED / "data" / DATASETS[name].fasta_folder / "sequences.fasta"


SIMILARITY_LINKS: dict[str, list[tuple[str, str]]] = {}


def make_splits(name: str, work: Path, args, seed: int) -> dict[str, Path]:
    """A seed's pair files in `work`, written (or with --reuse_splits read back)."""
    paths = {split: work / f"{name}_seed{seed}_{split}.tsv" for split in ("train", "valid", "test")}
    reuse = args.reuse_splits and all(path.is_file() for path in paths.values())
    if reuse:
        splits = {split: read_pairs(path) for split, path in paths.items()}
    else:
        splits = new_splits(name, args, seed)
    for split, pairs in splits.items():
        if not reuse:
            write_pairs(paths[split], pairs)
        positives = sum(pair.label for pair in pairs)
        reused = f", reused from {paths[split]}" if reuse else ""
        print(
            f"{name} {split}: {len(pairs):,} pairs ({positives / len(pairs):.1%} positive){reused}"
        )
    return paths


def new_splits(name: str, args, seed: int) -> dict[str, list[Pair]]:
    """Seeded subsets of the split files; yeast validation held out of training."""
    rng = random.Random(seed)
    folder = SHARED / "data" / DATASETS[name].folder
    train, test = read_pairs(folder / "train.tsv"), read_pairs(folder / "test.tsv")
    if (folder / "valid.tsv").is_file():
        valid = read_pairs(folder / "valid.tsv")
        rng.shuffle(valid)
    else:  # the yeast splits ship no validation file: ppi_dist.data.split holds one out
        proteins = {p for pair in train for p in (pair.protein_a, pair.protein_b)}
        sequences = {k: v for k, v in read_fasta(fasta_of(name)).items() if k in proteins}
        if args.split_method == "graph" and name not in SIMILARITY_LINKS:
            # The whole training file's MMseqs2 links do not change with the seed: once.
            SIMILARITY_LINKS[name] = similarity_links(sequences, 0.4)
        split = split_pairs(
            train,
            sequences,
            0.1,
            method=args.split_method,
            seed=seed,
            clusters=SIMILARITY_LINKS.get(name),
        )
        train, valid = split.blocks["train"], split.blocks["valid"]
        print(f"{name} validation hold-out (seed {seed}):\n{split.report.describe()}")
        rng.shuffle(valid)
    rng.shuffle(train)
    if args.test_pairs is not None:
        test = rng.sample(test, min(args.test_pairs, len(test)))
    return {"train": train[: args.train_pairs], "valid": valid[: args.valid_pairs], "test": test}


def labels_of(pairs: list[Pair]) -> list[float]:
    return [pair.label for pair in pairs]


def degree_baseline(paths: dict[str, Path]) -> dict:
    train = read_pairs(paths["train"])
    valid, test = read_pairs(paths["valid"]), read_pairs(paths["test"])
    valid_scores = np.array(degree_baseline_scores(train, valid), dtype=float)
    test_scores = np.array(degree_baseline_scores(train, test), dtype=float)
    chosen = search_threshold(valid_scores, labels_of(valid), grid="distinct")
    return evaluate_at(test_scores, labels_of(test), chosen.threshold).summary()


def all_positive(paths: dict[str, Path]) -> dict:
    labels = labels_of(read_pairs(paths["test"]))
    return evaluate_at(np.ones(len(labels)), labels, 0.5).summary()


def cache_dir(work: Path, fasta: Path, args) -> Path:
    return work / f"cache_{fasta.parent.name}_{args.max_residues}_{args.windows}"


def build_whole_cache(fasta: Path, work: Path, args) -> None:
    """Every protein of `fasta` encoded once; the frozen runs' trainer reads any subset."""
    device = torch.device(default_device())
    config = benchmark_config(["--encoder", str(ENCODER_8M), "--freeze_encoder", "true"], device)
    model = build_model(config, device)
    started = time.perf_counter()
    cache = EmbeddingCache.build(
        model,
        read_fasta(fasta),
        directory=cache_dir(work, fasta, args),
        windowing=Windowing(args.max_residues, args.max_residues // 4, args.windows),
        progress=True,
    )
    print(
        f"embedding cache of {fasta}: {len(cache):,} proteins, {cache.nbytes / 2**20:,.0f} MiB, "
        f"{time.perf_counter() - started:.0f} s"
    )


# The trainer runs per seed: variant (the middle of its run folder's name) -> table label.
VARIANTS = {
    "frozen": "SE-CAI frozen 8M",
    "lora": "SE-CAI LoRA 8M",
    "lora_top": "SE-CAI LoRA on the top layers (--lora_layers), trunk cache, 8M",
    "pooled": "pooled baseline frozen 8M (no cross-attention)",
}


@dataclass(frozen=True)
class TrainerRun:
    dataset: str
    paths: dict[str, Path]  # "train", "valid", "test" -> pair file
    fasta: Path
    work: Path
    variant: str  # a key of VARIANTS
    seed: int

    @property
    def out(self) -> Path:
        return self.work / f"{self.dataset}_{self.variant}_seed{self.seed}"


def trainer_command(run: TrainerRun, args: argparse.Namespace) -> list[str]:
    """The train.py command of `run`."""
    paths, out = run.paths, run.out
    flags = {
        "train_file": paths["train"],
        "valid_file": paths["valid"],
        "test_file": paths["test"],
        "fasta": run.fasta,
        "encoder": ENCODER_8M,
        "max_residues": args.max_residues,
        "scoring_windows": args.windows,
        "max_tokens": args.max_tokens,
        "cross_attention_heads": 4,
        "head_hidden": 256,
        "learning_rate_head": "1e-3",
        "learning_rate_lora": "5e-4",
        "output_dir": out,
        "report_to": "none",
        "seed": run.seed,
        # The published yeast splits label a few pairs both 1 and 0 (23 rows of random/
        # train.tsv); the trainer refuses that by default. Keep the files as published.
        "allow_contradictory_labels": "true",
    }
    if run.variant in ("lora", "lora_top"):
        flags["epochs"] = args.epochs
        if run.variant == "lora_top":  # one trunk cache for every seed's run
            trunk = f"trunk_{run.fasta.parent.name}_{args.max_residues}_last{args.lora_layers}"
            flags |= {"lora_layers": args.lora_layers, "trunk_cache": run.work / trunk}
    else:
        cache = cache_dir(run.work, run.fasta, args)
        flags |= {"freeze_encoder": "true", "embedding_cache": cache, "epochs": args.epochs}
    if run.variant == "pooled":
        flags["interaction"] = "pooled"
    command = [sys.executable, "ppi_dist/train.py"]
    command += [word for name, value in flags.items() for word in (f"--{name}", str(value))]
    return command + continue_or_replace(out)


def run_secai(run: TrainerRun, args: argparse.Namespace) -> tuple[dict, dict, str, float]:
    """(test metrics, test metrics at each threshold objective's choice, command, seconds)."""
    command = trainer_command(run, args)
    shown = " ".join(c if c != sys.executable else "python" for c in command)
    print(f"$ {shown}", flush=True)
    started = time.perf_counter()
    metrics = run_trainer(command, run.out)
    seconds = time.perf_counter() - started
    objectives = {
        k: v["test"] | {"threshold": v["threshold"]}
        for k, v in metrics.get("objectives", {}).items()
    }
    return metrics["test"], objectives, shown, seconds


class TrainerStopped(Exception):
    """train.py stopped on request (SIGTERM/SIGINT) before its final metrics."""


def run_trainer(command: list[str], out: Path) -> dict:
    """Run train.py to its end; its metrics.json. Ctrl-C reaches the trainer too, which
    saves a checkpoint: wait for it (subprocess.run would kill it mid-save); a handler, not
    KeyboardInterrupt, so an interrupt while Popen starts it is not raised through Popen."""

    def note_interrupt(signum, frame) -> None:
        print("interrupted: waiting for train.py to save its checkpoint", flush=True)

    previous = signal.signal(signal.SIGINT, note_interrupt)
    try:
        process = subprocess.Popen(command, cwd=REPO)
        returncode = process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    if returncode != 0:
        raise SystemExit(f"{out}: train.py exited with status {returncode} (its output is above)")
    metrics = out / "metrics.json"
    if not metrics.is_file():  # continue_or_replace resumes only folders without metrics
        raise TrainerStopped(f"{out}: stopped before its final metrics, with its checkpoint")
    return json.loads(metrics.read_text())


def continue_or_replace(out: Path) -> list[str]:
    """A run folder cut short (a checkpoint, no metrics) continues from its checkpoint; one
    finished, or stopped before its first checkpoint, is replaced."""
    if not run_contents(out):
        return []
    if not (out / "metrics.json").is_file() and latest_checkpoint(out / "checkpoints"):
        return ["--resume_from", "latest"]
    return ["--overwrite", "true"]


# The arguments that define a configuration: seeds are pooled only across equal values.
POOLED_SETTINGS = "train_pairs valid_pairs test_pairs max_residues windows max_tokens epochs"
POOLED_SETTINGS += " lora_layers split_method"


def run_settings(args: argparse.Namespace) -> dict:
    return {key: getattr(args, key) for key in POOLED_SETTINGS.split()}


def read_earlier(path: Path, datasets: list[str], settings: dict) -> dict[str, dict]:
    """Per dataset in `path` (a results.json): {"settings", "predictors": {label: {seed:
    metrics}}, "commands"}; a dataset run now pools only with runs of `settings`."""
    earlier = {}
    for name, result in (json.loads(path.read_text()) if path.is_file() else {}).items():
        found = result.get("settings", {})  # none: refused below
        differ = [
            f"{key} {found.get(key)!r} there, {value!r} here"
            for key, value in settings.items()
            if name in datasets and found.get(key) != value
        ]
        if differ:
            raise SystemExit(
                f"{path}: {name}: its runs were made with other settings ("
                + "; ".join(differ)
                + "); seeds are pooled only with like runs: pass another --work_dir"
            )
        predictors = {
            label: dict(zip(record["seeds"], record["runs"], strict=True))
            for label, record in result["predictors"].items()
        }
        earlier[name] = {
            "settings": found,
            "predictors": predictors,
            "commands": result["commands"],
        }
    return earlier


def mean_sd(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Per metric: mean and sample standard deviation (0 for one run)."""
    out = {}
    for name in (*METRICS, "threshold"):
        values = np.array([run[name] for run in runs], dtype=float)
        sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[name] = {"mean": float(values.mean()), "sd": sd, "n": int(values.size)}
    return out


def pooled_result(predictors: dict[str, dict[int, dict]], commands: dict, settings: dict) -> dict:
    records = {}
    for label, by_seed in predictors.items():
        seeds = sorted(by_seed)
        runs = [by_seed[seed] for seed in seeds]
        records[label] = {"seeds": seeds, "runs": runs, "mean_sd": mean_sd(runs)}
    return {"settings": settings, "predictors": records, "commands": commands}


def write_results(work: Path, results: dict) -> None:
    """results.md and results.json in `work`."""
    text = "\n\n".join(section(name, result) for name, result in results.items())
    (work / "results.md").write_text(text + "\n")
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def section(name: str, result: dict) -> str:
    return metrics_section(name, result, DATASETS[name].published)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    add("--work_dir", default=str(REPO / "outputs" / "real_data"))
    add("--train_pairs", type=int, default=6000)
    add("--valid_pairs", type=int, default=1500)
    add("--test_pairs", type=int, default=None, help="subset of test; all by default")
    add("--max_residues", type=int, default=400)
    add("--windows", choices=WINDOW_MODES, default="crop", help="how scoring reads long proteins")
    add("--max_tokens", type=int, default=8192)
    add("--epochs", type=int, default=2)
    add("--variants", nargs="+", choices=list(VARIANTS), default=["frozen"], help="runs per seed")
    add("--lora_layers", type=int, default=2, help="the lora_top variant's LoRA layers")
    add("--reuse_splits", action="store_true", help="a seed's split files from --work_dir")
    add("--seed", type=int, default=0)
    add("--seeds", type=int, default=1, help="runs per configuration: seed, seed+1, ...")
    add("--split_method", choices=("graph", "random"), default="graph")
    add("--dry", action="store_true", help="baselines only, no SE-CAI runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    settings = run_settings(args)
    earlier = read_earlier(work / "results.json", args.datasets, settings)
    print(f"{machine_line(torch.device(default_device()))}; settings {vars(args)}")
    # Datasets not run now stay in results.json as they were.
    results = {
        name: pooled_result(e["predictors"], e["commands"], e["settings"])
        for name, e in earlier.items()
        if name not in args.datasets
    }
    for name in args.datasets:
        run_dataset(name, args, work, earlier.get(name), results)
        print(section(name, results[name]), flush=True)
    print(f"written: {work / 'results.md'}")


def run_dataset(
    name: str, args: argparse.Namespace, work: Path, before: dict | None, results: dict
) -> None:
    """Every seed of `name`: the baselines and each variant's trainer run, pooled with the
    seeds `before` and written to `results` after every seed (a run cut short keeps what it
    finished)."""
    fasta, settings = fasta_of(name), run_settings(args)
    if name.startswith("yeast") and not args.dry:
        build_whole_cache(fasta, work, args)
    per_seed = dict((before or {}).get("predictors", {}))
    commands = dict((before or {}).get("commands", {}))
    if per_seed:
        seeds = sorted({seed for runs in per_seed.values() for seed in runs})
        print(f"{name}: pooling with earlier seeds {seeds} (a seed run again replaces its run)")
    device = torch.device(default_device())
    for seed in range(args.seed, args.seed + args.seeds):
        paths = make_splits(name, work, args, seed)
        per_seed.setdefault("degree baseline", {})[seed] = degree_baseline(paths)
        per_seed.setdefault("all positive", {})[seed] = all_positive(paths)
        for variant in [] if args.dry else args.variants:
            label = VARIANTS[variant]
            try:
                run = TrainerRun(name, paths, fasta, work, variant, seed)
                metrics, objectives, command, seconds = run_secai(run, args)
            except TrainerStopped as stopped:
                results[name] = pooled_result(per_seed, commands, settings)
                write_results(work, results)
                left = args.seed + args.seeds - seed
                sys.exit(
                    f"{stopped}. {work / 'results.json'} keeps the runs finished before it; "
                    f"the same command with --seed {seed} --seeds {left} continues from here."
                )
            per_seed.setdefault(label, {})[seed] = metrics
            # The same model with each threshold objective (chosen on validation).
            for objective, values in objectives.items():
                per_seed.setdefault(f"{label}, threshold by {objective}", {})[seed] = values
            minutes = f"{seconds / 60:.1f} min on {device_name(device)}"
            commands[f"{label}, seed {seed}"] = f"{command}  ({minutes})"
        results[name] = pooled_result(per_seed, commands, settings)
        write_results(work, results)


if __name__ == "__main__":
    main()
