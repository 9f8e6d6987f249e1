"""The screen: every pair ranked by the first pass, cross-attention on the best of them.

    cache (each protein encoded once) -> each protein's first-pass vector, once
    -> first pass over every pair of the plan, a tile at a time (one matrix product per
       tile of an all-vs-all; a pair file's chunks pair by pair) -> the score at which the
       best `fraction` of the pairs begins (the cut)
    -> `predict` scores the pairs at or above the cut by cross-attention, as without a
       screen, and writes the others with their first-pass score only

The first pass costs a dot product of two vectors per pair, cross-attention L_A x L_B x d,
so the screen divides the cross-attention work by 1 / `fraction` at the cost of the pairs
it ranks below the cut that cross-attention would have ranked high (BENCHMARKS.md measures
that recall). No N^2 table is held: the cut keeps the best `fraction` of the scores seen so
far. Every rank computes the same cut from the same vectors, so ranks need not talk.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ppi_dist.data.pairs import Pair
from ppi_dist.errors import UserError
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.plans import AllPairsPlan, PairFilePlan
from ppi_dist.inference.scoring import first_pass_pair_logits, protein_vectors


def check_first_pass(model: torch.nn.Module) -> None:
    """A screen needs a model trained with a first pass; name the folder that lacks one."""
    if getattr(model, "first_pass", None) is None:
        where = getattr(model, "loaded_from", None) or "the model"
        raise UserError(
            f"{where}: --screen needs a model with a first pass (first_pass_width in "
            "secai_config.json), and this one was saved without it; train it again, or "
            "score every pair without --screen"
        )


class FirstPassScreen:
    """The first pass over a plan's chunks, and the cut that keeps its best `fraction`.

    `logits(chunk, pairs)` is the same function in the cut's pass and in `predict`'s, so a
    pair is kept or not the same way in both: an all-vs-all tile is one matrix product
    (`FirstPass.tile_logits`), a pair file's chunk is scored pair by pair.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        cache: EmbeddingCache,
        plan: AllPairsPlan | PairFilePlan,
        fraction: float,
        progress: bool = False,
    ) -> None:
        check_first_pass(model)
        self.model, self.plan, self.fraction = model, plan, fraction
        proteins = plan.proteins_of(lambda chunk: True)
        self.row = {protein: row for row, protein in enumerate(proteins)}
        was_training = model.training
        model.eval()
        self.vectors = protein_vectors(model, cache, proteins)
        self.keep = min(math.ceil(fraction * plan.total_pairs), plan.total_pairs)
        with tqdm(
            total=plan.total_pairs, unit="pair", unit_scale=True, disable=not progress
        ) as bar:
            bar.set_description("first pass (screen)")
            self.cut = self._cut(bar)
        model.train(was_training)

    @torch.no_grad()
    def logits(self, chunk: int, pairs: Sequence[Pair]) -> np.ndarray:
        """First-pass logits of the chunk's pairs, in their order: float32 (P,)."""
        if isinstance(self.plan, AllPairsPlan):
            scores = self._tile_logits(chunk)
        else:
            logits = first_pass_pair_logits(self.model, self.vectors, self.row, pairs)
            scores = logits.float().cpu().numpy()
        if len(scores) != len(pairs):
            raise RuntimeError(
                f"chunk {chunk}: {len(scores)} first-pass scores, {len(pairs)} pairs"
            )
        return scores

    def kept(self, scores: np.ndarray) -> np.ndarray:
        """Which of a chunk's first-pass logits reach the cut: bool (P,)."""
        return scores >= self.cut

    def describe(self) -> dict:
        return {"fraction": self.fraction, "first_pass_cut": self.cut, "kept_pairs": self.keep}

    @torch.no_grad()
    def _tile_logits(self, chunk: int) -> np.ndarray:
        """An all-vs-all chunk's first-pass logits, its tiles as one matrix product, in the
        order `pairs_of` lists the chunk's pairs."""
        i, j = self.plan.chunk_tiles[chunk]
        tile = self.model.first_pass.tile_logits(
            self._rows(self.plan.tiles_a[i]), self._rows(self.plan.tiles_b[j])
        )
        return tile.float().cpu().numpy()[self.plan.chunk_mask(chunk)]

    def _rows(self, proteins: Sequence[str]) -> torch.Tensor:
        index = torch.tensor([self.row[p] for p in proteins], device=self.vectors.device)
        return self.vectors.index_select(0, index)

    def _chunk_scores(self) -> Iterator[np.ndarray]:
        if isinstance(self.plan, AllPairsPlan):  # the tiles alone: no pair records needed
            for chunk in range(self.plan.num_chunks):
                yield self._tile_logits(chunk)
        else:
            for chunk, pairs in self.plan.chunks(lambda chunk: True):
                yield self.logits(chunk, pairs)

    def _cut(self, bar: tqdm) -> float:
        """The `keep`-th highest first-pass logit of the plan (-inf: keep every pair), with
        at most about 2 x `keep` scores held at once."""
        if self.keep >= self.plan.total_pairs:
            return -math.inf
        best = np.empty(0, dtype=np.float32)
        pending: list[np.ndarray] = []
        held = 0
        for scores in self._chunk_scores():
            bar.update(len(scores))
            pending.append(scores)
            held += len(scores)
            if held >= 2 * self.keep + 65536:
                best = _highest(np.concatenate([best, *pending]), self.keep)
                pending, held = [], len(best)
        best = _highest(np.concatenate([best, *pending]), self.keep)
        return float(best.min())


def _highest(scores: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` highest of `scores` (all of them when there are fewer), unordered."""
    if len(scores) <= keep:
        return scores
    return np.partition(scores, len(scores) - keep)[len(scores) - keep :]
