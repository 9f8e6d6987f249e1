"""Write the embedded synthetic PPI task (planted complementary motifs) to a folder.

    ppi-dist synthetic DIR [--seed 0] [--composition_free] [--composition_baseline]

See `ppi_dist.data.synthetic` for the two designs and what each can show.
"""

from __future__ import annotations

import argparse

from ppi_dist.cli.boundary import command
from ppi_dist.cli.flags import Parser, at_least
from ppi_dist.data.synthetic import SyntheticTask, composition_baseline, write_synthetic_task


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ppi-dist synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train_pairs", type=at_least(1), default=3000)
    parser.add_argument("--eval_pairs", type=at_least(1), default=600)
    parser.add_argument(
        "--composition_free",
        action="store_true",
        help="the design where composition carries no label signal",
    )
    parser.add_argument(
        "--composition_baseline",
        action="store_true",
        help="also fit and print the composition-only baseline",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    task = SyntheticTask(
        seed=args.seed,
        train_pairs=args.train_pairs,
        eval_pairs=args.eval_pairs,
        composition_leak=not args.composition_free,
    )
    paths = write_synthetic_task(args.out_dir, task)
    for name, path in paths.items():
        print(f"{name}: {path}")
    if args.composition_baseline:
        for name, value in composition_baseline(paths, seed=args.seed).items():
            print(f"composition-only baseline {name}: {value:.3f}")
    return 0


main = command(build_parser, run)
