"""Leakage audit of a train/test split of protein pairs.

    ppi-dist audit --train train.tsv --test test.tsv [--fasta seqs.fasta] [--json]

Shared proteins and pairs, the C1/C2/C3 classes of the test pairs, class balance, and the
AUROC of a baseline that reads only node degrees (`ppi_dist.evaluation.audit`).
"""

from __future__ import annotations

import argparse
import json

from ppi_dist.cli.boundary import command
from ppi_dist.cli.flags import Parser
from ppi_dist.evaluation.audit import audit, format_report


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ppi-dist audit", description=__doc__.split("\n")[0])
    parser.add_argument("--train", required=True, help="training pair file")
    parser.add_argument("--test", required=True, help="test pair file")
    parser.add_argument("--fasta", help="FASTA to check the test proteins against")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def run(args: argparse.Namespace) -> int:
    report = audit(args.train, args.test, args.fasta)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


main = command(build_parser, run)
