"""Platt scaling: lowers the ECE of a miscalibrated score set, keeps the ranking, saves and
loads as JSON; ECE, Brier and their intervals."""

from __future__ import annotations

import numpy as np

from ppi_dist.evaluation.calibration import (
    brier,
    calibration_intervals,
    expected_calibration_error,
    fit_platt,
    fit_shipped_calibration,
)
from ppi_dist.models.calibration import Calibration


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True probabilities p, labels drawn from them, scores sigmoid(3 logit p + 1): too sure
    and shifted towards 1 (what focal loss and class weights can do)."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(0.05, 0.95, n)
    labels = (rng.uniform(size=n) < true).astype(np.float64)
    logit = np.log(true / (1 - true))
    return 1 / (1 + np.exp(-(3 * logit + 1))), labels


def test_platt_fitted_on_validation_lowers_ece_on_held_out_pairs():
    valid_scores, valid_labels = _overconfident(4000, seed=0)
    test_scores, test_labels = _overconfident(4000, seed=1)
    calibration = fit_platt(valid_scores, valid_labels)
    assert calibration.pairs == 4000 and calibration.fitted_on == "validation"
    assert abs(calibration.slope - 1 / 3) < 0.05  # undoes the factor 3
    calibrated = calibration.apply(test_scores)
    before = expected_calibration_error(test_scores, test_labels)
    after = expected_calibration_error(calibrated, test_labels)
    assert before > 0.08 and after < before / 3
    assert brier(calibrated, test_labels) < brier(test_scores, test_labels)
    # Monotonic: the ranking, hence AUROC and the decision at a mapped threshold, is kept.
    assert (np.diff(calibrated[np.argsort(test_scores)]) >= -1e-12).all()


def test_well_calibrated_scores_are_left_nearly_alone():
    rng = np.random.default_rng(2)
    scores = rng.uniform(0.02, 0.98, 5000)
    labels = (rng.uniform(size=5000) < scores).astype(float)
    calibration = fit_platt(scores, labels)
    assert abs(calibration.slope - 1) < 0.1 and abs(calibration.offset) < 0.1


def test_saved_and_loaded_as_json(tmp_path):
    calibration = fit_platt(*_overconfident(500, seed=3))
    path = calibration.save(tmp_path)
    assert path.name == "calibration.json"
    assert Calibration.load(tmp_path) == calibration
    assert Calibration.load(tmp_path / "missing") is None


def test_intervals_hold_their_values_and_ece_matches_by_hand():
    probabilities = np.array([0.1, 0.1, 0.9, 0.9])
    labels = np.array([0.0, 1.0, 1.0, 1.0])
    # Two bins: |0.2 - 1| over 2 pairs and |1.8 - 2| over 2 pairs, over 4 pairs.
    assert abs(expected_calibration_error(probabilities, labels) - (0.8 + 0.2) / 4) < 1e-12
    scores, labels = _overconfident(800, seed=4)
    calibrated = fit_platt(scores, labels).apply(scores)
    intervals = calibration_intervals(scores, calibrated, labels, n_resamples=200)
    for values in intervals.values():
        assert values["low"] <= values["value"] <= values["high"]
    assert intervals["ece_calibrated"]["high"] < intervals["ece_raw"]["low"]


def test_scores_that_rank_backwards_ship_no_calibration():
    scores, labels = _overconfident(2000, seed=3)
    assert fit_shipped_calibration(scores, labels).slope > 0
    # The same scores against the opposite labels: Platt's slope turns negative, and a
    # decreasing map would reverse every ranking, so the folder keeps the raw score.
    assert fit_platt(scores, 1 - labels).slope < 0
    assert fit_shipped_calibration(scores, 1 - labels) is None


def _label_shifted(n: int, positive: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logit scores N(+1, 1) for positives and N(-1, 1) for negatives, `positive` of them
    positive: at any balance q the true P(y | z) is sigmoid(2z + logit q)."""
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=n) < positive).astype(np.float64)
    z = rng.normal(np.where(labels > 0, 1.0, -1.0), 1.0)
    return 1 / (1 + np.exp(-z)), labels


def test_a_lopsided_validation_set_calibrates_at_the_stated_balance():
    # A similarity-disjoint hold-out can be 90% positive (yeast c3's was 94%).
    valid_scores, valid_labels = _label_shifted(6000, 0.9, seed=4)
    test_scores, test_labels = _label_shifted(6000, 0.5, seed=5)
    balanced = fit_platt(valid_scores, valid_labels)  # prior 0.5, the default
    as_it_comes = fit_platt(valid_scores, valid_labels, prior=None)
    assert balanced.prior == 0.5 and as_it_comes.prior is None
    assert abs(balanced.slope - 2) < 0.15 and abs(balanced.offset) < 0.15
    assert abs(as_it_comes.offset - np.log(9)) < 0.2  # the validation set's own balance
    good = expected_calibration_error(balanced.apply(test_scores), test_labels)
    bad = expected_calibration_error(as_it_comes.apply(test_scores), test_labels)
    assert good < 0.03 < 0.2 < bad
    # A screen where one pair in ten interacts: Bayes' rule moves the probabilities there.
    rare_scores, rare_labels = _label_shifted(6000, 0.1, seed=6)
    assert expected_calibration_error(balanced.apply(rare_scores), rare_labels) > 0.1
    assert expected_calibration_error(balanced.apply(rare_scores, prior=0.1), rare_labels) < 0.03
    assert "at 0.1 positive" in balanced.describe(0.1)
