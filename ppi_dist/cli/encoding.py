"""The encoding flags `predict`, `evaluate` and `explain` share: how long proteins are read.

Each defaults to the model folder's own setting (`SECAIConfig.max_residues`,
`window_overlap`, `scoring_windows`): the one its threshold was chosen at.
"""

from __future__ import annotations

import argparse

from ppi_dist.cli.flags import at_least
from ppi_dist.errors import UserError
from ppi_dist.inference.scoring import scoring_windowing
from ppi_dist.models.windows import WINDOW_MODES, Windowing


def add_encoding_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("encoding (default: the model folder's own settings)")
    group.add_argument("--max_residues", type=at_least(1), help="residues per encoder window")
    group.add_argument(
        "--window_overlap",
        type=at_least(0),
        help="residues neighbouring windows share (with --max_residues alone: a quarter of it, "
        "unless the model was trained with an overlap of its own)",
    )
    group.add_argument(
        "--windows", choices=WINDOW_MODES, help="all windows of a long protein, or its centred crop"
    )


def windowing_from_flags(model, args: argparse.Namespace) -> Windowing:
    """The model's scoring windowing with the flags given; a bad value is a UserError.
    `--max_residues` alone reads windows overlapping a quarter of it, unless the model's
    overlap was set at training (`inference.scoring.scoring_windowing`)."""
    try:
        return scoring_windowing(model, args.max_residues, args.window_overlap, args.windows)
    except ValueError as error:
        trained = model.config.window_overlap
        if args.window_overlap is None and trained is not None:
            raise UserError(
                f"--max_residues {args.max_residues}: the model was trained with "
                f"window_overlap {trained}, which must be below it; pass --window_overlap"
            ) from None
        raise UserError(f"--window_overlap: {error}") from None
