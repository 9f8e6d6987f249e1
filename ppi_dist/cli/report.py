"""Metrics and plots of a labelled predictions file, at a threshold chosen elsewhere.

    ppi-dist report --predictions pred.tsv --out report/ --model outputs/run/model
    ppi-dist report --predictions pred.tsv --out report/ --threshold 0.42

The threshold is the model's saved one (`--model`, chosen on validation) or `--threshold`:
that is the honest test figure. `--search_threshold` searches it on the very file being
reported, which flatters every thresholded metric, and the output says so. See
`ppi_dist.evaluation.report`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ppi_dist.cli.boundary import command
from ppi_dist.cli.flags import Parser, probability
from ppi_dist.evaluation.report import (
    build_report,
    read_scores,
    saved_objective,
    saved_threshold,
)
from ppi_dist.files import writing_to


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ppi-dist report", description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", required=True, help="predictions .tsv/.csv/.parquet")
    parser.add_argument("--out", required=True, help="folder for metrics.json and the PNGs")
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--threshold", type=probability, help="evaluate at this threshold")
    chosen.add_argument("--model", help="evaluate at this model folder's saved threshold")
    chosen.add_argument(
        "--search_threshold", action="store_true", help="search it on this file (flatters)"
    )
    parser.add_argument(
        "--score_column",
        default=None,
        help="default: raw_score where the file has one (the scale thresholds are chosen "
        "on), else probability",
    )
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--title", default=None, help="title prefix (default: the file name)")
    return parser


def run(args: argparse.Namespace) -> int:
    objective = "weighted"
    if args.model is not None:
        args.threshold = saved_threshold(args.model)
        objective = saved_objective(args.model)  # printed with the threshold
    scores, labels = read_scores(args.predictions, args.score_column, args.label_column)
    title = args.title if args.title is not None else Path(args.predictions).name
    with writing_to(args.out):
        result, paths = build_report(
            scores,
            labels,
            args.out,
            threshold=args.threshold,
            title_prefix=title,
            source=str(args.predictions),
            objective=objective,
        )
    print(result.describe())
    if args.threshold is None:
        print("note: threshold searched on this file; quote test metrics at the validation one")
    for path in paths:
        print(path)
    return 0


main = command(build_parser, run)
