"""Protein-disjoint train/validation split of a pair file that ships no validation set.

    ppi-dist split --pairs train.tsv --fasta seqs.fasta --valid_fraction 0.1 --out_dir DIR

Writes DIR/train.tsv, DIR/valid.tsv and DIR/split_report.json with every count
(`ppi_dist.data.split`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ppi_dist.cli.boundary import command
from ppi_dist.cli.flags import Parser, open_fraction
from ppi_dist.data.split import split_file
from ppi_dist.files import writing_to


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ppi-dist split", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", required=True, help="labelled pair file(s) PairSource reads")
    parser.add_argument("--fasta", default=None, help="FASTA keyed by the identifiers")
    parser.add_argument("--valid_fraction", type=open_fraction, default=0.1, help="of the PROTEINS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clusters", default=None, help="representative<TAB>member file")
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
            args.seed,
            args.clusters,
            allow_contradictory_labels=args.allow_contradictory_labels,
        )
    print(report.describe())
    print(f"written: {Path(args.out_dir) / 'train.tsv'}, valid.tsv, split_report.json")
    return 0


main = command(build_parser, run)
