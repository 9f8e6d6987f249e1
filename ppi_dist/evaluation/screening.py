"""What `predict --screen` would keep on labelled pairs: the two-stage ranking (the kept
share by SE-CAI, the rest below it by the first pass) and the recall of SE-CAI's own best
pairs, at each screen share. Reported by the trainer (metrics.json) and `evaluate`."""

from __future__ import annotations

import math

import numpy as np

from ppi_dist.evaluation.metrics import auroc_aupr

SCREENS = (0.01, 0.05, 0.1, 0.2)  # shares of the pairs sent on to cross-attention
TOPS = (0.01, 0.05)  # SE-CAI's best pairs whose recall is measured


def top_mask(scores: np.ndarray, share: float) -> np.ndarray:
    """The `share` highest of `scores` (at least one), as a boolean mask."""
    keep = max(math.ceil(share * len(scores)), 1)
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.argsort(-np.asarray(scores), kind="stable")[:keep]] = True
    return mask


def recalls(full: np.ndarray, kept: np.ndarray) -> list[float]:
    """Of SE-CAI's top 1% and 5% pairs (by `full`), the shares in `kept`."""
    tops = [top_mask(full, top) for top in TOPS]
    return [float((kept & best).sum() / best.sum()) for best in tops]


def screen_ranking(
    full: np.ndarray, first_pass: np.ndarray, labels: np.ndarray
) -> dict[str, dict[str, float]]:
    """Per screen share: the two-stage ranking's AUROC and AUPR, and the recall of SE-CAI's
    top 1% and 5% pairs among the kept ones."""
    ranking = {}
    for share in SCREENS:
        kept = top_mask(first_pass, share)
        two_stage = np.where(kept, 2 + np.asarray(full), first_pass)  # kept pairs rank first
        auroc, aupr = auroc_aupr(two_stage, labels)
        top_1, top_5 = recalls(full, kept)
        ranking[f"{share:g}"] = {"auroc": auroc, "aupr": aupr, "top_1": top_1, "top_5": top_5}
    return ranking
