"""The split on real data: the graph method beside a random draw of proteins.

    python -m benchmarks.split                       # yeast all_pairs and Bernett train
    python -m benchmarks.split --datasets yeast --fractions 0.1,0.1

For each pair file and each valid,test fraction: the pairs each block holds (of the
input), the pairs dropped, the highest identity an MMseqs2 search finds between a
held-out block and train, and the wall time, for `--method graph` and for the random split
at the same fractions and seed. The MMseqs2 clustering (all against all) is timed once per
file and reused across fractions; each row's time is the cut and the check after it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.core import SHARED, library_version, machine_line
from ppi_dist.data import clusters
from ppi_dist.data.pairs import PairSource, sequences_of
from ppi_dist.data.split import split_pairs

FILES = {
    "yeast": ("yeast-du2017/all_pairs.tsv", "yeast-du2017/sequences.fasta"),
    "bernett": ("bernett-gold/train.tsv", "bernett-gold/sequences.fasta"),
}


def _line(label: str, blocks: dict, dropped: int, n: int) -> str:
    fractions = "  ".join(f"{name} {blocks[name]['pairs'] / n:6.1%}" for name in blocks)
    return f"  {label:7} {fractions}  dropped {dropped / n:6.1%} ({dropped:,})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(FILES), choices=list(FILES))
    parser.add_argument("--fractions", nargs="+", default=["0.1,0.1", "0.2,0.2"])
    parser.add_argument("--identity", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resample_negatives", action="store_true", help="the split's --resample_negatives"
    )
    parser.add_argument("--out", default=None, help="JSON of every row")
    args = parser.parse_args(argv)
    print(machine_line(torch.device("cpu")))
    print(
        f"mmseqs {clusters.mmseqs_version()}, kahip {library_version('kahip')}, "
        f"pymetis {library_version('pymetis')}; threads {args.threads}"
    )
    rows = []
    for name in args.datasets:
        pair_path, fasta = (SHARED / "data" / part for part in FILES[name])
        pairs = list(PairSource(pair_path, fasta, labeled=True).pair_rows())
        sequences = sequences_of(pairs)
        started = time.perf_counter()
        links = clusters.similarity_links(sequences, args.identity, threads=args.threads)
        clustering = time.perf_counter() - started
        print(
            f"{name}: {len(pairs):,} pairs, {len(sequences):,} proteins; MMseqs2 "
            f"all-against-all {clustering:.0f} s, {len(links):,} links at {args.identity}"
        )
        for fractions in args.fractions:
            valid, test = (float(x) for x in fractions.split(","))
            started = time.perf_counter()
            split = split_pairs(
                pairs,
                sequences,
                valid,
                test,
                clusters=links,
                identity=args.identity,
                seed=args.seed,
                threads=args.threads,
                resample=args.resample_negatives,
            )
            seconds = time.perf_counter() - started
            report = split.report
            row = {"dataset": name, "fractions": [valid, test], "seconds": seconds}
            row |= {"clustering_seconds": clustering, "report": report.__dict__}
            rows.append(row)
            resampled = f", {report.resampled_negatives:,} negatives resampled" * bool(
                args.resample_negatives
            )
            print(f"{name} asked {valid:.0%}/{test:.0%}{resampled}:")
            print(_line("graph", report.blocks, report.dropped_pairs, report.pairs_in))
            random_split = report.random
            print(
                _line(
                    "random", random_split["blocks"], random_split["dropped_pairs"], report.pairs_in
                )
            )
            print(
                f"  highest identity held-out vs train: {report.max_identity_between_blocks:.3f}"
                f"; cut + check {seconds:.0f} s"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
