"""Metrics and threshold search against brute force, sklearn and the evaluate module."""

from __future__ import annotations

import evaluate
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, matthews_corrcoef, roc_auc_score

import ppi_dist.ppi_metric
from ppi_dist.metrics import DEFAULT_WEIGHTS, FIXED_GRID, evaluate_at, search_threshold


def brute_force(scores, labels, thresholds, weights):
    """Every threshold, every sample, counted one by one: slow and obviously right."""
    best = None
    for t in thresholds:
        predicted = scores >= t
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
        if best is None or score > best[1] + 1e-12:
            best = (t, score, metrics)
    return best


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


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("grid", ["fixed", "distinct"])
@pytest.mark.parametrize(
    "weights", [DEFAULT_WEIGHTS, {"accuracy": 0.1, "precision": 0.6, "recall": 0.1, "f1": 0.2}]
)
def test_search_equals_brute_force(case, grid, weights):
    scores, labels = CASES[case](np.random.default_rng(7))
    result = search_threshold(scores, labels, weights=weights, grid=grid)
    thresholds = FIXED_GRID if grid == "fixed" else np.unique(scores)
    threshold, score, metrics = brute_force(scores, labels, thresholds, weights)
    assert result.threshold == pytest.approx(threshold)
    assert result.score == pytest.approx(score, abs=1e-12)
    for name, value in metrics.items():
        assert getattr(result, name) == pytest.approx(value, abs=1e-12), name
    # ... and sklearn agrees at the chosen threshold, MCC included.
    predicted = (scores >= result.threshold).astype(int)
    assert result.f1 == pytest.approx(f1_score(labels, predicted, zero_division=0), abs=1e-12)
    assert result.mcc == pytest.approx(matthews_corrcoef(labels, predicted), abs=1e-12)
    assert result.auroc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert result.aupr == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_uninformative_scores_are_flagged_beside_the_trivial_predictor():
    labels = np.tile([0, 1], 500)
    constant = search_threshold(np.full(labels.size, 0.5), labels)
    assert constant.single_class and not constant.beats_trivial
    assert constant.all_positive_score == pytest.approx((0.5 + 0.5 + 1 + 2 / 3) / 4)
    assert round(constant.all_positive_score, 3) == 0.667
    assert "predicts a single class" in constant.describe()

    noise = search_threshold(np.random.default_rng(0).random(labels.size), labels)
    assert not noise.beats_trivial
    assert "does not beat the trivial predictors" in noise.describe()
    assert noise.all_positive_score == pytest.approx(0.6667, abs=1e-4)


def test_a_good_model_beats_the_trivial_predictors():
    labels = np.tile([0, 1], 500)
    result = search_threshold(np.where(labels == 1, 0.8, 0.2), labels)
    assert result.beats_trivial and not result.single_class
    assert result.score == 1.0 and result.mcc == 1.0


def test_evaluate_at_fixed_threshold():
    scores, labels = np.array([0.1, 0.4, 0.6, 0.9]), np.array([0, 1, 0, 1])
    result = evaluate_at(scores, labels, 0.5)
    assert result.threshold == 0.5 and result.accuracy == 0.5 and result.precision == 0.5


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        search_threshold([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        search_threshold([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="equally many"):
        search_threshold([0.1], [0, 1])


def test_evaluate_module_loads_offline_by_path_and_agrees(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = evaluate.load(ppi_dist.ppi_metric.PATH)
    scores, labels = CASES["informative"](np.random.default_rng(3))
    for start in range(0, labels.size, 100):  # streamed in batches, as a pipeline would
        chunk = slice(start, start + 100)
        metric.add_batch(predictions=scores[chunk], references=labels[chunk])
    computed = metric.compute()
    direct = search_threshold(scores, labels).summary()
    assert computed == pytest.approx(direct)
    at_half = metric.compute(predictions=scores, references=labels, threshold=0.5)
    assert at_half["threshold"] == 0.5
