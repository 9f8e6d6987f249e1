"""Calibration on real runs: ECE and Brier of the test scores, raw and calibrated, with 95%
bootstrap intervals, from a finished run's own prediction files.

For each run folder: the calibration is fitted on `predictions_validation.tsv` exactly as the
trainer fits it at the end of a run (`evaluation.calibration.fit_shipped_calibration`: Platt,
validation classes weighted to 1:1), and beside it the unweighted fit (the validation set's
own balance, what the trainer shipped before); both are applied to `predictions_test.tsv`
(the raw scores; the threshold and the ranking do not change). A run whose folder holds a
calibration.json of its own is read the same way: the refit is what the current code ships.

    python -m benchmarks.calibration outputs/real_data/yeast-c3_frozen_seed0 ...
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from ppi_dist.evaluation.calibration import (
    calibration_intervals,
    fit_platt,
    fit_shipped_calibration,
)


def scores_and_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The raw scores and labels of a predictions file (`raw_score` when it has one)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    column = "raw_score" if "raw_score" in rows[0] else "probability"
    return (
        np.array([float(row[column]) for row in rows]),
        np.array([float(row["label"]) for row in rows]),
    )


def interval(measure: dict) -> str:
    return f"{measure['value']:.4f} [{measure['low']:.4f}, {measure['high']:.4f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="finished run folders (output_dir)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    print(
        "| run | validation pairs (positive) | test pairs (positive) | calibration | "
        "ECE raw | ECE calibrated | Brier raw | Brier calibrated |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in map(Path, args.runs):
        valid_scores, valid_labels = scores_and_labels(run / "predictions_validation.tsv")
        test_scores, test_labels = scores_and_labels(run / "predictions_test.tsv")
        fits = {
            "Platt, classes 1:1 (shipped)": fit_shipped_calibration(valid_scores, valid_labels),
            "Platt, validation's balance": fit_platt(valid_scores, valid_labels, prior=None),
        }
        for name, calibration in fits.items():
            if calibration is None:
                print(f"| {run.name} | | | {name}: none (slope not positive) | | | | |")
                continue
            measured = calibration_intervals(
                test_scores, calibration.apply(test_scores), test_labels, args.bootstrap
            )
            print(
                f"| {run.name} | {len(valid_labels):,} ({valid_labels.mean():.1%}) | "
                f"{len(test_labels):,} ({test_labels.mean():.1%}) | {name}, slope "
                f"{calibration.slope:.3f}, offset {calibration.offset:.3f} | "
                f"{interval(measured['ece_raw'])} | {interval(measured['ece_calibrated'])} | "
                f"{interval(measured['brier_raw'])} | {interval(measured['brier_calibrated'])} |"
            )


if __name__ == "__main__":
    main()
