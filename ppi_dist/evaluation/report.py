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

from ppi_dist.checks import check_saved_threshold
from ppi_dist.errors import ConfigError, DataError
from ppi_dist.evaluation.plots import plot_evaluation
from ppi_dist.evaluation.threshold import (
    OBJECTIVES,
    ThresholdResult,
    evaluate_at,
    search_threshold,
)
from ppi_dist.files import read_json
from ppi_dist.models.saving import CONFIG_NAME


def read_scores(
    path: str | Path, score_column: str | None = None, label_column: str = "label"
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) from a predictions file. `score_column` None: `raw_score` where the
    file has one (a calibrated model's; its decision threshold is on the raw score), else
    `probability`. A missing column, an empty or non-0/1 label, a score that is not a
    probability (NaN included) is a `DataError` naming the file, line (parquet: row) and
    column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such predictions file")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            names = pq.read_schema(path).names
        except (OSError, ValueError) as error:
            raise DataError(path, f"not a readable parquet file ({error})") from None
        score_column = score_column or _score_column(names)
        _check_columns(path, names, score_column, label_column)
        table = pq.read_table(path, columns=[score_column, label_column])
        rows = zip(table[score_column].to_pylist(), table[label_column].to_pylist(), strict=True)
        located = [({"row": index}, score, label) for index, (score, label) in enumerate(rows)]
    else:
        delimiter = "," if path.suffix.lower() == ".csv" else "\t"
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            score_column = score_column or _score_column(reader.fieldnames or [])
            _check_columns(path, reader.fieldnames or [], score_column, label_column)
            located = [
                ({"line": line}, row[score_column], row[label_column])
                for line, row in enumerate(reader, start=2)
            ]
    scores, labels = [], []
    for where, score, label in located:
        scores.append(_value(path, where, score_column, score, _probability))
        labels.append(_value(path, where, label_column, label, _label))
    if not scores:
        raise DataError(path, "no predictions")
    return np.asarray(scores, np.float64), np.asarray(labels, np.float64)


def _score_column(names: list[str]) -> str:
    return "raw_score" if "raw_score" in names else "probability"


def _check_columns(path: Path, names: list[str], score_column: str, label_column: str) -> None:
    for column, flag in ((score_column, "--score_column"), (label_column, "--label_column")):
        if column not in names:
            raise DataError(path, f"no column {column!r} (has {names}); name it with {flag}")


def _probability(value: object) -> float:
    number = float(value)  # ValueError for text; NaN and values outside fail below
    if not 0 <= number <= 1:
        raise ValueError(f"expected a probability in [0, 1], got {value!r}")
    return number


def _label(value: object) -> float:
    if value in ("", None):
        raise ValueError("empty label")
    number = float(value)
    if number not in (0.0, 1.0):
        raise ValueError(f"expected 0 or 1, got {value!r}")
    return number


def _value(path: Path, where: dict, column: str, value: object, parse) -> float:
    try:
        return parse(value)
    except (TypeError, ValueError) as error:
        problem = str(error) if "expected" in str(error) or "empty" in str(error) else None
        problem = problem or f"expected a number, got {value!r}"
        raise DataError(path, problem, field=column, **where) from None


def build_report(
    scores: np.ndarray,
    labels: np.ndarray,
    out_dir: str | Path,
    *,
    threshold: float | None = None,
    title_prefix: str = "",
    source: str | None = None,
    objective: str = "weighted",
) -> tuple[ThresholdResult, list[Path]]:
    """Metrics (at `threshold`, or searched) + plots into `out_dir`; writes metrics.json.
    `objective`: what the threshold maximised (a model folder's `saved_objective`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if threshold is None:
        result = search_threshold(scores, labels, objective=objective)
    else:
        result = evaluate_at(scores, labels, threshold, objective=objective)
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


def saved_threshold(folder: str | Path) -> float:
    """A model folder's saved decision threshold, checked as `predict` checks it
    (`checks.check_saved_threshold`): missing, a string, NaN or outside [0, 1] is refused."""
    path = Path(folder) / CONFIG_NAME
    read_model_config(folder)
    return check_saved_threshold(str(path), read_json(path).get("decision_threshold"))


def saved_objective(folder: str | Path) -> str:
    """What a model folder's saved threshold maximised on validation (`threshold_objective`;
    "weighted", the one objective there was, when a folder does not record it); another
    value is a `ConfigError` naming the file."""
    path = Path(folder) / CONFIG_NAME
    saved = read_json(path).get("threshold_objective")
    if saved is None:
        return "weighted"
    if saved not in OBJECTIVES:
        raise ConfigError(f"{path}: threshold_objective must be one of {OBJECTIVES}, got {saved!r}")
    return saved
