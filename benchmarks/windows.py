"""Long proteins: the centred crop against every window.

    python -m benchmarks.windows cost            # Bernett test: residues, tokens, cache size
    python -m benchmarks.windows quality --model RUN/model --pairs test.tsv --fasta seqs.fasta

`cost` is arithmetic on the lengths of `--pairs`' proteins; `quality` scores one trained
model's pairs both ways at its own window and threshold (AUROC, AUPR, MCC with 95%
bootstrap intervals), on all pairs and on those with a protein longer than the window.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.core import BERNETT
from ppi_dist.data.pairs import PairSource, sequences_of
from ppi_dist.evaluation.bootstrap import bootstrap_intervals
from ppi_dist.evaluation.threshold import evaluate_at
from ppi_dist.hub.loading import load_model
from ppi_dist.inference.cache import covering_cache
from ppi_dist.inference.scoring import score_pairs, scoring_windowing
from ppi_dist.models.windows import Windowing
from ppi_dist.training.machine import machine_line

HIDDEN_8M = 320


def cost(args: argparse.Namespace) -> None:
    """Residues a crop never shows, encoder tokens and cache size, crop against windows."""
    pairs = list(PairSource(args.pairs, args.fasta, labeled=False).pair_rows())
    lengths = np.array([len(s) for s in sequences_of(pairs).values()])
    print(
        f"{len(pairs):,} pairs of {args.pairs}, {len(lengths):,} proteins, "
        f"{lengths.sum():,} residues (longest {lengths.max():,})"
    )
    for window in args.max_residues:
        tokens = {}
        for mode in ("crop", "all"):
            windowing = Windowing(window, window // 4, mode)
            kept = sum(windowing.kept_length(n) for n in lengths)
            if mode == "crop":
                unseen = 1 - kept / lengths.sum()
            tokens[mode] = sum(
                windowing.encoded_residues(n) + 2 * len(windowing.windows(n)) for n in lengths
            )
            print(
                f"  {'windows' if mode == 'all' else mode:<8} encoder tokens "
                f"{tokens[mode]:>12,}  cache (8M, fp16) {kept * HIDDEN_8M * 2 / 2**20:>9,.0f} MiB"
            )
        longer = sum(max(len(p.sequence_a), len(p.sequence_b)) > window for p in pairs)
        print(
            f"window {window}: a crop leaves {100 * unseen:.1f}% of residues unseen; "
            f"{100 * longer / len(pairs):.1f}% of pairs hold a longer protein; windows / crop: "
            f"encoder tokens {tokens['all'] / tokens['crop']:.2f}x"
        )


def quality(args: argparse.Namespace) -> None:
    """One model's pairs scored through the centred crop and through every window."""
    model = load_model(args.model).eval()
    own = scoring_windowing(model)
    threshold = model.config.decision_threshold
    pairs = list(PairSource(args.pairs, args.fasta, labeled=True).pair_rows())
    long = np.array([max(len(p.sequence_a), len(p.sequence_b)) > own.max_residues for p in pairs])
    print(
        f"{args.model}: window {own.max_residues}, threshold {threshold:.4f}; {len(pairs):,} "
        f"pairs of {args.pairs}, {long.sum():,} with a protein over {own.max_residues}"
    )
    for mode in ("crop", "all"):
        windowing = Windowing(own.max_residues, own.overlap, mode)
        started = time.perf_counter()
        cache = None
        if mode == "crop" and args.crop_cache is not None:  # the run's own, when it covers
            cache = covering_cache(Path(args.crop_cache), model, sequences_of(pairs), windowing)
            print(f"  crop: {'reading' if cache else 'not covered by'} {args.crop_cache}")
        scored = score_pairs(model, pairs, windowing=windowing, cache=cache)
        print(f"  {mode}: {time.perf_counter() - started:.0f} s to encode and score")
        for subset, keep in (("all pairs", np.ones(len(pairs), bool)), ("long pairs", long)):
            scores, labels = scored.scores[keep], scored.labels[keep]
            metrics = evaluate_at(scores, labels, threshold, objective="mcc").summary()
            intervals = bootstrap_intervals(scores, labels, threshold, n_resamples=1000)
            figures = "  ".join(
                f"{k.upper()} {metrics[k]:.3f} [{intervals[k][0]:.3f}, {intervals[k][1]:.3f}]"
                for k in ("auroc", "aupr", "mcc")
            )
            print(f"  {mode:<5} {subset:<10} {figures}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["cost", "quality"])
    parser.add_argument("--pairs", default=str(BERNETT / "test.tsv"))
    parser.add_argument("--fasta", default=str(BERNETT / "sequences.fasta"))
    parser.add_argument("--max_residues", type=int, nargs="+", default=[1022, 256])
    parser.add_argument("--model", help="quality: a trained model folder")
    parser.add_argument("--crop_cache", help="quality: a cache of the crops (a frozen run's)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(machine_line(torch.device("cpu")))
    if args.what == "quality" and args.model is None:
        parser.error("quality needs --model")
    cost(args) if args.what == "cost" else quality(args)


if __name__ == "__main__":
    main()
