"""Metrics and the decision-threshold search.

The weighted score w_acc*Acc + w_p*P + w_r*R + w_f1*F1 is what the threshold search
maximises, and it can be gamed: "everything interacts" scores 0.667 with equal weights on
balanced data. So every result carries the trivial predictors' scores beside it, a flag when
the chosen threshold predicts a single class, and the threshold-free AUROC, AUPR and MCC.

One implementation serves the trainer, the report and the `evaluate` module in
`ppi_dist/ppi_metric/`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_WEIGHTS = {"accuracy": 0.25, "precision": 0.25, "recall": 0.25, "f1": 0.25}
FIXED_GRID = np.round(np.arange(1, 100) / 100, 2)  # 0.01 .. 0.99


def confusion_counts(
    scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(TP, FP, TN, FN) per threshold, predicting positive where score >= threshold.

    Sort once, then one binary search per threshold: O((N + T) log N), no N x T matrix.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    # positives_below[k] = positives among the k lowest scores.
    positives_below = np.concatenate([[0], np.cumsum(labels[order])])
    n, n_pos = len(scores), int(positives_below[-1])
    below = np.searchsorted(sorted_scores, thresholds, side="left")
    tp = n_pos - positives_below[below]
    fp = (n - below) - tp
    fn = n_pos - tp
    tn = (n - n_pos) - fp
    return tp, fp, tn, fn


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (sklearn's zero_division=0)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def metrics_from_counts(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """Accuracy, precision, recall, F1 and MCC from confusion counts (arrays or scalars)."""
    tp, fp, tn, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, tn, fn))
    precision = _safe_divide(tp, tp + fp)
    recall = _safe_divide(tp, tp + fn)
    mcc_denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "accuracy": _safe_divide(tp + tn, tp + fp + tn + fn),
        "precision": precision,
        "recall": recall,
        "f1": _safe_divide(2 * tp, 2 * tp + fp + fn),
        "mcc": _safe_divide(tp * tn - fp * fn, mcc_denominator),
    }


def weighted_score(metrics: dict, weights: dict[str, float]) -> np.ndarray:
    """sum_k w_k * metric_k over accuracy, precision, recall and F1."""
    unknown = set(weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown score weights {sorted(unknown)}; use {sorted(DEFAULT_WEIGHTS)}")
    return sum(w * np.asarray(metrics[name]) for name, w in weights.items())


@dataclass
class ThresholdResult:
    """The chosen threshold, its metrics, and what trivial predictors score on the same set."""

    threshold: float
    score: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    mcc: float
    auroc: float
    aupr: float
    n: int
    positive_fraction: float
    all_positive_score: float
    all_negative_score: float
    single_class: bool  # the chosen threshold predicts only one class
    beats_trivial: bool  # score above both trivial predictors' scores
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    # The curve behind the choice, for plots: one entry per candidate threshold.
    grid: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, float]:
        """Scalars only (for logging)."""
        out = asdict(self)
        out.pop("grid")
        out.pop("weights")
        out["single_class"] = float(out["single_class"])
        out["beats_trivial"] = float(out["beats_trivial"])
        return out

    def describe(self) -> str:
        lines = [
            f"threshold {self.threshold:.4f}: score {self.score:.4f} | accuracy "
            f"{self.accuracy:.4f} precision {self.precision:.4f} recall {self.recall:.4f} "
            f"F1 {self.f1:.4f} MCC {self.mcc:.4f} | AUROC {self.auroc:.4f} AUPR {self.aupr:.4f}",
            f"trivial predictors on the same {self.n:,} pairs ({self.positive_fraction:.1%} "
            f"positive): all positive {self.all_positive_score:.4f}, all negative "
            f"{self.all_negative_score:.4f}",
        ]
        if self.single_class:
            lines.append(
                "WARNING: the chosen threshold predicts a single class; the score is that of a "
                "trivial predictor, not evidence of a working model"
            )
        elif not self.beats_trivial:
            lines.append(
                "WARNING: the weighted score does not beat the trivial predictors; judge the "
                "model by AUROC, AUPR and MCC"
            )
        return "\n".join(lines)


def ranking_curves(scores: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """ROC and precision-recall points at every distinct score, highest first.

    The same curves as sklearn's `roc_curve` / `precision_recall_curve` (tests check), from
    one sort; the report plots them and `search_threshold` integrates them.
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_tie = np.flatnonzero(np.diff(sorted_scores)) if scores.size > 1 else np.array([], int)
    last_of_tie = np.append(last_of_tie, scores.size - 1)
    tps = np.cumsum(sorted_labels)[last_of_tie].astype(np.float64)
    fps = (last_of_tie + 1) - tps
    n_pos, n_neg = tps[-1], fps[-1]
    return {
        "threshold": sorted_scores[last_of_tie],
        "tpr": _safe_divide(tps, n_pos),
        "fpr": _safe_divide(fps, n_neg),
        "precision": tps / (tps + fps),
        "recall": _safe_divide(tps, n_pos),
    }


def auroc_aupr(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """AUROC (trapezoids) and AUPR as average precision; NaN when only one class is present."""
    if labels.min() == labels.max():
        return float("nan"), float("nan")
    curves = ranking_curves(scores, labels)
    fpr = np.concatenate([[0.0], curves["fpr"]])
    tpr = np.concatenate([[0.0], curves["tpr"]])
    auroc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    recall_steps = np.diff(np.concatenate([[0.0], curves["recall"]]))
    aupr = float(np.sum(recall_steps * curves["precision"]))
    return auroc, aupr


def evaluate_at(
    scores, labels, threshold: float, weights: dict[str, float] | None = None
) -> ThresholdResult:
    """All metrics at a given threshold (e.g. on test, at the one chosen on validation)."""
    return search_threshold(scores, labels, weights=weights, candidates=[threshold])


def search_threshold(
    scores,
    labels,
    weights: dict[str, float] | None = None,
    grid: str = "fixed",
    candidates=None,
) -> ThresholdResult:
    """Threshold that maximises the weighted score of Acc, P, R and F1.

    `grid`: "fixed" (0.01 .. 0.99), "distinct" (every distinct score) or "both". Explicit
    `candidates` override it. Ties go to the lowest threshold, so results are reproducible.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape or scores.size == 0:
        raise ValueError(
            f"need equally many scores and labels, got {scores.size} and {labels.size}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    labels = labels.astype(np.int64)
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)

    if candidates is not None:
        thresholds = np.asarray(candidates, dtype=np.float64)
    elif grid == "fixed":
        thresholds = FIXED_GRID
    elif grid == "distinct":
        thresholds = np.unique(scores)
    elif grid == "both":
        thresholds = np.union1d(FIXED_GRID, np.unique(scores))
    else:
        raise ValueError(f"grid must be 'fixed', 'distinct' or 'both', got {grid!r}")

    tp, fp, tn, fn = confusion_counts(scores, labels, thresholds)
    curves = metrics_from_counts(tp, fp, tn, fn)
    curve_scores = weighted_score(curves, weights)
    best = int(np.argmax(curve_scores))  # first maximum = lowest threshold among ties

    n, n_pos = labels.size, int(labels.sum())
    trivial = metrics_from_counts(
        tp=np.array([n_pos, 0]), fp=np.array([n - n_pos, 0]),
        tn=np.array([0, n - n_pos]), fn=np.array([0, n_pos]),
    )  # fmt: skip
    all_positive, all_negative = weighted_score(trivial, weights)
    auroc, aupr = auroc_aupr(scores, labels)
    predicted_positive = tp[best] + fp[best]
    return ThresholdResult(
        threshold=float(thresholds[best]),
        score=float(curve_scores[best]),
        **{name: float(values[best]) for name, values in curves.items()},
        auroc=auroc,
        aupr=aupr,
        n=n,
        positive_fraction=n_pos / n,
        all_positive_score=float(all_positive),
        all_negative_score=float(all_negative),
        single_class=bool(predicted_positive in (0, n)),
        beats_trivial=bool(curve_scores[best] > max(all_positive, all_negative)),
        weights=weights,
        grid={
            "threshold": thresholds.tolist(),
            "score": curve_scores.tolist(),
            **{name: values.tolist() for name, values in curves.items()},
        },
    )
