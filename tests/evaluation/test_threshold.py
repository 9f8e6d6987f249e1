"""Metrics and threshold search against brute force, sklearn and the evaluate module."""

from __future__ import annotations

import evaluate
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, matthews_corrcoef, roc_auc_score

import ppi_dist.evaluation.ppi_metric
from ppi_dist.evaluation.metrics import DEFAULT_WEIGHTS, trivial_predictors
from ppi_dist.evaluation.threshold import (
    FIXED_GRID,
    OBJECTIVES,
    compare_objectives,
    describe_objectives,
    evaluate_at,
    search_threshold,
    selection_metric,
)
from tests.evaluation.score_sets import CASES, brute_force


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
    metric = evaluate.load(ppi_dist.evaluation.ppi_metric.PATH)
    scores, labels = CASES["informative"](np.random.default_rng(3))
    for start in range(0, labels.size, 100):  # streamed in batches, as a pipeline would
        chunk = slice(start, start + 100)
        metric.add_batch(predictions=scores[chunk], references=labels[chunk])
    computed = metric.compute()
    direct = search_threshold(scores, labels).summary()
    assert computed == pytest.approx(direct)
    at_half = metric.compute(predictions=scores, references=labels, threshold=0.5)
    assert at_half["threshold"] == 0.5


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("objective", ["accuracy", "mcc"])
def test_other_objectives_equal_brute_force(case, objective):
    scores, labels = CASES[case](np.random.default_rng(11))
    result = search_threshold(scores, labels, grid="distinct", objective=objective)
    threshold, score, metrics = brute_force(
        scores, labels, np.unique(scores), DEFAULT_WEIGHTS, objective
    )
    assert result.objective == objective
    assert result.threshold == pytest.approx(threshold)
    assert result.score == pytest.approx(score, abs=1e-12)  # always the weighted score
    assert result.accuracy == pytest.approx(metrics["accuracy"], abs=1e-12)
    expected = metrics["accuracy"] if objective == "accuracy" else result.mcc
    assert result.objective_value == pytest.approx(expected, abs=1e-12)


def test_search_never_ships_a_single_class_threshold():
    """Noise: with all thresholds allowed, the weighted optimum is "all positive" (0.01)."""
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 500)
    scores = 0.05 + 0.9 * rng.random(labels.size)
    for objective in OBJECTIVES:
        result = search_threshold(scores, labels, objective=objective)
        assert result.two_class_found and not result.single_class, objective
        assert 0 < result.predicted_positive_fraction < 1
    unrestricted = search_threshold(scores, labels, require_both_classes=False)
    assert unrestricted.single_class and unrestricted.predicted_positive_fraction == 1.0


def test_no_two_class_threshold_is_said_clearly():
    labels = np.tile([0, 1], 50)
    result = search_threshold(np.full(labels.size, 0.5), labels, objective="mcc")
    assert not result.two_class_found and result.single_class
    assert "no candidate threshold predicts both classes" in result.describe()
    assert result.summary()["two_class_found"] == 0.0
    assert all(isinstance(v, float | int) for v in result.summary().values())


def test_near_trivial_threshold_is_warned():
    labels = np.tile([0, 1], 500)
    scores = np.where(np.arange(labels.size) < 2, 0.0, 0.9)  # 2 of 1,000 called negative
    result = evaluate_at(scores, labels, 0.5)
    assert result.near_trivial and not result.single_class
    assert "99.8% of pairs one class" in result.describe()


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="objective must be one of"):
        search_threshold([0.1, 0.9], [0, 1], objective="f1")


def test_compare_objectives_applies_validation_thresholds_to_test():
    rng = np.random.default_rng(2)
    scores, labels = CASES["informative"](rng)
    test_scores, test_labels = CASES["informative"](rng)
    comparison = compare_objectives(scores, labels, test_scores, test_labels, grid="distinct")
    assert list(comparison) == list(OBJECTIVES)
    for objective, results in comparison.items():
        chosen = search_threshold(scores, labels, grid="distinct", objective=objective)
        assert results["validation"].threshold == chosen.threshold
        assert results["test"].threshold == chosen.threshold
        direct = evaluate_at(test_scores, test_labels, chosen.threshold)
        assert results["test"].mcc == direct.mcc and results["test"].objective == objective
    table = describe_objectives(comparison)
    assert table.count("\n") == 1 + len(OBJECTIVES) and "| mcc |" in table


def test_selection_metric_does_not_reward_the_trivial_predictor():
    labels = np.tile([0, 1], 500)
    constant = search_threshold(np.full(labels.size, 0.7), labels)  # "all positive"
    weak = search_threshold(0.1 * labels + np.random.default_rng(0).random(labels.size), labels)
    # The trap: a collapsed (constant) checkpoint scores within 5% of one that ranks pairs.
    assert selection_metric(constant, "score") == pytest.approx(2 / 3)
    assert selection_metric(constant, "score") > 0.95 * selection_metric(weak, "score")
    assert selection_metric(constant, "auroc") == 0.5 < selection_metric(weak, "auroc")
    assert selection_metric(constant, "mcc") == 0.0 < selection_metric(weak, "mcc")
    with pytest.raises(ValueError, match="selection metric"):
        selection_metric(weak, "accuracy")


def test_trivial_predictors():
    labels = np.array([1, 0, 0, 0])
    trivial = trivial_predictors(labels)
    assert trivial["all_positive"]["accuracy"] == 0.25
    assert trivial["all_positive"]["f1"] == pytest.approx(0.4)
    assert trivial["all_negative"]["accuracy"] == 0.75 and trivial["all_negative"]["f1"] == 0
    assert trivial["all_positive"]["mcc"] == trivial["all_negative"]["mcc"] == 0
    assert trivial["random_ranking"] == {"auroc": 0.5, "aupr": 0.25}
    balanced = trivial_predictors(np.tile([0, 1], 10))["all_positive"]["score"]
    assert balanced == pytest.approx(search_threshold([0.5] * 20, [0, 1] * 10).all_positive_score)
