"""Long proteins, what every window costs against the centred crop: the residues a crop
never shows, the pairs holding a longer protein, encoder tokens and the cache's size, by
arithmetic on the lengths of `--pairs`' proteins. What windows gain is `ppi-dist evaluate
--windows crop` against `--windows all` on one model (BENCHMARKS.md, Long proteins).

    python -m benchmarks.windows            # Bernett test, windows of 1,022 and 256
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.core import BERNETT
from ppi_dist.data.pairs import PairSource, sequences_of
from ppi_dist.models.windows import Windowing
from ppi_dist.training.machine import machine_line

HIDDEN_8M = 320


def cost(pairs_path: str, fasta: str, windows: list[int]) -> None:
    """Residues a crop never shows, encoder tokens and cache size, crop against windows."""
    pairs = list(PairSource(pairs_path, fasta, labeled=False).pair_rows())
    lengths = np.array([len(s) for s in sequences_of(pairs).values()])
    print(
        f"{len(pairs):,} pairs of {pairs_path}, {len(lengths):,} proteins, "
        f"{lengths.sum():,} residues (longest {lengths.max():,})"
    )
    for window in windows:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default=str(BERNETT / "test.tsv"))
    parser.add_argument("--fasta", default=str(BERNETT / "sequences.fasta"))
    parser.add_argument("--max_residues", type=int, nargs="+", default=[1022, 256])
    args = parser.parse_args(argv)
    print(machine_line(torch.device("cpu")))
    cost(args.pairs, args.fasta, args.max_residues)


if __name__ == "__main__":
    main()
