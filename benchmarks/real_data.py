"""SE-CAI on real PPI benchmarks, beside the node-degree baseline, "all positive" and the
published figures. Writes a markdown table (and JSON) under --work_dir.

    python benchmarks/real_data.py                      # all three splits, CPU-sized
    python benchmarks/real_data.py --datasets yeast-c3 --train_pairs 2000

For each split: seeded subsets of the pair files (sizes printed; a CPU cannot train on all
of Bernett's 163k pairs in a session), a validation set (Bernett's own; for the yeast splits,
which ship none, a protein-disjoint hold-out of the training file made by `ppi_dist.split`:
`--valid_protein_fraction` of the training proteins, mixed pairs dropped and counted), then

- degree baseline: score(A, B) = net training degree of A plus that of B (ppi_dist.audit);
- all positive: every pair predicted to interact;
- SE-CAI, frozen 8M ESM-2 encoder (`--freeze_encoder`, states cached once), and optionally a
  short LoRA fine-tune (`--lora_steps`).

Every threshold is chosen on validation only and applied unchanged to test.

`--seeds N` repeats every configuration with seeds seed, seed+1, ... (new subsets, new
validation hold-out, new trainer seed) and reports the mean and standard deviation of each
metric over the N runs. `--dry` skips the SE-CAI runs (baselines only: a quick check).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ppi_dist.audit import degree_baseline_scores, read_pairs  # noqa: E402
from ppi_dist.data import read_fasta  # noqa: E402
from ppi_dist.metrics import evaluate_at, search_threshold  # noqa: E402
from ppi_dist.split import split_pairs  # noqa: E402

SHARED = REPO.parent / "shared"
ENCODER_8M = SHARED / "models" / "esm2_t6_8M"
DATASETS = {
    "yeast-random": {
        "train": "yeast-du2017/random/train.tsv",
        "test": "yeast-du2017/random/test.tsv",
        "fasta": "yeast-du2017/sequences.fasta",
        "cache_whole_fasta": True,  # 4,424 proteins: encode them all once for both splits
        "published": "published methods about 0.9 accuracy (Bernett et al. 2024)",
    },
    "yeast-c3": {
        "train": "yeast-du2017/c3/train.tsv",
        "test": "yeast-du2017/c3/test.tsv",
        "fasta": "yeast-du2017/sequences.fasta",
        "cache_whole_fasta": True,
        "published": "published methods near chance (Bernett et al. 2024)",
    },
    "bernett": {
        "train": "bernett-gold/train.tsv",
        "valid": "bernett-gold/valid.tsv",
        "test": "bernett-gold/test.tsv",
        "fasta": "bernett-gold/sequences.fasta",
        "published": "accuracy: D-SCRIPT 0.50, PIPR 0.52, Richoux-ESM-2 0.63, TUnA 0.648 "
        "(AUPR 0.692), TUnA + cross-attention 0.66",
    },
}


def write_pairs(path: Path, pairs: list[tuple[str, str, float]]) -> None:
    with open(path, "w") as handle:
        handle.write("protein_a\tprotein_b\tlabel\n")
        handle.writelines(f"{a}\t{b}\t{int(y)}\n" for a, b, y in pairs)


def make_splits(name: str, spec: dict, work: Path, args, seed: int) -> dict[str, Path]:
    """Seeded subsets of the split files; yeast validation = held-out training PROTEINS."""
    rng = random.Random(seed)
    train = read_pairs(SHARED / "data" / spec["train"])
    test = read_pairs(SHARED / "data" / spec["test"])
    if "valid" in spec:
        valid = read_pairs(SHARED / "data" / spec["valid"])
        rng.shuffle(valid)
    else:  # the yeast splits ship no validation file: hold out proteins (ppi_dist.split)
        proteins = {p for a, b, _ in train for p in (a, b)}
        sequences = {k: v for k, v in read_fasta(SHARED / "data" / spec["fasta"]).items()
                     if k in proteins}  # fmt: skip
        train, valid, _, report = split_pairs(
            train, sequences, args.valid_protein_fraction, seed=seed
        )
        print(f"{name} validation hold-out (seed {seed}): {report.describe()}")
        rng.shuffle(valid)
    rng.shuffle(train)
    splits = {
        "train": train[: args.train_pairs],
        "valid": valid[: args.valid_pairs],
        "test": test
        if args.test_pairs is None
        else rng.sample(test, min(args.test_pairs, len(test))),
    }
    paths = {}
    for split, pairs in splits.items():
        paths[split] = work / f"{name}_seed{seed}_{split}.tsv"
        write_pairs(paths[split], pairs)
        positives = sum(y for *_, y in pairs)
        print(f"{name} {split}: {len(pairs):,} pairs ({positives / len(pairs):.1%} positive)")
    return paths


def degree_baseline(paths: dict[str, Path], weights=None) -> dict:
    train = read_pairs(paths["train"])
    valid, test = read_pairs(paths["valid"]), read_pairs(paths["test"])
    valid_scores = np.array(degree_baseline_scores(train, valid), dtype=float)
    test_scores = np.array(degree_baseline_scores(train, test), dtype=float)
    chosen = search_threshold(valid_scores, [y for *_, y in valid], grid="distinct")
    return evaluate_at(test_scores, [y for *_, y in test], chosen.threshold).summary()


def all_positive(paths: dict[str, Path]) -> dict:
    labels = [y for *_, y in read_pairs(paths["test"])]
    return evaluate_at(np.ones(len(labels)), labels, 0.5).summary()


def cache_dir(work: Path, fasta: Path, args) -> Path:
    return work / f"cache_{fasta.parent.name}_{args.max_residues}"


def build_whole_cache(fasta: Path, work: Path, args) -> None:
    """Encode every protein of `fasta` once; the trainer reuses the cache for any subset."""
    import torch

    from ppi_dist.data import read_fasta
    from ppi_dist.embeddings import EmbeddingCache
    from ppi_dist.model import SECAI, SECAIConfig

    model = SECAI(SECAIConfig(encoder=str(ENCODER_8M), freeze_encoder=True))
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    cache = EmbeddingCache.build(model, read_fasta(fasta), directory=cache_dir(work, fasta, args),
                                 max_residues=args.max_residues, progress=True)  # fmt: skip
    print(f"embedding cache of {fasta}: {len(cache):,} proteins, {cache.nbytes / 2**20:,.0f} MiB, "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip


def run_secai(
    name: str, paths: dict, fasta: Path, work: Path, args, lora: bool, seed: int
) -> tuple[dict, dict, str, float]:
    """One trainer run: (test metrics at the shipped threshold, test metrics at each threshold
    objective's validation choice, the command, wall seconds)."""
    out = work / f"{name}_{'lora' if lora else 'frozen'}_seed{seed}"
    command = [
        sys.executable, "ppi_dist/train.py",
        "--train_file", str(paths["train"]), "--valid_file", str(paths["valid"]),
        "--test_file", str(paths["test"]), "--fasta", str(fasta),
        "--encoder", str(ENCODER_8M), "--max_residues", str(args.max_residues),
        "--max_tokens", str(args.max_tokens), "--cross_attention_heads", "4",
        "--head_hidden", "256", "--learning_rate_head", "1e-3", "--learning_rate_lora", "5e-4",
        "--output_dir", str(out), "--report_to", "none", "--seed", str(seed),
    ]  # fmt: skip
    if lora:
        command += ["--max_steps", str(args.lora_steps)]
    else:
        cache = cache_dir(work, fasta, args)
        command += ["--freeze_encoder", "true", "--embedding_cache", str(cache),
                    "--epochs", str(args.epochs)]  # fmt: skip
    shown = " ".join(c if c != sys.executable else "python" for c in command)
    print(f"$ {shown}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    seconds = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    objectives = {k: v["test"] | {"threshold": v["threshold"]}
                  for k, v in metrics.get("objectives", {}).items()}  # fmt: skip
    return metrics["test"], objectives, shown, seconds


TABLE_METRICS = ("accuracy", "precision", "recall", "f1", "score", "mcc", "auroc", "aupr")


def row(label: str, m: dict) -> str:
    cells = [m[k] for k in TABLE_METRICS]
    return f"| {label} | " + " | ".join(f"{c:.3f}" for c in cells) + f" | {m['threshold']:.3g} |"


def mean_sd(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Per metric: mean and sample standard deviation over runs (sd 0 for one run)."""
    out = {}
    for name in (*TABLE_METRICS, "threshold"):
        values = np.array([run[name] for run in runs], dtype=float)
        sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[name] = {"mean": float(values.mean()), "sd": sd, "n": int(values.size)}
    return out


def row_mean_sd(label: str, stats: dict) -> str:
    cells = [f"{stats[k]['mean']:.3f} ± {stats[k]['sd']:.3f}" for k in TABLE_METRICS]
    threshold = stats["threshold"]
    return (
        f"| {label} | "
        + " | ".join(cells)
        + (f" | {threshold['mean']:.3g} ± {threshold['sd']:.2g} |")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--work_dir", default=str(REPO / "outputs" / "real_data"))
    parser.add_argument("--train_pairs", type=int, default=6000)
    parser.add_argument("--valid_pairs", type=int, default=1500)
    parser.add_argument(
        "--test_pairs", type=int, default=None, help="subset of test; all by default"
    )
    parser.add_argument("--max_residues", type=int, default=400)
    parser.add_argument("--max_tokens", type=int, default=8192)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lora_steps", type=int, default=0, help="0: no LoRA run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds", type=int, default=1, help="runs per configuration: seed, seed+1, ..."
    )
    parser.add_argument(
        "--valid_protein_fraction", type=float, default=0.2,
        help="yeast: fraction of training PROTEINS held out for validation (ppi_dist.split)",
    )  # fmt: skip
    parser.add_argument("--dry", action="store_true", help="baselines only, no SE-CAI runs")
    args = parser.parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; settings {vars(args)}")  # fmt: skip
    header = ("| predictor | accuracy | precision | recall | F1 | weighted | MCC | AUROC | AUPR "
              "| threshold |\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    report, results = [], {}
    seeds = [args.seed + k for k in range(args.seeds)]
    for name in args.datasets:
        spec = DATASETS[name]
        fasta = SHARED / "data" / spec["fasta"]
        if spec.get("cache_whole_fasta") and not args.dry:
            build_whole_cache(fasta, work, args)
        runs = [("SE-CAI frozen 8M", False)] + (
            [("SE-CAI LoRA 8M", True)] if args.lora_steps else []
        )
        per_seed: dict[str, list[dict]] = {}
        commands = {}
        for seed in seeds:
            paths = make_splits(name, spec, work, args, seed)
            per_seed.setdefault("degree baseline", []).append(degree_baseline(paths))
            per_seed.setdefault("all positive", []).append(all_positive(paths))
            for label, lora in [] if args.dry else runs:
                metrics, objectives, command, seconds = run_secai(
                    name, paths, fasta, work, args, lora, seed
                )
                per_seed.setdefault(label, []).append(metrics)
                # The same model with each threshold objective (chosen on validation).
                for objective, values in objectives.items():
                    per_seed.setdefault(f"{label}, threshold by {objective}", []).append(values)
                commands[f"{label}, seed {seed}"] = f"{command}  ({seconds / 60:.1f} min)"
            # Written after every seed: a run cut short keeps what it finished.
            done = [s for s in seeds if s <= seed]
            write_results(work, report, results, name, spec, per_seed, commands, done, header)
        report.append(section(name, spec, results[name], commands, done, header))
        print(report[-1], flush=True)
    print(f"written: {work / 'results.md'}")


def section(name, spec, result, commands, seeds, header) -> str:
    lines = [f"### {name} ({len(seeds)} seed{'s' * (len(seeds) > 1)}: {seeds})", "", header]
    if len(seeds) == 1:
        lines += [row(label, r["runs"][0]) for label, r in result.items()]
    else:
        lines += [row_mean_sd(label, r["mean_sd"]) for label, r in result.items()]
    lines += ["", f"Published: {spec['published']}.", ""]
    lines += [f"- {label}: `{c}`" for label, c in commands.items()]
    return "\n".join(lines)


def write_results(work, report, results, name, spec, per_seed, commands, seeds, header) -> None:
    results[name] = {label: {"runs": values, "mean_sd": mean_sd(values)}
                     for label, values in per_seed.items()}  # fmt: skip
    sections = [*report, section(name, spec, results[name], commands, seeds, header)]
    (work / "results.md").write_text("\n\n".join(sections) + "\n")
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
