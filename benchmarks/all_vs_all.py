"""All-vs-all prediction of real proteins: every pair through cross-attention (each protein
encoded once), the two-stage screen (`predict --screen`: the first pass over every pair,
cross-attention on the kept share), and the naive path (both proteins through the encoder
for every pair, a seeded sample, extrapolated); and a labelled set's two-stage ranking.

    python -m benchmarks.all_vs_all --proteins 20 --naive_pairs 12   # random weights
    python -m benchmarks.all_vs_all --model RUN/model --fasta FASTA --proteins 200 400 800 \\
        --full_up_to 400 --screens 0.01 0.05 0.1 0.2 --naive_pairs 0
    python -m benchmarks.all_vs_all --labelled RUN/predictions_test.tsv

Without --model, other flags are the trainer's (random weights: speed does not depend on
them). Recall: the share of the full model's top 1% (5%) pairs that the screen keeps.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.core import DEFAULT_FASTA, build_model, trainer_config
from ppi_dist.data.batching import batch_to_device
from ppi_dist.data.fasta import read_fasta, write_fasta
from ppi_dist.data.sequences import tokenize
from ppi_dist.evaluation.metrics import auroc_aupr
from ppi_dist.hub.loading import load_model
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.plans import AllPairsPlan
from ppi_dist.inference.predict import PredictFiles, PredictOptions, PredictRun, predict
from ppi_dist.inference.screen import FirstPassScreen
from ppi_dist.models.windows import Windowing
from ppi_dist.tables import markdown_table
from ppi_dist.training.flops import PEAK_TFLOPS, EncoderShape, layers_forward
from ppi_dist.training.machine import PeakMemory, default_device, machine_line

SCREENS = (0.01, 0.05, 0.1, 0.2)
TOPS = (0.01, 0.05)  # the full model's best pairs whose recall is measured
PROTEOMES = {"yeast": 6_000, "human": 20_000}
H200_MFU = 0.35  # the FLOP model's assumption (benchmarks/flops.py), not a measurement


def top_mask(scores: np.ndarray, share: float) -> np.ndarray:
    """The `share` highest of `scores` (at least one), as a boolean mask."""
    keep = max(math.ceil(share * len(scores)), 1)
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.argsort(-scores, kind="stable")[:keep]] = True
    return mask


def recalls(full: np.ndarray, kept: np.ndarray) -> list[str]:
    """Of the full model's top 1% and 5% pairs, the shares in `kept`."""
    return [f"{(kept & top_mask(full, top)).sum() / top_mask(full, top).sum():.3f}" for top in TOPS]


def labelled_table(path: Path, screens: list[float]) -> list[str]:
    """AUROC and AUPR of the full model, its first pass, and the two-stage ranking (kept
    pairs by cross-attention above the rest by first pass) on a trainer's predictions file."""
    with open(path) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    full = np.array([float(r.get("raw_score") or r["probability"]) for r in rows])
    first = np.array([float(r["first_pass"]) for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    table = [["full (every pair by cross-attention)", "1.000", *_ranking(full, labels), "1, 1"]]
    table.append(["first pass alone", "0", *_ranking(first, labels), "-"])
    for share in screens:
        kept = top_mask(first, share)
        two_stage = np.where(kept, 2 + full, first)  # kept pairs rank above the others
        row = [f"screen {share:g}", f"{kept.mean():.3f}", *_ranking(two_stage, labels)]
        table.append([*row, ", ".join(recalls(full, kept))])
    header = ["ranking", "cross-attention share", "AUROC", "AUPR", "recall of top 1%, 5%"]
    return [
        f"{path}: {len(rows):,} labelled pairs ({labels.mean():.1%} positive)",
        *markdown_table(header, table),
    ]


def _ranking(scores: np.ndarray, labels: np.ndarray) -> list[str]:
    return [f"{value:.4f}" for value in auroc_aupr(scores, labels)]


def _read_scores(path: Path) -> dict[tuple[str, str], tuple[float, float, bool]]:
    """(a, b) -> (probability or NaN, first-pass probability or NaN, scored by cross-attention)."""
    with open(path) as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return {
            (r["protein_a"], r["protein_b"]): (
                float(r["probability"] or "nan"),
                float(r.get("first_pass") or "nan"),
                r.get("stage", "cross_attention") == "cross_attention",
            )
            for r in rows
        }


class Screening:
    """One N: the proteins encoded once, the full run, each screen; timed."""

    def __init__(self, model: torch.nn.Module, sequences: dict[str, str], scratch: Path, tile: int):
        self.model, self.sequences, self.scratch, self.tile = model, sequences, scratch, tile
        self.fasta = scratch / "proteins.fasta"
        write_fasta(self.fasta, sequences)
        windowing = model.config.windowing("scoring")
        start = time.perf_counter()
        EmbeddingCache.build(model, sequences, directory=scratch / "cache", windowing=windowing)
        self.encode_s = time.perf_counter() - start
        self.pairs = len(sequences) * (len(sequences) - 1) // 2
        self.runs = 0  # each run writes its own file
        read = model.config.windowing("scoring")
        self.length = float(np.mean([read.kept_length(len(s)) for s in sequences.values()]))

    def run(self, screen: float | None) -> tuple[float, dict]:
        self.runs += 1
        out = self.scratch / f"run{self.runs}.tsv"
        options = PredictOptions(tile=self.tile, screen=screen)
        start = time.perf_counter()
        predict(
            self.model,
            PredictFiles(out, fasta=self.fasta),
            options,
            PredictRun(cache_dir=self.scratch / "cache", progress=False),
        )
        return time.perf_counter() - start, _read_scores(out)

    def first_pass_rate(self) -> float:
        """Pairs per second of the first pass alone (the screen's cut: every pair once)."""
        cache = EmbeddingCache.open(self.scratch / "cache")
        ids = list(self.sequences)
        plan = AllPairsPlan({p: cache.length(p) for p in ids}, ids, tile=self.tile)
        start = time.perf_counter()
        FirstPassScreen(self.model, cache, plan, 0.05)
        return self.pairs / (time.perf_counter() - start)


def screen_tables(
    model: torch.nn.Module, everything: dict[str, str], args: argparse.Namespace
) -> list[str]:
    """Per N: wall time, cross-attention pairs and recall, full and each screen; then the
    proteome projections from the largest full run's rates."""
    table, rates = [], {}
    for n in args.proteins:
        ids = list(everything)[:n]
        with tempfile.TemporaryDirectory() as scratch:
            screening = Screening(model, {p: everything[p] for p in ids}, Path(scratch), args.tile)
            pairs, encode_s, full = screening.pairs, screening.encode_s, None
            if n <= args.full_up_to:
                full_s, scores = screening.run(1.0 if model.first_pass is not None else None)
                full = np.array([v[0] for v in scores.values()])
                rates = {
                    "encode": encode_s / n,
                    "cross": pairs / full_s,
                    "length": screening.length,
                }
                table.append(
                    [n, f"{pairs:,}", "full", f"{encode_s:.0f} + {full_s:.0f}", f"{pairs:,}"]
                )
                table[-1].append("1, 1")
            for share in args.screens:
                wall, screened = screening.run(share)
                kept = np.array(
                    [screened[pair][2] for pair in (scores if full is not None else screened)]
                )
                recall = ", ".join(recalls(full, kept)) if full is not None else "-"
                table.append([n, f"{pairs:,}", f"screen {share:g}", f"{encode_s:.0f} + {wall:.0f}"])
                table[-1] += [f"{kept.sum():,}", recall]
            if args.screens:
                rates["first"] = screening.first_pass_rate()
    header = ["proteins", "pairs", "run", "wall s (encode + pairs)", "cross-attention pairs"]
    lines = markdown_table([*header, "recall of top 1%, 5%"], table)
    if {"encode", "cross", "first"} <= rates.keys():
        lines += ["", *projection(rates, args.screens, model)]
    return lines


def projection(rates: dict[str, float], screens: list[float], model: torch.nn.Module) -> list[str]:
    """Hours for a proteome: on this machine from the measured rates (encoder per protein,
    cross-attention pairs/s, first-pass pairs/s twice: the cut, then the scoring pass); on
    one H200 from the FLOP model at an assumed MFU (no GPU measurement of predict yet)."""
    shape = EncoderShape.from_config(model.encoder.config)
    length, d, hidden = rates["length"], shape.hidden, model.config.head_hidden
    per_protein = sum(layers_forward(shape, shape.layers, [length + 2]))
    per_pair = 8.0 * length * length * d + 2 * 2.0 * (8 * d * hidden + hidden)
    speed = PEAK_TFLOPS * 1e12 * H200_MFU
    rows = []
    for name, n in PROTEOMES.items():
        pairs = n * (n - 1) / 2
        encode = n * rates["encode"]
        cpu = [encode + pairs * (share / rates["cross"] + 2 / rates["first"]) for share in screens]
        gpu = [(n * per_protein + pairs * share * per_pair) / speed for share in [1.0, *screens]]
        row = [f"{name} ({n:,} proteins, {pairs:,.0f} pairs)"]
        row.append(f"{(encode + pairs / rates['cross']) / 3600:,.1f}")
        row += [f"{seconds / 3600:,.1f}" for seconds in cpu]
        rows.append([*row, " / ".join(f"{seconds / 60:,.2g}" for seconds in gpu)])
    header = ["proteome", "this machine, full (h)", *[f"screen {s:g} (h)" for s in screens]]
    header.append(f"H200 FLOP model, full / {' / '.join(f'{s:g}' for s in screens)} (min)")
    note = (
        f"rates: encoder {rates['encode']:.2f} s/protein, cross-attention {rates['cross']:,.0f} "
        f"pairs/s, first pass {rates['first']:,.0f} pairs/s; FLOP model at mean read length "
        f"{length:.0f}, {PEAK_TFLOPS:g} TFLOP/s x MFU {H200_MFU} (assumed)"
    )
    return [note, *markdown_table(header, rows)]


@torch.no_grad()
def naive_rate(
    model: torch.nn.Module, sequences: dict[str, str], sample: list[tuple[str, str]], batch: int
) -> tuple[float, list[float]]:
    """Both proteins of each sampled pair through the encoder, `batch` pairs at a time, each
    read as its centred window: pairs/s and the probabilities."""
    device = next(model.parameters()).device
    crop = Windowing(model.config.max_residues, 0, "crop")
    probabilities = []
    start = time.perf_counter()
    for i in range(0, len(sample), batch):
        chunk = sample[i : i + batch]
        centred = [crop.windows(len(sequences[p]))[0] for pair in chunk for p in pair]
        proteins = [p for pair in chunk for p in pair]
        texts = [sequences[p][w.start : w.stop] for p, w in zip(proteins, centred, strict=True)]
        input_ids, attention_mask = tokenize(texts)
        index_a = torch.arange(0, 2 * len(chunk), 2)
        fields = {"input_ids": input_ids, "attention_mask": attention_mask}
        fields |= {"index_a": index_a, "index_b": index_a + 1}
        probabilities += torch.sigmoid(model(**batch_to_device(fields, device)).float()).tolist()
    return len(sample) / (time.perf_counter() - start), probabilities


def naive_lines(
    model: torch.nn.Module, sequences: dict[str, str], args: argparse.Namespace
) -> list[str]:
    """Encode-once (every pair, end to end) against the naive path on a seeded sample."""
    with tempfile.TemporaryDirectory() as scratch:
        screening = Screening(model, sequences, Path(scratch), args.tile)
        score_s, cached = screening.run(None)
    once = screening.pairs / (screening.encode_s + score_s)
    sample = random.Random(0).sample(sorted(cached), min(args.naive_pairs, len(cached)))
    naive, probabilities = naive_rate(model, sequences, sample, args.naive_batch)
    worst = max(abs(p - cached[pair][0]) for p, pair in zip(probabilities, sample, strict=True))
    return [
        f"encode-once: encoder {screening.encode_s:.1f} s, pair scoring + writing {score_s:.1f} s "
        f"({screening.pairs / score_s:,.1f} pairs/s) -> {once:,.1f} pairs/s end to end",
        f"naive: {len(sample)} sampled pairs in batches of {args.naive_batch}: {naive:,.2f} "
        f"pairs/s -> {screening.pairs / naive:,.0f} s extrapolated to all pairs (largest "
        f"|difference| from the cached scores: {worst:.1e}, fp16 states)",
        f"speed-up of encode-once: {once / naive:,.1f}x end to end",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--fasta", default=str(DEFAULT_FASTA))
    parser.add_argument("--proteins", type=int, nargs="+", default=[200])
    parser.add_argument("--model", help="a trained model folder (default: random weights)")
    parser.add_argument("--screens", type=float, nargs="*", default=[])
    parser.add_argument("--full_up_to", type=int, default=10**9, help="full runs up to N")
    parser.add_argument("--labelled", type=Path, help="a trainer's predictions TSV")
    parser.add_argument("--naive_pairs", type=int, default=96)
    parser.add_argument("--naive_batch", type=int, default=8)
    parser.add_argument("--tile", type=int, default=64)
    args, flags = parser.parse_known_args(argv)
    device = torch.device(default_device())
    print(machine_line(device))
    if args.labelled is not None:
        print("\n".join(labelled_table(args.labelled, args.screens or list(SCREENS))))
        return
    memory = PeakMemory(torch.device("cpu"))
    if args.model:
        model = load_model(args.model).to(device).eval()
    else:  # random weights, each protein read as its centred window, as the naive path reads it
        model = build_model(trainer_config(parser, flags, device), device).eval()
        model.config.scoring_windows = "crop"
    everything = read_fasta(args.fasta)
    for n in args.proteins:
        lengths = [
            model.config.windowing("scoring").kept_length(len(everything[p]))
            for p in list(everything)[:n]
        ]
        print(
            f"{len(lengths)} proteins (first of {Path(args.fasta).name}), read lengths mean "
            f"{sum(lengths) / len(lengths):.0f}, max {max(lengths)}; "
            f"{len(lengths) * (len(lengths) - 1) // 2:,} unordered pairs"
        )
    if args.screens:
        print("\n".join(screen_tables(model, everything, args)))
    if args.naive_pairs:
        sequences = {p: everything[p] for p in list(everything)[: args.proteins[0]]}
        print("\n".join(naive_lines(model, sequences, args)))
    print(
        f"cross-attention heads {model.config.cross_attention_heads}, "
        f"{model.config.windowing('scoring').describe()}, tile {args.tile}; {memory.describe()}"
    )


if __name__ == "__main__":
    main()
