"""ECE and Brier of finished runs' test scores, raw and calibrated, with 95% bootstrap
intervals: the trainer's shipped fit (Platt, classes 1:1) on `predictions_validation.tsv`
beside isotonic regression with the same weights, each applied to `predictions_test.tsv`.

    python -m benchmarks.calibration outputs/real_data/yeast-c3_frozen_seed0 ...
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from ppi_dist.evaluation.calibration import calibration_intervals, fit_shipped_calibration
from ppi_dist.tables import markdown_table


def scores_and_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    column = "raw_score" if "raw_score" in rows[0] else "probability"
    return (
        np.array([float(row[column]) for row in rows]),
        np.array([float(row["label"]) for row in rows]),
    )


def isotonic(scores: np.ndarray, labels: np.ndarray, new_scores: np.ndarray) -> np.ndarray:
    from sklearn.isotonic import IsotonicRegression

    positive = labels.mean()
    weight = np.where(labels > 0.5, 0.5 / positive, 0.5 / (1 - positive))
    model = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
    return model.fit(scores, labels, sample_weight=weight).predict(new_scores)


def interval(measure: dict) -> str:
    return f"{measure['value']:.4f} [{measure['low']:.4f}, {measure['high']:.4f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="finished run folders (output_dir)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    rows = []
    for run in map(Path, args.runs):
        valid_scores, valid_labels = scores_and_labels(run / "predictions_validation.tsv")
        test_scores, test_labels = scores_and_labels(run / "predictions_test.tsv")
        applied = {}
        fit = fit_shipped_calibration(valid_scores, valid_labels)
        if fit is not None:
            shipped = (
                f"Platt, classes 1:1 (shipped), slope {fit.slope:.3f}, offset {fit.offset:.3f}"
            )
            applied[shipped] = fit.apply(test_scores)
        applied["isotonic, classes 1:1"] = isotonic(valid_scores, valid_labels, test_scores)
        for name, calibrated in applied.items():
            measured = calibration_intervals(test_scores, calibrated, test_labels, args.bootstrap)
            sizes = [f"{len(y):,} ({y.mean():.1%})" for y in (valid_labels, test_labels)]
            measures = ("ece_raw", "ece_calibrated", "brier_raw", "brier_calibrated")
            rows.append((run.name, *sizes, name, *(interval(measured[m]) for m in measures)))
    header = ("run", "validation pairs (positive)", "test pairs (positive)", "calibration")
    header += ("ECE raw", "ECE calibrated", "Brier raw", "Brier calibrated")
    print("\n".join(markdown_table(header, rows)))


if __name__ == "__main__":
    main()
