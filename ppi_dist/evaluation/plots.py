"""Evaluation plots: precision-recall, ROC, and the metrics against the decision threshold.

Every plot carries its baseline, because PPI scores mean little without one: the PR curve
the positive fraction (a random ranking's precision), the ROC curve the diagonal, and the
threshold plot the weighted scores of the trivial predictors "all interact" and
"none interact" (what the threshold search can fall back to on a useless model).

    paths = plot_evaluation(scores, labels, result, out_dir, title_prefix="valid, epoch 3")
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np

from ppi_dist.evaluation.calibration import reliability
from ppi_dist.evaluation.metrics import ranking_curves
from ppi_dist.evaluation.threshold import ThresholdResult, search_threshold

PLOT_NAMES = ("pr_curve.png", "roc_curve.png", "threshold_metrics.png")


def _title(prefix: str, what: str) -> str:
    return f"{prefix}: {what}" if prefix else what


def _finish(figure, axes, path: Path, labels: tuple[str, str], title: str) -> Path:
    """Axis labels (x, y), the unit square, the title, grid and legend; saved and closed."""
    axes.set(xlabel=labels[0], ylabel=labels[1], xlim=(0, 1), ylim=(0, 1.02), title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _baseline(axes, value: float, label: str, color: str = "grey", style: str = "--") -> None:
    """A horizontal reference line: what a trivial predictor reaches on this axis."""
    axes.axhline(value, color=color, linestyle=style, label=f"{label} {value:.3f}")


def plot_pr_curve(scores, labels, result: ThresholdResult, path: Path, title_prefix="") -> Path:
    curves = ranking_curves(scores, labels)
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    recall = np.concatenate([[0.0], curves["recall"]])
    precision = np.concatenate([[curves["precision"][0]], curves["precision"]])
    axes.step(recall, precision, where="post", color="C0", label=f"model (AUPR {result.aupr:.3f})")
    _baseline(axes, result.positive_fraction, "random ranking: precision")
    axes.plot(
        result.recall, result.precision, "o", color="C3", label=f"threshold {result.threshold:.3f}"
    )
    title = _title(title_prefix, f"Precision-recall (n={result.n:,})")
    return _finish(figure, axes, path, ("Recall (true positive rate)", "Precision"), title)


def plot_roc_curve(scores, labels, result: ThresholdResult, path: Path, title_prefix="") -> Path:
    curves = ranking_curves(scores, labels)
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    fpr = np.concatenate([[0.0], curves["fpr"]])
    tpr = np.concatenate([[0.0], curves["tpr"]])
    axes.plot(fpr, tpr, color="C0", label=f"model (AUROC {result.auroc:.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="random ranking (AUROC 0.5)")
    title = _title(title_prefix, f"ROC (n={result.n:,})")
    return _finish(
        figure, axes, path, ("False positive rate", "True positive rate (recall)"), title
    )


def plot_threshold_metrics(
    scores, labels, result: ThresholdResult, path: Path, title_prefix=""
) -> Path:
    """Weighted score, accuracy, F1, precision and recall against the threshold."""
    grid = result.grid
    if len(grid.get("threshold", [])) < 3:
        # `evaluate_at` keeps one threshold: draw the curves on the fixed grid instead.
        grid = search_threshold(scores, labels, weights=result.weights, grid="fixed").grid
    thresholds = np.asarray(grid["threshold"])
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    axes.plot(thresholds, grid["score"], color="black", linewidth=2, label="weighted score")
    styles = {"accuracy": "C0", "f1": "C1", "precision": "C2", "recall": "C4"}
    for name, color in styles.items():
        axes.plot(thresholds, grid[name], color=color, linewidth=1, label=name)
    _baseline(axes, result.all_positive_score, "'all interact' score", color="C5")
    _baseline(axes, result.all_negative_score, "'none interact' score", style=":")
    axes.axvline(
        result.threshold,
        color="C3",
        linewidth=1.5,
        label=f"chosen threshold {result.threshold:.3f} (score {result.score:.3f})",
    )
    title = _title(title_prefix, "Metrics vs threshold")
    return _finish(figure, axes, path, ("Decision threshold on P(interact)", "Metric value"), title)


def plot_reliability(raw, calibrated, labels, path: Path, title_prefix: str = "") -> Path:
    """The reliability diagram: positive fraction against mean probability per bin, for
    the raw score and the calibrated probability, beside the diagonal."""
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    for name, values, style in (("raw score", raw, "o-"), ("calibrated", calibrated, "s-")):
        if values is None:
            continue
        bins = reliability(values, labels)
        axes.plot(bins["mean_probability"], bins["positive_fraction"], style, label=name)
    labels_xy = ("mean predicted probability (bin)", "fraction of positive pairs")
    return _finish(figure, axes, Path(path), labels_xy, _title(title_prefix, "reliability"))


def plot_evaluation(
    scores,
    labels,
    result: ThresholdResult,
    out_dir: str | Path,
    title_prefix: str = "",
) -> list[Path]:
    """PR curve, ROC curve and metrics-vs-threshold PNGs in `out_dir`; returns their paths.

    `result` is the `search_threshold` / `evaluate_at` result for these scores and labels.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(np.int64)
    if labels.min() == labels.max():
        raise ValueError("curves need both classes among the labels")
    pr, roc, threshold = (out_dir / name for name in PLOT_NAMES)
    return [
        plot_pr_curve(scores, labels, result, pr, title_prefix),
        plot_roc_curve(scores, labels, result, roc, title_prefix),
        plot_threshold_metrics(scores, labels, result, threshold, title_prefix),
    ]
