"""Evaluate a saved model on a labelled pair file, scored exactly as training scored it.

    ppi-dist evaluate --model outputs/run/model --pairs test.tsv --fasta seqs.fasta \
        [--train train.tsv] [--valid valid.tsv] [--out eval/] [--cache_dir states/]

Prints the metrics at the model's saved threshold with 95% bootstrap intervals, the trivial
predictors, C1/C2/C3 classes (`--train`) and every threshold objective chosen on `--valid`;
writes predictions.tsv, metrics.json and the plots to `--out` (default: beside the model
folder, `evaluation_<pairs name>`). See `ppi_dist.evaluation.evaluate`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ppi_dist.cli.boundary import command
from ppi_dist.cli.encoding import add_encoding_flags, windowing_from_flags
from ppi_dist.cli.flags import Parser, at_least
from ppi_dist.evaluation.evaluate import EvaluateOptions, describe, evaluate, write_outputs
from ppi_dist.files import check_output_folder, writing_to
from ppi_dist.hub.loading import load_model


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ppi-dist evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="saved SE-CAI folder or Hub repo id")
    parser.add_argument("--pairs", required=True, help="labelled pair file to evaluate")
    parser.add_argument("--fasta", help="sequences (unless the pair file has them inline)")
    parser.add_argument("--train", help="the training pair file: metrics per C1/C2/C3 class")
    parser.add_argument("--valid", help="a validation pair file: every threshold objective")
    parser.add_argument("--out", help="output folder (default: beside the model folder)")
    parser.add_argument("--bootstrap", type=at_least(1), default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--cache_dir",
        help="keep the per-residue states here; a cache there that covers the proteins "
        "from this encoder (say a frozen run's embedding_cache) is read, not re-encoded",
    )
    parser.add_argument(
        "--allow_encoder_mismatch", action="store_true", help="load though the encoder changed"
    )
    parser.add_argument(
        "--allow_contradictory_labels",
        action="store_true",
        help="score pairs labelled both 1 and 0 as given (refused by default, naming both lines)",
    )
    add_encoding_flags(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    default = Path(args.model).parent / f"evaluation_{Path(args.pairs).name.split('.')[0]}"
    out = Path(args.out) if args.out else default
    check_output_folder(out, "--out")  # before the model loads and proteins are encoded
    if args.cache_dir is not None:  # a valid cache is read: it need not be writable
        check_output_folder(args.cache_dir, "--cache_dir", writable=False)
    model = load_model(args.model, allow_encoder_mismatch=args.allow_encoder_mismatch)
    model = model.to("cuda" if torch.cuda.is_available() else "cpu")
    options = EvaluateOptions(
        train=args.train,
        valid=args.valid,
        n_resamples=args.bootstrap,
        windowing=windowing_from_flags(model, args),
        cache_dir=args.cache_dir,
        allow_contradictory_labels=args.allow_contradictory_labels,
    )
    report = evaluate(model, args.pairs, args.fasta, options)
    print(describe(report))
    with writing_to(out):
        paths = write_outputs(report, out)
    for path in paths:
        print(path)
    return 0


main = command(build_parser, run)
