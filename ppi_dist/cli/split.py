"""Similarity-disjoint train / valid (/ test) split of a pair file that ships none.

    ppi-dist split --pairs train.tsv --fasta seqs.fasta --valid_fraction 0.1 \\
        [--test_fraction 0.1] [--identity 0.4] [--method graph|random] --out_dir DIR

Writes DIR/train.tsv, DIR/valid.tsv (DIR/test.tsv) and DIR/split_report.json with every
count, beside a random split at the same fractions (`ppi_dist.data.split`). The graph
method needs MMseqs2 and KaHIP or METIS: `pip install 'ppi_dist[split]'`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ppi_dist.cli.boundary import command
from ppi_dist.cli.flags import Parser, at_least, fraction, open_fraction, probability
from ppi_dist.data.balance import SHARE_TOLERANCE
from ppi_dist.data.clusters import DEFAULT_COVERAGE
from ppi_dist.data.split import METHODS, split_file
from ppi_dist.files import writing_to


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ppi-dist split", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", required=True, help="labelled pair file(s) PairSource reads")
    parser.add_argument("--fasta", default=None, help="FASTA keyed by the identifiers")
    parser.add_argument(
        "--valid_fraction", type=open_fraction, default=0.1, help="of the PAIRS (random: proteins)"
    )
    parser.add_argument(
        "--test_fraction",
        type=fraction(zero=True, one=False),
        default=0.0,
        help="0: no test block",
    )
    parser.add_argument("--method", choices=METHODS, default="graph")
    parser.add_argument(
        "--identity",
        type=fraction(zero=False, one=True),
        default=0.4,
        help="MMseqs2 identity that joins proteins",
    )
    parser.add_argument(
        "--coverage", type=probability, default=DEFAULT_COVERAGE, help="of both sequences"
    )
    parser.add_argument(
        "--share_tolerance",
        type=probability,
        default=SHARE_TOLERANCE,
        help="a held-out block's positive share within this of the input's (1: ignore it)",
    )
    parser.add_argument(
        "--resample_negatives",
        action="store_true",
        help="partition the positives; draw crossing negatives anew inside blocks",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=at_least(1), default=1, help="MMseqs2 threads")
    parser.add_argument(
        "--clusters", default=None, help="representative<TAB>member file (no MMseqs2 clustering)"
    )
    parser.add_argument("--out_dir", required=True)
    parser.add_argument(
        "--allow_contradictory_labels",
        action="store_true",
        help="keep pairs labelled both 1 and 0 (refused by default, naming both lines)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    with writing_to(args.out_dir):
        report = split_file(
            args.pairs,
            args.fasta,
            args.out_dir,
            args.valid_fraction,
            args.test_fraction,
            clusters=args.clusters,
            method=args.method,
            seed=args.seed,
            identity=args.identity,
            coverage=args.coverage,
            resample=args.resample_negatives,
            share_tolerance=args.share_tolerance,
            threads=args.threads,
            allow_contradictory_labels=args.allow_contradictory_labels,
        )
    print(report.describe())
    print(f"written: {Path(args.out_dir)}/{{train,valid,test}}.tsv, split_report.json")
    return 0


main = command(build_parser, run)
