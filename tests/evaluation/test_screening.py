"""What a screen would keep on labelled pairs: the two-stage ranking and the recall."""

from __future__ import annotations

import numpy as np

from ppi_dist.evaluation.metrics import auroc_aupr
from ppi_dist.evaluation.screening import recalls, screen_ranking, top_mask


def test_top_mask_keeps_the_share_and_at_least_one():
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    assert top_mask(scores, 0.5).tolist() == [False, True, False, True]
    assert top_mask(scores, 0.01).tolist() == [False, True, False, False]


def test_the_kept_pairs_rank_above_the_rest_and_recall_counts_the_full_models_best():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    full = np.clip(labels * 0.3 + rng.random(400) * 0.7, 0, 1)  # informative
    first = np.clip(labels * 0.1 + rng.random(400) * 0.9, 0, 1)  # weaker
    ranking = screen_ranking(full, first, labels)
    assert list(ranking) == ["0.01", "0.05", "0.1", "0.2"]
    first_auroc = auroc_aupr(first, labels)[0]
    assert (
        first_auroc
        < ranking["0.1"]["auroc"]
        < ranking["0.2"]["auroc"]
        < auroc_aupr(full, labels)[0]
    )
    assert recalls(full, np.ones(400, dtype=bool)) == [1.0, 1.0]  # every pair kept
    assert recalls(full, top_mask(full, 0.05)) == [1.0, 1.0]  # the full model's own top 5%
    assert (
        0 <= ranking["0.05"]["top_1"] <= 1 and ranking["0.2"]["top_5"] >= ranking["0.05"]["top_5"]
    )
