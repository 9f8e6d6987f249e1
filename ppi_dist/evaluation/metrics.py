"""Classification metrics of PPI scores: confusion counts, Acc/P/R/F1/MCC, AUROC, AUPR and
the trivial predictors.

Exact and vectorised: `confusion_counts` sorts once and counts every threshold by binary
search; `ranking_curves` gives the ROC and precision-recall points of sklearn's functions
(tests check) from one sort. `threshold` searches decision thresholds with them,
`bootstrap` resamples them.
"""

from __future__ import annotations

import numpy as np

DEFAULT_WEIGHTS = {"accuracy": 0.25, "precision": 0.25, "recall": 0.25, "f1": 0.25}


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


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (sklearn's zero_division=0)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def metrics_from_counts(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """Accuracy, precision, recall, F1 and MCC from confusion counts (arrays or scalars)."""
    tp, fp, tn, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, tn, fn))
    precision = safe_divide(tp, tp + fp)
    recall = safe_divide(tp, tp + fn)
    mcc_denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "accuracy": safe_divide(tp + tn, tp + fp + tn + fn),
        "precision": precision,
        "recall": recall,
        "f1": safe_divide(2 * tp, 2 * tp + fp + fn),
        "mcc": safe_divide(tp * tn - fp * fn, mcc_denominator),
    }


def weighted_score(metrics: dict, weights: dict[str, float]) -> np.ndarray:
    """sum_k w_k * metric_k over accuracy, precision, recall and F1."""
    unknown = set(weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown score weights {sorted(unknown)}; use {sorted(DEFAULT_WEIGHTS)}")
    return sum(w * np.asarray(metrics[name]) for name, w in weights.items())


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
        "tpr": safe_divide(tps, n_pos),
        "fpr": safe_divide(fps, n_neg),
        "precision": tps / (tps + fps),
        "recall": safe_divide(tps, n_pos),
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


def check_scores_and_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Scores (float64) and 0/1 labels (int64) as flat arrays, equally many, finite."""
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
    return scores, labels.astype(np.int64)


def trivial_predictors(labels, weights: dict[str, float] | None = None) -> dict[str, dict]:
    """What predictors that ignore the proteins score on these labels.

    "all_positive" / "all_negative": accuracy, precision, recall, F1, MCC and the weighted
    score; "random_ranking": the expected AUROC (0.5) and AUPR (the positive fraction) of a
    ranking that ignores the input.
    """
    labels = np.asarray(labels).ravel()
    if labels.size == 0 or not np.isin(labels, (0, 1)).all():
        raise ValueError("need labels, all 0 or 1")
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    n, n_pos = labels.size, int(labels.sum())
    out = {}
    for name, (tp, fp, tn, fn) in {
        "all_positive": (n_pos, n - n_pos, 0, 0),
        "all_negative": (0, 0, n - n_pos, n_pos),
    }.items():
        values = {k: float(v) for k, v in metrics_from_counts(tp, fp, tn, fn).items()}
        values["score"] = float(weighted_score(values, weights))
        out[name] = values
    out["random_ranking"] = {"auroc": 0.5, "aupr": n_pos / n}
    return out
