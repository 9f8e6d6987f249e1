"""Metrics and plots from a predictions file with labels.

    python -m ppi_dist.report --predictions pred.tsv --out report/ --model outputs/run/model
    python -m ppi_dist.report --predictions pred.tsv --out report/ --threshold 0.42

Reads the output of `ppi_dist.predict` (TSV/CSV or Parquet with `probability` and `label`
columns) and scores it at a threshold chosen elsewhere: the model's saved one (`--model`,
chosen on validation) or `--threshold`. That is the honest test figure. Searching the
threshold on the very file being reported flatters every thresholded metric, so it happens
only when asked (`--search_threshold`) and the output says so. Writes `metrics.json` and the
three plots of `plots.plot_evaluation`.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from ppi_dist.cli import run_tool
from ppi_dist.errors import UserError
from ppi_dist.metrics import ThresholdResult, evaluate_at, search_threshold
from ppi_dist.plots import plot_evaluation


def read_scores(
    path: str | Path, score_column: str = "probability", label_column: str = "label"
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) from a predictions file; rows with an empty label are refused."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

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
    from ppi_dist.model import CONFIG_NAME

    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no SE-CAI config; not a model folder")
    return path.read_text()


def main(argv: list[str] | None = None) -> int:
    """The command line; user errors print one line and exit 2 (`--debug`: traceback)."""
    return run_tool(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppi_dist.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--predictions", required=True, help="predictions .tsv/.csv/.parquet")
    parser.add_argument("--out", required=True, help="folder for metrics.json and the PNGs")
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--threshold", type=float, help="evaluate at this threshold")
    chosen.add_argument("--model", help="evaluate at this model folder's saved threshold")
    chosen.add_argument(
        "--search_threshold",
        action="store_true",
        help="search it on this very file (flatters the metrics)",
    )
    parser.add_argument("--score_column", default="probability")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--title", default=None, help="title prefix (default: the file name)")
    args = parser.parse_args(argv)
    if args.model is not None:
        config = json.loads(read_model_config(args.model))
        args.threshold = config.get("decision_threshold")
        if args.threshold is None:
            raise UserError(f"{args.model}: the model has no saved decision_threshold")
    scores, labels = read_scores(args.predictions, args.score_column, args.label_column)
    title = args.title if args.title is not None else Path(args.predictions).name
    result, paths = build_report(
        scores,
        labels,
        args.out,
        threshold=args.threshold,
        title_prefix=title,
        source=str(args.predictions),
    )
    print(result.describe())
    if args.threshold is None:
        print("note: threshold searched on this file; quote test metrics at the validation one")
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
