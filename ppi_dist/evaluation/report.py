"""Metrics and plots from a predictions file with labels (`ppi-dist report`).

    scores, labels = read_scores("pred.tsv")
    result, plots = build_report(scores, labels, "report/", threshold=0.42)

Reads the output of `predict` (TSV/CSV or Parquet with `probability` and `label`
columns) and scores it at a threshold chosen elsewhere: the model's saved one (`--model`,
chosen on validation) or `--threshold`. That is the honest test figure. Searching the
threshold on the very file being reported flatters every thresholded metric, so it happens
only when asked (`--search_threshold`) and the output says so. Writes `metrics.json` and the
three plots of `plots.plot_evaluation`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ppi_dist.evaluation.plots import plot_evaluation
from ppi_dist.evaluation.threshold import ThresholdResult, evaluate_at, search_threshold
from ppi_dist.models.saving import CONFIG_NAME


def read_scores(
    path: str | Path, score_column: str = "probability", label_column: str = "label"
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) from a predictions file; rows with an empty label are refused."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        table = pq.read_table(path, columns=[score_column, label_column])
        scores = np.asarray(table[score_column].to_numpy(zero_copy_only=False), np.float64)
        labels = np.asarray(table[label_column].to_numpy(zero_copy_only=False), np.float64)
    else:
        delimiter = "," if path.suffix.lower() == ".csv" else "\t"
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            missing = {score_column, label_column} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f"{path}: no column {sorted(missing)[0]!r}; has {reader.fieldnames}"
                )
            score_list, label_list = [], []
            for line, row in enumerate(reader, start=2):
                if row[label_column] in ("", None):
                    raise ValueError(f"{path}:{line}: field {label_column!r}: empty label")
                score_list.append(float(row[score_column]))
                label_list.append(float(row[label_column]))
        scores, labels = np.asarray(score_list), np.asarray(label_list)
    if scores.size == 0:
        raise ValueError(f"{path}: no predictions")
    return scores, labels


def build_report(
    scores: np.ndarray,
    labels: np.ndarray,
    out_dir: str | Path,
    *,
    threshold: float | None = None,
    title_prefix: str = "",
    source: str | None = None,
) -> tuple[ThresholdResult, list[Path]]:
    """Metrics (at `threshold`, or searched) + plots into `out_dir`; writes metrics.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if threshold is None:
        result = search_threshold(scores, labels)
    else:
        result = evaluate_at(scores, labels, threshold)
    paths = plot_evaluation(scores, labels, result, out_dir, title_prefix)
    metrics = {
        "source": source,
        "threshold_chosen_on_this_data": threshold is None,
        **result.summary(),
        "plots": [p.name for p in paths],
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return result, paths


def read_model_config(folder: str | Path) -> str:
    """The JSON text of a model folder's SE-CAI config (no weights are loaded)."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no SE-CAI config; not a model folder")
    return path.read_text()
