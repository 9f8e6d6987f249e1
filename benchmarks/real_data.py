"""SE-CAI (frozen 8M by default; --variants) on real PPI splits beside the node-degree
baseline and "all positive", every threshold chosen on validation; a yeast split's
validation is a similarity-disjoint hold-out of 10% of its training file. Every seed's split
files and trainer runs stay in --work_dir, whose results.md pools all its seeds (mean ± sd):
the same command again reads the runs that finished and continues one stopped at a
checkpoint; more --seeds add to them. BENCHMARKS.md, Real data.

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
from ppi_dist.data.clusters import similarity_links
from ppi_dist.data.fasta import read_fasta
from ppi_dist.data.pairs import Pair, write_pairs
from ppi_dist.data.split import split_pairs
from ppi_dist.evaluation.audit import degree_baseline_scores, read_pairs
from ppi_dist.evaluation.threshold import evaluate_at, search_threshold
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.models.windows import WINDOW_MODES, Windowing
from ppi_dist.tables import markdown_table
from ppi_dist.training.checkpoint import latest_checkpoint
from ppi_dist.training.machine import default_device, device_name, machine_line
from ppi_dist.training.rundir import run_contents

METRICS = ("accuracy", "precision", "recall", "f1", "score", "mcc", "auroc", "aupr")
METRICS_HEADER = ("predictor", "accuracy", "precision", "recall", "F1", "weighted", "MCC")
METRICS_HEADER += ("AUROC", "AUPR", "threshold")


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


def split_paths(name: str, work: Path, seed: int) -> dict[str, Path]:
    return {split: work / f"{name}_seed{seed}_{split}.tsv" for split in ("train", "valid", "test")}


def make_splits(name: str, work: Path, args, seed: int) -> dict[str, Path]:
    """A seed's pair files in `work`: written, or read back when an earlier call wrote them
    (`settings.json` holds the work dir to one set of sizes)."""
    paths = split_paths(name, work, seed)
    reuse = all(path.is_file() for path in paths.values())
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


def degree_baseline(paths: dict[str, Path]) -> dict:
    train = read_pairs(paths["train"])
    valid, test = read_pairs(paths["valid"]), read_pairs(paths["test"])
    valid_scores = np.array(degree_baseline_scores(train, valid), dtype=float)
    test_scores = np.array(degree_baseline_scores(train, test), dtype=float)
    chosen = search_threshold(valid_scores, [p.label for p in valid], grid="distinct")
    return evaluate_at(test_scores, [p.label for p in test], chosen.threshold).summary()


def all_positive(paths: dict[str, Path]) -> dict:
    labels = [pair.label for pair in read_pairs(paths["test"])]
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


def run_secai(run: TrainerRun, args: argparse.Namespace) -> None:
    """The trainer's run of `run`, unless it finished in an earlier call (its metrics.json)."""
    if (run.out / "metrics.json").is_file():
        print(f"{run.out}: finished earlier, read as it is")
        return
    command = trainer_command(run, args)
    shown = " ".join(c if c != sys.executable else "python" for c in command)
    print(f"$ {shown}", flush=True)
    started = time.perf_counter()
    run_trainer(command, run.out)
    device = device_name(torch.device(default_device()))
    print(f"{run.out}: {(time.perf_counter() - started) / 60:.1f} min on {device}")


def run_trainer(command: list[str], out: Path) -> None:
    """Run train.py to its end. Ctrl-C reaches the trainer too, which saves a checkpoint:
    wait for it (subprocess.run would kill it mid-save); a handler, not KeyboardInterrupt, so
    an interrupt while Popen starts it is not raised through Popen."""

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
    if not (out / "metrics.json").is_file():  # stopped on request, with its checkpoint
        raise SystemExit(
            f"{out}: stopped before its final metrics, with its checkpoint; the same command "
            "continues from it"
        )


def continue_or_replace(out: Path) -> list[str]:
    """A run folder cut short (a checkpoint, no metrics) continues from its checkpoint; one
    stopped before its first checkpoint is replaced."""
    if not run_contents(out):
        return []
    if latest_checkpoint(out / "checkpoints"):
        return ["--resume_from", "latest"]
    return ["--overwrite", "true"]


# The arguments that define a configuration: a work dir holds one per dataset.
POOLED_SETTINGS = "train_pairs valid_pairs test_pairs max_residues windows max_tokens epochs"
POOLED_SETTINGS += " lora_layers split_method"


def check_settings(work: Path, args: argparse.Namespace) -> None:
    """Refuse a work dir whose runs of these datasets were made with other settings (seeds
    pool only with like runs); record these settings for later calls."""
    path = work / "settings.json"
    settings = {key: getattr(args, key) for key in POOLED_SETTINGS.split()}
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    for name in args.datasets:
        found = recorded.setdefault(name, settings)
        differ = [
            f"{k} {found.get(k)!r} there, {v!r} here"
            for k, v in settings.items()
            if found.get(k) != v
        ]
        if differ:
            raise SystemExit(
                f"{path}: {name}: its runs were made with other settings ({'; '.join(differ)}); "
                "seeds are pooled only with like runs: pass another --work_dir"
            )
    path.write_text(json.dumps(recorded, indent=2) + "\n")


def mean_sd(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Per metric: mean and sample standard deviation (0 for one run)."""
    out = {}
    for name in (*METRICS, "threshold"):
        values = np.array([run[name] for run in runs], dtype=float)
        sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[name] = {"mean": float(values.mean()), "sd": sd, "n": int(values.size)}
    return out


def collect(name: str, work: Path) -> dict:
    """Every seed of `name` in `work`: the baselines on its split files and each finished
    trainer run's test metrics (and at each threshold objective's choice), pooled."""
    per_seed: dict[str, dict[int, dict]] = {}
    found = work.glob(f"{name}_seed*_train.tsv")
    for seed in sorted(int(path.name.split("_seed")[1].split("_")[0]) for path in found):
        paths = split_paths(name, work, seed)
        per_seed.setdefault("degree baseline", {})[seed] = degree_baseline(paths)
        per_seed.setdefault("all positive", {})[seed] = all_positive(paths)
        for variant, label in VARIANTS.items():
            metrics = work / f"{name}_{variant}_seed{seed}" / "metrics.json"
            if not metrics.is_file():
                continue
            finished = json.loads(metrics.read_text())
            per_seed.setdefault(label, {})[seed] = finished["test"]
            for objective, chosen in finished.get("objectives", {}).items():
                record = chosen["test"] | {"threshold": chosen["threshold"]}
                per_seed.setdefault(f"{label}, threshold by {objective}", {})[seed] = record
    predictors = {}
    for label, by_seed in per_seed.items():
        runs = [by_seed[seed] for seed in sorted(by_seed)]
        predictors[label] = {"seeds": sorted(by_seed), "runs": runs, "mean_sd": mean_sd(runs)}
    return predictors


def write_results(work: Path) -> None:
    """results.md and results.json in `work`: every dataset run there."""
    names = json.loads((work / "settings.json").read_text())
    results = {name: {"predictors": collect(name, work)} for name in names}
    text = "\n\n".join(metrics_section(name, results[name]["predictors"]) for name in names)
    (work / "results.md").write_text(text + "\n")
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def metrics_section(name: str, predictors: dict) -> str:
    """One dataset's table of every predictor over its seeds (mean ± sd), and the published
    figures; a predictor with fewer seeds than the section says which it has."""
    seeds = sorted({seed for record in predictors.values() for seed in record["seeds"]})
    rows = []
    for label, record in predictors.items():
        shown = label if record["seeds"] == seeds else f"{label} (seeds {record['seeds']})"
        if len(record["runs"]) == 1:
            run = record["runs"][0]
            rows.append((shown, *(f"{run[k]:.3f}" for k in METRICS), f"{run['threshold']:.3g}"))
            continue
        stats = record["mean_sd"]
        cells = [f"{stats[k]['mean']:.3f} ± {stats[k]['sd']:.3f}" for k in METRICS]
        threshold = f"{stats['threshold']['mean']:.3g} ± {stats['threshold']['sd']:.2g}"
        rows.append((shown, *cells, threshold))
    lines = [f"### {name} ({len(seeds)} seed{'s' * (len(seeds) > 1)}: {seeds})", ""]
    lines += markdown_table(METRICS_HEADER, rows)
    return "\n".join([*lines, "", f"Published: {DATASETS[name].published}."])


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
    add("--seed", type=int, default=0)
    add("--seeds", type=int, default=1, help="runs per configuration: seed, seed+1, ...")
    add("--split_method", choices=("graph", "random"), default="graph")
    add("--dry", action="store_true", help="baselines only, no SE-CAI runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    check_settings(work, args)
    print(f"{machine_line(torch.device(default_device()))}; settings {vars(args)}")
    for name in args.datasets:
        fasta = fasta_of(name)
        if name.startswith("yeast") and not args.dry:
            build_whole_cache(fasta, work, args)
        for seed in range(args.seed, args.seed + args.seeds):
            paths = make_splits(name, work, args, seed)
            for variant in [] if args.dry else args.variants:
                run_secai(TrainerRun(name, paths, fasta, work, variant, seed), args)
            write_results(work)  # after every seed: a call cut short keeps what it finished
        print(metrics_section(name, collect(name, work)), flush=True)
    print(f"written: {work / 'results.md'}")


if __name__ == "__main__":
    main()
