"""Bootstrap intervals: exact resampled ranking metrics, coverage, width, degenerate sets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ppi_dist.evaluation.bootstrap import (
    BOOTSTRAP_METRICS,
    _bootstrap_counts,
    _weighted_ranking_metrics,
    bootstrap_intervals,
)
from ppi_dist.evaluation.threshold import evaluate_at
from tests.evaluation.score_sets import CASES


def test_resampled_ranking_metrics_equal_sklearn_on_the_resampled_pairs():
    rng = np.random.default_rng(4)
    scores, labels = CASES["ties"](rng)
    order = np.argsort(scores, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(scores[order]) != 0])
    counts = _bootstrap_counts(rng, labels.size, 5)
    assert (counts.sum(axis=1) == labels.size).all()
    auroc, aupr = _weighted_ranking_metrics(
        counts[:, order].astype(float), labels[order].astype(float), starts
    )
    for k in range(5):
        drawn = np.repeat(np.arange(labels.size), counts[k])
        assert auroc[k] == pytest.approx(roc_auc_score(labels[drawn], scores[drawn]), abs=1e-12)
        expected = average_precision_score(labels[drawn], scores[drawn])
        assert aupr[k] == pytest.approx(expected, abs=1e-12)


def test_bootstrap_intervals_hold_the_estimate_and_shrink_with_n():
    rng = np.random.default_rng(5)
    widths = []
    for n in (500, 8000):
        labels = rng.integers(0, 2, n)
        scores = 0.3 * labels + rng.random(n)
        intervals = bootstrap_intervals(scores, labels, 0.65, n_resamples=300, seed=1)
        assert set(intervals) == set(BOOTSTRAP_METRICS)
        point = evaluate_at(scores, labels, 0.65)
        for name, (low, high) in intervals.items():
            assert low <= getattr(point, name) <= high, (n, name)
        widths.append(intervals["auroc"][1] - intervals["auroc"][0])
    # Width scales as 1/sqrt(n): 16x the pairs, about a quarter of the width.
    assert 0.15 < widths[1] / widths[0] < 0.4
    again = bootstrap_intervals(scores, labels, 0.65, n_resamples=300, seed=1)
    assert again == intervals
    assert bootstrap_intervals(scores, labels, 0.65, n_resamples=300, seed=2) != intervals


def test_bootstrap_intervals_are_exact_on_degenerate_cases():
    labels = np.tile([0, 1], 200)
    perfect = bootstrap_intervals(np.where(labels == 1, 0.9, 0.1), labels, 0.5, n_resamples=200)
    assert all(perfect[name] == (1.0, 1.0) for name in BOOTSTRAP_METRICS), perfect
    constant = bootstrap_intervals(np.full(labels.size, 0.5), labels, 0.5, n_resamples=200)
    assert constant["auroc"] == (0.5, 0.5) and constant["recall"] == (1.0, 1.0)
    assert constant["mcc"] == (0.0, 0.0)
    one_class = bootstrap_intervals([0.6, 0.7, 0.9], [1, 1, 1], 0.5, n_resamples=50)
    assert np.isnan(one_class["auroc"]).all() and one_class["precision"] == (1.0, 1.0)
