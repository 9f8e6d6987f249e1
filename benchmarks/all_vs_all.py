"""All-vs-all prediction of real proteins through `predict`: every pair through
cross-attention (each protein encoded once), and the two-stage screen (`predict --screen`:
the first pass over every pair, cross-attention on the kept share). A labelled set's
two-stage ranking is `ppi-dist evaluate`'s (and the trainer's metrics.json).

    python -m benchmarks.all_vs_all --proteins 20 40        # random weights, every pair
    python -m benchmarks.all_vs_all --model RUN/model --fasta FASTA --proteins 200 400 800 \\
        --full_up_to 400 --screens 0.01 0.05 0.1 0.2

Without --model, other flags are the trainer's (random weights: speed does not depend on
them). Recall: the share of the full model's top 1% (5%) pairs that the screen keeps.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.core import DEFAULT_FASTA, build_model, trainer_config
from ppi_dist.data.fasta import read_fasta, write_fasta
from ppi_dist.evaluation.screening import recalls
from ppi_dist.hub.loading import load_model
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.plans import AllPairsPlan
from ppi_dist.inference.predict import PredictFiles, PredictOptions, PredictRun, predict
from ppi_dist.inference.screen import FirstPassScreen
from ppi_dist.tables import markdown_table
from ppi_dist.training.flops import PEAK_TFLOPS, EncoderShape, layers_forward
from ppi_dist.training.machine import PeakMemory, default_device, machine_line

PROTEOMES = {"yeast": 6_000, "human": 20_000}
H200_MFU = 0.35  # the FLOP model's assumption (ppi_dist/training/flops.py), not a measurement


def _read_scores(path: Path) -> dict[tuple[str, str], tuple[float, bool]]:
    """(a, b) -> (probability or NaN, scored by cross-attention)."""
    with open(path) as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return {
            (r["protein_a"], r["protein_b"]): (
                float(r["probability"] or "nan"),
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
        lengths = [windowing.kept_length(len(s)) for s in sequences.values()]
        self.length = float(np.mean(lengths))
        print(
            f"{len(sequences)} proteins, read lengths mean {self.length:.0f}, max {max(lengths)}; "
            f"{self.pairs:,} unordered pairs, encoded in {self.encode_s:.0f} s",
            flush=True,
        )

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
                    [screened[pair][1] for pair in (scores if full is not None else screened)]
                )
                recall = "-" if full is None else ", ".join(f"{r:.3f}" for r in recalls(full, kept))
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--fasta", default=str(DEFAULT_FASTA))
    parser.add_argument("--proteins", type=int, nargs="+", default=[200])
    parser.add_argument("--model", help="a trained model folder (default: random weights)")
    parser.add_argument("--screens", type=float, nargs="*", default=[])
    parser.add_argument("--full_up_to", type=int, default=10**9, help="full runs up to N")
    parser.add_argument("--tile", type=int, default=64)
    args, flags = parser.parse_known_args(argv)
    device = torch.device(default_device())
    print(machine_line(device))
    memory = PeakMemory(torch.device("cpu"))
    if args.model:
        model = load_model(args.model).to(device).eval()
    else:
        model = build_model(trainer_config(parser, flags, device), device).eval()
    everything = read_fasta(args.fasta)  # its first --proteins N, in file order
    print("\n".join(screen_tables(model, everything, args)))
    print(
        f"cross-attention heads {model.config.cross_attention_heads}, "
        f"{model.config.windowing('scoring').describe()}, tile {args.tile}; {memory.describe()}"
    )


if __name__ == "__main__":
    main()
