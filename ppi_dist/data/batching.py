"""Batches the model reads, from a pair source: each distinct sequence once, in a token budget.

A token batch (`TokenBatches`, `collate_pairs`) holds each distinct sequence once
(`input_ids`, `attention_mask`) and, per pair, the rows of its two proteins (`index_a`,
`index_b`): the encoder runs once on the distinct sequences and the pairs pick their states
from there. It also carries the encoder's packed layout (`pack_*`, see
`models.packing.packing_layout`), computed here on the CPU. Frozen-encoder training reads
`CacheRowBatches` instead: the pairs as rows of an embedding cache, no crops, no tokens, no
layout.

Both batchers share one planner (`data.planner.BatchPlanner`: shuffle, sort buffers, ranks,
padding batches, resume); `loader.BatchLoader` prepares their batches in worker processes.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ppi_dist.data.pairs import Pair, PairSource
from ppi_dist.data.planner import BatchOptions, BatchPlanner
from ppi_dist.data.sequences import sequence_digest, tokenize
from ppi_dist.models.packing import packed_tokens, packing_layout
from ppi_dist.models.windows import Windowing, stitch_layout

_PACK_TRIES = 8


def collate_pairs(
    pairs: list[Pair],
    *,
    layout: bool = True,
    windowing: Windowing | None = None,
    trunk_index: TrunkIndex | None = None,
) -> dict:
    """Tokenise the distinct sequences of `pairs` (cropped as they should run) once and index
    them per pair.

    Returns a dict with tensors `input_ids` and `attention_mask` (distinct sequences x
    tokens), `index_a` and `index_b` (pairs), `labels` (pairs, float; only when every pair
    has one) and the lists `protein_a`, `protein_b` of identifiers. With `layout` (default)
    also the encoder's packed layout of the distinct sequences, `packing.LAYOUT_FIELDS`
    (`pack_*` tensors, see `packing.packing_layout`), computed here on the CPU so the
    model can pack on the device without a host sync (`packing.packed_inputs_from_layout`).

    With a `windowing` of mode "all", a sequence longer than its window is tokenised as its
    windows, one encoder row each, and `stitch_index`, `stitch_mask` (distinct sequences x
    longest, see `windows.stitch_layout`) say where its residues' states are.

    With a `trunk_index`, `trunk_rows` (int64, one per encoder row) place each row in the
    trunk cache, whose states it starts from (`inference.trunk`).
    """
    row_of: dict[str, int] = {}
    for pair in pairs:
        row_of.setdefault(pair.sequence_a, len(row_of))
        row_of.setdefault(pair.sequence_b, len(row_of))
    pieces, stitch = list(row_of), None
    if windowing is not None and windowing.mode == "all":
        windows = [windowing.windows(len(sequence)) for sequence in row_of]
        if any(len(w) > 1 for w in windows):
            pairs_of = zip(row_of, windows, strict=True)
            pieces = [sequence[w.start : w.stop] for sequence, ws in pairs_of for w in ws]
            stitch = windows
    input_ids, attention_mask = tokenize(pieces)
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "index_a": torch.tensor([row_of[p.sequence_a] for p in pairs], dtype=torch.long),
        "index_b": torch.tensor([row_of[p.sequence_b] for p in pairs], dtype=torch.long),
        "protein_a": [p.protein_a for p in pairs],
        "protein_b": [p.protein_b for p in pairs],
    }
    if all(p.label is not None for p in pairs):
        batch["labels"] = torch.tensor([p.label for p in pairs], dtype=torch.float32)
    if stitch is not None:
        batch["stitch_index"], batch["stitch_mask"] = stitch_layout(stitch, input_ids.shape[1])
    if trunk_index is not None:
        batch["trunk_rows"] = trunk_index.rows(pieces)
    if layout:
        batch.update(packing_layout([len(piece) + 2 for piece in pieces]))
    return batch


def swap_sides(batch: dict, generator: torch.Generator) -> dict:
    """Swap A and B of a random half of the pairs (augmentation for order-dependent heads).

    The coin flips come from a CPU generator (resumable, the same on any device) and move
    to the indices' device.
    """
    a, b = batch["index_a"], batch["index_b"]
    flip = (torch.rand(a.shape, generator=generator) < 0.5).to(a.device)
    return {**batch, "index_a": torch.where(flip, b, a), "index_b": torch.where(flip, a, b)}


def batch_to_device(batch: dict, device: torch.device | str) -> dict:
    """The batch with every tensor on `device` (copies queued without waiting: the batches
    of a loader are pinned on a GPU machine); lists of identifiers stay as they are."""
    return {
        key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
        for key, value in batch.items()
    }


@dataclass(frozen=True)
class CacheIndex:
    """Where each protein sits in an embedding cache (`inference.cache.EmbeddingCache`): its
    row, and the residues stored.

    No states: small and picklable, so data-loader workers can turn a batch's protein ids
    into int64 cache rows (`place_pairs`) and the training loop only gathers on the device.
    """

    row: Mapping[str, int]  # identifier -> cache row
    lengths: np.ndarray  # residues stored per row (as the cache's windowing keeps them)

    def place_pairs(self, protein_a: Sequence[str], protein_b: Sequence[str]) -> dict:
        """int64 tensors that place pairs of cached proteins in a batch.

        `cache_rows` (U,): the cache rows of the pairs' distinct proteins (A sides first,
        then B sides, each protein once); `index_a`, `index_b` (P,): each pair's positions
        in `cache_rows`, i.e. in the states `EmbeddingCache.gather(cache_rows)` returns.
        """
        proteins = list(dict.fromkeys(itertools.chain(protein_a, protein_b)))
        position = {protein: i for i, protein in enumerate(proteins)}
        return {
            "cache_rows": self.rows(proteins),
            "index_a": torch.tensor([position[p] for p in protein_a], dtype=torch.long),
            "index_b": torch.tensor([position[p] for p in protein_b], dtype=torch.long),
        }

    def rows(self, ids: Iterable[str]) -> torch.Tensor:
        """Cache rows (int64) of `ids`; a KeyError names the missing ones."""
        ids = list(ids)
        missing = [p for p in ids if p not in self.row]
        if missing:
            raise KeyError(f"not in the embedding cache: {missing[:5]}")
        return torch.tensor([self.row[p] for p in ids], dtype=torch.long)


@dataclass(frozen=True)
class TrunkIndex:
    """Where each encoder window sits in a trunk cache (`inference.trunk.TrunkCache`), keyed
    by its residues (`sequence_digest`). Small and picklable, like `CacheIndex`: the loader's
    workers turn a batch's windows into trunk rows."""

    row: Mapping[str, int]  # window key -> trunk row

    def rows(self, windows: Sequence[str]) -> torch.Tensor:
        """Trunk rows (int64) of the windows' residue strings; a KeyError names a missing one."""
        keys = [sequence_digest(window) for window in windows]
        missing = [w for w, key in zip(windows, keys, strict=True) if key not in self.row]
        if missing:
            raise KeyError(
                f"{len(missing)} window(s) not in the trunk cache, the first of "
                f"{len(missing[0])} residues starting {missing[0][:20]}"
            )
        return torch.tensor([self.row[key] for key in keys], dtype=torch.long)


class TokenBatches(BatchPlanner):
    """Batches of tokens for the encoder (`collate_pairs` dicts plus `weight`).

    `options.max_tokens` counts what the encoder runs: the batch's distinct sequences packed
    into rows of the longest (+2 for `<cls>`/`<eos>`), rows x width. A protein longer than a
    window is one crop per batch (random in training, centred otherwise) or all its windows
    (`windowing.mode == "all"`).

    `trunk_index`: LoRA on the top layers over a trunk cache holding every window of
    `source` (`TrunkCache.index`): batches also carry `trunk_rows`, and a training crop is one
    of the windows the cache holds (`Windowing.planned_window`).
    """

    def __init__(
        self,
        source: PairSource,
        options: BatchOptions | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        windowing: Windowing | None = None,
        trunk_index: TrunkIndex | None = None,
    ):
        options = options or BatchOptions()
        super().__init__(source, options, rank=rank, world_size=world_size, windowing=windowing)
        self.trunk_index = trunk_index

    def collate(self, index: int, pairs: list[Pair], weight: float) -> dict:
        # One crop per distinct sequence per batch, so a protein twice in a batch is encoded once;
        # the generator depends only on (seed, epoch, batch), so resumed runs crop the same.
        training = self.options.training
        rng = random.Random(f"{self.seed}:{self.epoch}:{index}") if training else None
        windowing, cropped = self.windowing, {}

        def crop_once(sequence: str) -> str:
            if windowing.mode == "all":
                return sequence  # cut into windows by collate_pairs
            if sequence not in cropped:
                if self.trunk_index is not None and rng is not None:
                    window = windowing.planned_window(len(sequence), rng)
                else:
                    (window,) = windowing.windows(len(sequence), rng)
                cropped[sequence] = sequence[window.start : window.stop]
            return cropped[sequence]

        cropped_pairs = [
            Pair(
                p.protein_a, p.protein_b, crop_once(p.sequence_a), crop_once(p.sequence_b), p.label
            )
            for p in pairs
        ]
        batch = collate_pairs(cropped_pairs, windowing=windowing, trunk_index=self.trunk_index)
        batch["weight"] = torch.full((len(pairs),), weight)
        return batch

    def cut(self, buffer: list[Pair]) -> list[list[Pair]]:
        """The budget counts what the encoder runs, the batch's distinct sequences packed into
        rows of its longest (`packing.pack_rows`, the model's own layout). Pairs are taken
        longest first; when the next one no longer fits, a few more are tried: the next
        longest, then the shortest of the buffer, which fill the gaps long rows leave.
        """
        windowing, options = self.windowing, self.options

        def tokens(sequence: str) -> list[int]:
            """Encoder rows of a sequence: its crop, or each of its windows (+2 each)."""
            return [w.stop - w.start + 2 for w in windowing.windows(len(sequence))]

        def longest_then_shortest(pair: Pair) -> tuple[int, int]:
            a, b = sum(tokens(pair.sequence_a)), sum(tokens(pair.sequence_b))
            return max(a, b), min(a, b)

        pending = sorted(buffer, key=longest_then_shortest, reverse=True)
        batches = []
        while pending:
            batch = _FillingBatch(options.max_tokens, options.max_pairs, tokens)
            index, misses = 0, 0
            while index < len(pending) and misses <= _PACK_TRIES:
                if batch.fits(pending[index]):
                    batch.add(pending.pop(index))
                else:
                    index, misses = index + 1, misses + 1
            for index in range(len(pending) - 1, max(len(pending) - 1 - _PACK_TRIES, -1), -1):
                if batch.fits(pending[index]):
                    batch.add(pending.pop(index))
            batches.append(batch.pairs)
        return batches


class _FillingBatch:
    """A token-budget batch being filled: its pairs and the tokens of its distinct sequences."""

    def __init__(self, max_tokens: int, max_pairs: int | None, tokens) -> None:
        self.max_tokens, self.max_pairs, self.tokens = max_tokens, max_pairs, tokens
        self.pairs: list[Pair] = []
        self.lengths: dict[str, list[int]] = {}  # distinct sequence -> its rows' tokens

    def fits(self, pair: Pair) -> bool:
        if self.max_pairs is not None and len(self.pairs) == self.max_pairs:
            return False
        new = [self.tokens(s) for s in {pair.sequence_a, pair.sequence_b} if s not in self.lengths]
        if not self.pairs or not new:
            return True
        candidate = [n for rows in (*self.lengths.values(), *new) for n in rows]
        # The sum is a lower bound of the packed count and rejects most candidates cheaply.
        return sum(candidate) <= self.max_tokens and packed_tokens(candidate) <= self.max_tokens

    def add(self, pair: Pair) -> None:
        self.pairs.append(pair)
        for sequence in (pair.sequence_a, pair.sequence_b):
            self.lengths.setdefault(sequence, self.tokens(sequence))


class CacheRowBatches(BatchPlanner):
    """Frozen-encoder batches: pairs of proteins in an embedding cache holding every protein
    of `source` (`cache_index`, `EmbeddingCache.index`), as `protein_a`, `protein_b`,
    `labels`, `weight` and the int64 `cache_rows`, `index_a`, `index_b` of
    `CacheIndex.place_pairs`: all `training.frozen.with_cached_states` needs, made here (in
    the loader's workers) rather than in the training loop.

    `options.max_tokens` counts the cross-attention's padded pair tokens, pairs x 2 x longest
    cached protein of the batch (both sides are padded to it). No crops of sequences: the
    cache holds each protein as scoring reads it, and the budget counts its stored length.
    Nothing is tokenised and no packing layout is planned (the encoder does not run).
    """

    def __init__(
        self,
        source: PairSource,
        cache_index: CacheIndex,
        options: BatchOptions | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        windowing: Windowing | None = None,
    ):
        options = options or BatchOptions()
        super().__init__(source, options, rank=rank, world_size=world_size, windowing=windowing)
        self.cache_index = cache_index

    def collate(self, index: int, pairs: list[Pair], weight: float) -> dict:
        """The pairs as cache rows, ids and labels; no sequence is touched.

        Training with crops (`windowing.mode == "crop"`) reads a random window of each long
        protein's cached states (`cache_starts`, `cache_window`), as encoder training crops
        its sequences; the states themselves are whatever the cache stored (all windows
        stitched, by default), so each residue keeps its whole-protein context.
        """
        protein_a = [p.protein_a for p in pairs]
        protein_b = [p.protein_b for p in pairs]
        batch = {"protein_a": protein_a, "protein_b": protein_b}
        batch.update(self.cache_index.place_pairs(protein_a, protein_b))
        if self.options.training and self.windowing.mode == "crop":
            rng = random.Random(f"{self.seed}:{self.epoch}:{index}")
            window = self.windowing.max_residues
            stored = self.cache_index.lengths[batch["cache_rows"].numpy()].tolist()
            starts = [rng.randint(0, n - window) if n > window else 0 for n in stored]
            batch["cache_starts"] = torch.tensor(starts, dtype=torch.long)
            batch["cache_window"] = window
        if all(p.label is not None for p in pairs):
            batch["labels"] = torch.tensor([p.label for p in pairs], dtype=torch.float32)
        batch["weight"] = torch.full((len(pairs),), weight)
        return batch

    def cut(self, buffer: list[Pair]) -> list[list[Pair]]:
        """Runs of the buffer sorted by longest cached protein, longest first.

        A run's first pair holds its longest protein, so a run of n pairs costs n x 2 x
        that length in padded pair tokens: the batch size is known from its first pair, and
        no pair is examined twice (the encoder's packing search is O(n^2) per batch).
        """
        row, stored = self.cache_index.row, self.cache_index.lengths.tolist()
        if self.options.training and self.windowing.mode == "crop":
            stored = [min(n, self.windowing.max_residues) for n in stored]
        try:
            widths = [max(stored[row[p.protein_a]], stored[row[p.protein_b]]) for p in buffer]
        except KeyError as error:
            raise KeyError(f"not in the embedding cache: {error.args[0]!r}") from None
        order = sorted(range(len(buffer)), key=widths.__getitem__, reverse=True)
        batches, start = [], 0
        max_tokens, max_pairs = self.options.max_tokens, self.options.max_pairs
        while start < len(order):
            size = max(max_tokens // (2 * widths[order[start]]), 1)
            if max_pairs is not None:
                size = min(size, max_pairs)
            batches.append([buffer[i] for i in order[start : start + size]])
            start += size
        return batches
