"""Calibrated probabilities: Platt scaling fitted on validation, ECE, Brier, intervals.

The model's sigmoid is a score, not a probability: focal loss moves it away from the
observed frequencies. The record, `Calibration`, is part of the model (`models/calibration.py`);
`fit_platt` fits p = sigmoid(a * logit(s) + b) to the VALIDATION
scores s and labels by maximum likelihood (Newton's method on two parameters; a slope
and an offset, so temperature scaling, b = 0, is the special case), the two classes
weighted to a stated balance (`prior`, 0.5 by default; why: `models/calibration.py`).
Isotonic regression is not offered: on a few thousand validation pairs its steps overfit,
and Platt's map is monotonic, so the ranking (AUROC, AUPR) and the decision are unchanged.

The decision threshold stays chosen and applied on the RAW score (as before), and the
calibrated probability is reported beside it; since the map is increasing, `threshold` on
the raw score is `apply(threshold)` on the calibrated one, which the report states.

`expected_calibration_error`: equal-width bins (15), the pair-weighted mean gap between a
bin's mean probability and its positive fraction. `brier`: mean squared error of the
probability. `calibration_intervals`: percentile bootstrap over pairs of both, before
and after.
"""

from __future__ import annotations

import numpy as np

from ppi_dist.models.calibration import Calibration, logit

BINS = 15


def fit_platt(
    scores: np.ndarray,
    labels: np.ndarray,
    fitted_on: str = "validation",
    prior: float | None = 0.5,
) -> Calibration:
    """Maximum-likelihood Platt scaling of `scores` (probabilities) to `labels` (0/1), the
    classes weighted so that positives make up `prior` of the weight (None: as they come).

    Targets are Platt's smoothed labels ((n+ + 1)/(n+ + 2), 1/(n- + 2)), so that a
    separable validation set does not send the slope to infinity."""
    z = logit(scores)
    y = np.asarray(labels, dtype=np.float64)
    positives, negatives = y.sum(), len(y) - y.sum()
    if not positives or not negatives:
        raise ValueError("Platt scaling needs scores of both classes")
    target = np.where(y > 0.5, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    weight = np.ones_like(y)
    if prior is not None:  # label shift: each class keeps its scores, the balance moves
        weight = np.where(y > 0.5, prior / positives, (1 - prior) / negatives) * len(y)
    features = np.stack([z, np.ones_like(z)], axis=1)

    def loss(params: np.ndarray) -> float:  # cross-entropy, written stably in the logit
        logits = features @ params
        return float(np.mean(weight * (np.logaddexp(0, logits) - target * logits)))

    params = np.array([1.0, 0.0])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(features @ params, -50, 50)))
        gradient = features.T @ (weight * (p - target)) / len(y)
        curvature = weight * p * (1 - p)
        hessian = features.T @ (features * curvature[:, None]) / len(y) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale, before = 1.0, loss(params)
        while loss(params - scale * step) > before and scale > 1e-6:  # damped Newton
            scale /= 2
        params = params - scale * step
        if np.abs(scale * step).max() < 1e-10:
            break
    slope, offset = float(params[0]), float(params[1])
    return Calibration(slope, offset, fitted_on=fitted_on, pairs=len(y), prior=prior)


def fit_shipped_calibration(scores: np.ndarray, labels: np.ndarray) -> Calibration | None:
    """The calibration a model folder ships: Platt on the validation scores, or None when its
    slope is not positive (scores that rank no better than chance; a decreasing map would
    reverse the ranking that `predict` and `--top_k` rely on)."""
    calibration = fit_platt(scores, labels)
    return calibration if calibration.slope > 0 else None


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS
) -> float:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = np.bincount(which, minlength=bins)
    gaps = np.abs(
        np.bincount(which, weights=p, minlength=bins)
        - np.bincount(which, weights=y, minlength=bins)
    )
    return float(gaps.sum() / max(total.sum(), 1))


def brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """Per non-empty bin: mean probability, positive fraction, pairs (the diagram's points)."""
    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = np.bincount(which, minlength=bins)
    keep = total > 0
    return {
        "mean_probability": (
            np.bincount(which, weights=p, minlength=bins)[keep] / total[keep]
        ).tolist(),
        "positive_fraction": (
            np.bincount(which, weights=y, minlength=bins)[keep] / total[keep]
        ).tolist(),
        "pairs": total[keep].tolist(),
    }


def calibration_intervals(
    raw: np.ndarray,
    calibrated: np.ndarray,
    labels: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """ECE and Brier of the raw and calibrated probabilities, each with a 95% percentile
    bootstrap interval over pairs (the same resamples for all four)."""
    raw, calibrated = np.asarray(raw, dtype=np.float64), np.asarray(calibrated, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    measures = {
        "ece_raw": (expected_calibration_error, raw),
        "ece_calibrated": (expected_calibration_error, calibrated),
        "brier_raw": (brier, raw),
        "brier_calibrated": (brier, calibrated),
    }
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(n_resamples):
        index = rng.integers(0, len(labels), len(labels))
        for name, (measure, values) in measures.items():
            samples[name].append(measure(values[index], labels[index]))
    return {
        name: {
            "value": measure(values, labels),
            "low": float(np.percentile(samples[name], 2.5)),
            "high": float(np.percentile(samples[name], 97.5)),
        }
        for name, (measure, values) in measures.items()
    }
