"""Validation and test inside a run: a split scored over every rank, a threshold for all.

Each rank scores its chunks of the split through `inference.scoring.score_pairs` (the path
`predict` and `evaluate` take), the scores are gathered on every rank, and the threshold is
searched on the whole set by the main process and broadcast, so every rank ships the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

from ppi_dist.data.pairs import Pair
from ppi_dist.evaluation.threshold import ThresholdResult, search_threshold
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.scoring import Ranks, ScoredPairs, score_pairs


def accelerator_ranks(
    accelerator: Accelerator, stop_flag: Callable[[], bool] | None = None
) -> Ranks:
    """The Accelerator's processes as scoring `Ranks`. `stop_flag` (this process was asked to
    stop) is combined over ranks at each poll, so every rank leaves together."""

    def stop_everywhere() -> bool:
        flag = torch.tensor([float(stop_flag())], device=accelerator.device)
        return accelerator.reduce(flag, "sum").item() > 0

    several = accelerator.num_processes > 1
    return Ranks(
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        gather=gather_object if several else None,
        barrier=accelerator.wait_for_everyone if several else None,
        should_stop=stop_everywhere if stop_flag is not None else None,
    )


def score_split(
    model: torch.nn.Module,
    pairs: Sequence[Pair],
    accelerator: Accelerator,
    stop_flag: Callable[[], bool] | None = None,
    spill_dir: str | Path | None = None,
    cache: EmbeddingCache | None = None,
    desc: str = "scoring",
) -> ScoredPairs:
    """Every pair of a split (read once per run by the caller), each rank scoring its chunks,
    gathered on all; the main process shows progress bars named `desc`. Without a `cache`
    the proteins are encoded as the model scores (its `scoring_windows`). A stop raises
    `ScoringInterrupted` on every rank together."""
    return score_pairs(
        model,
        pairs,
        cache=cache,
        ranks=accelerator_ranks(accelerator, stop_flag),
        spill_dir=spill_dir,
        progress=desc if accelerator.is_main_process else None,
    )


def choose_threshold(
    scored: ScoredPairs, accelerator: Accelerator, weights: dict, grid: str, objective: str = "mcc"
) -> ThresholdResult:
    """Threshold search on a gathered validation set; rank 0's result is used everywhere."""
    result = search_threshold(
        scored.scores, scored.labels, weights=weights, grid=grid, objective=objective
    )
    if accelerator.num_processes > 1:
        result = broadcast_object_list([result if accelerator.is_main_process else None])[0]
    return result
