"""Score sets the metric tests share, and a brute-force threshold search to check against."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import matthews_corrcoef


def brute_force(scores, labels, thresholds, weights, objective="weighted"):
    """Every threshold, every sample, counted one by one: slow and obviously right.
    Thresholds that predict a single class do not compete."""
    best = None
    for t in thresholds:
        predicted = scores >= t
        if predicted.all() or not predicted.any():
            continue
        tp = int(np.sum(predicted & (labels == 1)))
        fp = int(np.sum(predicted & (labels == 0)))
        fn = int(np.sum(~predicted & (labels == 1)))
        tn = int(np.sum(~predicted & (labels == 0)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        metrics = {
            "accuracy": (tp + tn) / labels.size,
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if tp else 0.0,
        }
        score = sum(w * metrics[k] for k, w in weights.items())
        target = {
            "weighted": score,
            "accuracy": metrics["accuracy"],
            "mcc": matthews_corrcoef(labels, predicted.astype(int)),
        }[objective]
        if best is None or target > best[3] + 1e-12:
            best = (t, score, metrics, target)
    return best[:3]


CASES = {
    "informative": lambda r: (lambda y: (np.clip(0.35 * y + 0.65 * r.random(y.size), 0, 1), y))(
        r.integers(0, 2, 400)
    ),
    "imbalanced": lambda r: (lambda y: (np.clip(0.2 * y + 0.8 * r.random(y.size), 0, 1), y))(
        (r.random(300) < 0.1).astype(int)
    ),
    "ties": lambda r: (lambda y: (np.round(0.3 * y + 0.7 * r.random(y.size), 1), y))(
        r.integers(0, 2, 200)
    ),
}


def logistic_scores(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A model-like score set: 40% positives, scores a noisy logistic of the label."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.4).astype(int)
    scores = 1 / (1 + np.exp(-rng.normal(labels - 0.5, 1.0)))
    return scores, labels
