"""Batches the model reads, from a pair source: each distinct sequence once, in a token budget.

A batch holds each distinct sequence once (`input_ids`, `attention_mask`) and, per pair,
the rows of its two proteins (`index_a`, `index_b`): the encoder runs once on the distinct
sequences and the pairs pick their states from there. It also carries the encoder's packed
layout (`pack_*`, see `models.packing.packing_layout`), computed here on the CPU.

    batches = PairBatches(source, rank=rank, world_size=world_size, seed=0, training=True,
                          max_tokens=16384)
    for epoch in range(start_epoch, epochs):
        batches.set_epoch(epoch)
        for batch in batches:        # collate_pairs dict + "weight" (1.0 real pair, 0.0 padding)
            ...
        state = batches.state_dict() # save with the checkpoint; load_state_dict() resumes

`loader.BatchLoader` prepares the same batches in worker processes. Frozen-encoder training
(`PairBatches(..., cache_index=cache.index)`) gets batches of embedding-cache rows instead:
no crops, no tokens, no layout.

Distributed training: every rank reads the same shuffled stream and forms the same global
sequence of batches, and rank r takes global batches r, r + world_size, ... So the ranks'
batches are disjoint and together cover every pair once per epoch, and every rank takes the
same number of steps: when the number of batches does not divide by world_size, the ranks
left short get one padding batch (a copy of the epoch's last batch with `weight` 0.0), so the
trainer must weight the loss (and metrics) by `batch["weight"]`. We don't split the stream
with `datasets.distributed.split_dataset_by_node`: its shards hold the same number of pairs,
but batches formed by a token budget would then differ in number between ranks, and the
ranks would have to talk to agree on a step count. Every rank reads the whole pair file
(example-level `split_dataset_by_node` does too); BENCHMARKS.md has what a pass costs.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ppi_dist.data.pairs import Pair, PairSource
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
    into int64 cache rows (`pair_rows`) and the training loop only gathers on the device.
    """

    row: Mapping[str, int]  # identifier -> cache row
    lengths: np.ndarray  # residues stored per row (as the cache's windowing keeps them)

    def pair_rows(self, protein_a: Sequence[str], protein_b: Sequence[str]) -> dict:
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


def buffer_shuffle(rows: Iterable, buffer_size: int, rng: random.Random) -> Iterator:
    """Approximate shuffle with a bounded buffer (the algorithm of `datasets`' shuffle).

    Ours because `IterableDataset.shuffle` is much slower per pass over a large pair file
    (BENCHMARKS.md, the data loader).
    """
    buffer: list = []
    for row in rows:
        if len(buffer) < buffer_size:
            buffer.append(row)
            continue
        i = rng.randrange(buffer_size)
        yield buffer[i]
        buffer[i] = row
    rng.shuffle(buffer)
    yield from buffer


class PairBatches:
    """Batches of one rank, as `collate_pairs` dicts plus `weight` (1.0 real, 0.0 padding).

    Args:
        source: a `PairSource` (validated on first use).
        rank, world_size: this process and the number of processes.
        seed: with the epoch, fixes the shuffle, the batches and the random crops.
        training: shuffle and crop at random; otherwise file order and centred crops.
        windowing: how a protein longer than one window is read (`models.windows`): one
            crop per batch (random in training, centred otherwise) or all its windows.
            None: crops of `source.max_residues`.
        max_tokens: token budget per batch, counted as the step runs it. With the encoder:
            the distinct sequences packed into rows of the longest (+2 for `<cls>`/`<eos>`),
            rows x width. Frozen (`cache_index`): the cross-attention's padded pair tokens,
            pairs x 2 x longest cached protein of the batch (both sides are padded to it).
            Batches are formed from a length-sorted buffer of `sort_buffer` pairs, then
            shuffled. Ignored when `batch_size` is given.
        max_pairs: optional cap on pairs per token-budget batch.
        batch_size: fixed-size batches of this many pairs, in stream order (no sorting).
        sort_buffer: pairs sorted by length together.
        shuffle_buffer: pairs in the shuffle buffer (training). Files sorted by label (the
            yeast DIP splits are) need a buffer about as large as the file to mix classes.
        cache_index: frozen-encoder mode, for an embedding cache holding every protein of
            `source` (`EmbeddingCache.index`). Batches are then `protein_a`, `protein_b`,
            `labels`, `weight` and the int64 `cache_rows`, `index_a`, `index_b` of
            `CacheIndex.pair_rows`: all `training.frozen.with_cached_states` needs, made here
            (in the loader's workers) rather than in the training loop. No crops: the cache
            holds each protein as scoring reads it, and the budget counts its stored length.
            Nothing is tokenised and no packing layout is planned (the encoder does not run).
        trunk_index: LoRA on the top layers over a trunk cache holding every window of
            `source` (`TrunkCache.index`): batches also carry `trunk_rows`, and a training
            crop is one of the windows the cache holds (`Windowing.planned_window`).

    Every rank yields the same number of batches per epoch (see the module docstring).
    After a complete pass the iterator moves to the next epoch by itself; `set_epoch`
    sets it explicitly. `state_dict()` / `load_state_dict()` resume at the next batch.
    """

    def __init__(
        self,
        source: PairSource,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        training: bool = True,
        max_tokens: int = 16384,
        max_pairs: int | None = None,
        batch_size: int | None = None,
        sort_buffer: int = 4096,
        shuffle_buffer: int = 100_000,
        cache_index: CacheIndex | None = None,
        windowing: Windowing | None = None,
        trunk_index: TrunkIndex | None = None,
    ):
        self.windowing = windowing or Windowing(source.max_residues, 0, "crop")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        window = self.windowing.max_residues
        if batch_size is None and max_tokens < 2 * (window + 2):
            raise ValueError(
                f"max_tokens={max_tokens} cannot hold one pair of two {window}-"
                f"residue sequences; use at least {2 * (window + 2)}"
            )
        self.source, self.rank, self.world_size, self.seed = source, rank, world_size, seed
        self.training, self.max_tokens, self.max_pairs = training, max_tokens, max_pairs
        self.batch_size, self.sort_buffer, self.shuffle_buffer = (
            batch_size,
            sort_buffer,
            shuffle_buffer,
        )
        self.cache_index, self.trunk_index = cache_index, trunk_index
        self.epoch = 0
        self.batches_done = 0  # global batches of this epoch taken by all ranks together

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.batches_done = epoch, 0

    def state_dict(self) -> dict:
        """The same on every rank; resuming on a different world size works too."""
        return {"epoch": self.epoch, "batches_done": self.batches_done, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"state was saved with seed {state['seed']}, not {self.seed}")
        self.epoch, self.batches_done = state["epoch"], state["batches_done"]

    def __iter__(self) -> Iterator[dict]:
        for index, rows, weight in self._plan():
            yield self._collate(index, rows, weight)

    def _plan(self) -> Iterator[tuple[int, list[Pair], float]]:
        """This rank's (global index, rows, weight) in order; the state moves as they go."""
        start, world, rank = self.batches_done, self.world_size, self.rank
        taken = 0
        last = None
        total = 0
        for index, rows in enumerate(self._global_batches(self.epoch)):
            total, last = index + 1, (index, rows)
            if index < start or (index - start) % world != rank:
                continue
            taken += 1
            self.batches_done = start + taken * world
            yield index, rows, 1.0
        # Ranks short of a batch in the last round take a weightless copy of the last one.
        if last is not None and taken < math.ceil(max(total - start, 0) / world):
            yield *last, 0.0
        self.epoch, self.batches_done = self.epoch + 1, 0

    def count_batches(self) -> int:
        """Steps every rank takes in the current epoch (one pass over the lengths)."""
        total = sum(1 for _ in self._global_batches(self.epoch))
        return math.ceil(max(total - self.batches_done, 0) / self.world_size)

    def _collate(self, index: int, rows: list[Pair], weight: float) -> dict:
        if self.cache_index is not None:
            return self._collate_cached(index, rows, weight)
        # One crop per distinct sequence per batch, so a protein twice in a batch is encoded once;
        # the generator depends only on (seed, epoch, batch), so resumed runs crop the same.
        rng = random.Random(f"{self.seed}:{self.epoch}:{index}") if self.training else None
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

        pairs = [
            Pair(
                r.protein_a, r.protein_b, crop_once(r.sequence_a), crop_once(r.sequence_b), r.label
            )
            for r in rows
        ]
        batch = collate_pairs(pairs, windowing=windowing, trunk_index=self.trunk_index)
        batch["weight"] = torch.full((len(pairs),), weight)
        return batch

    def _collate_cached(self, index: int, rows: list[Pair], weight: float) -> dict:
        """Frozen mode: the pairs as cache rows, ids and labels; no sequence is touched.

        Training with crops (`windowing.mode == "crop"`) reads a random window of each long
        protein's cached states (`cache_starts`, `cache_window`), as encoder training crops
        its sequences; the states themselves are whatever the cache stored (all windows
        stitched, by default), so each residue keeps its whole-protein context.
        """
        protein_a = [r.protein_a for r in rows]
        protein_b = [r.protein_b for r in rows]
        batch = {"protein_a": protein_a, "protein_b": protein_b}
        batch.update(self.cache_index.pair_rows(protein_a, protein_b))
        if self.training and self.windowing.mode == "crop":
            rng = random.Random(f"{self.seed}:{self.epoch}:{index}")
            window = self.windowing.max_residues
            stored = self.cache_index.lengths[batch["cache_rows"].numpy()].tolist()
            starts = [rng.randint(0, n - window) if n > window else 0 for n in stored]
            batch["cache_starts"] = torch.tensor(starts, dtype=torch.long)
            batch["cache_window"] = window
        if all(r.label is not None for r in rows):
            batch["labels"] = torch.tensor([r.label for r in rows], dtype=torch.float32)
        batch["weight"] = torch.full((len(rows),), weight)
        return batch

    def _global_batches(self, epoch: int) -> Iterator[list[Pair]]:
        """All ranks' batches of an epoch, in order; the same on every rank."""
        rows: Iterable[Pair] = self.source.pair_rows()
        rng = random.Random(f"{self.seed}:{epoch}:order")
        if self.training:
            rows = buffer_shuffle(rows, self.shuffle_buffer, rng)
        if self.batch_size is not None:
            batch: list[Pair] = []
            for row in rows:
                batch.append(row)
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch
            return
        buffer: list[Pair] = []
        for row in rows:
            buffer.append(row)
            if len(buffer) == self.sort_buffer:
                yield from self._pack(buffer, rng)
                buffer = []
        if buffer:
            yield from self._pack(buffer, rng)

    def _pack(self, buffer: list[Pair], rng: random.Random) -> list[list[Pair]]:
        """Token-budget batches from the buffer sorted by length, then shuffled."""
        frozen = self.cache_index is not None
        batches = self._pair_runs(buffer) if frozen else self._encoder_runs(buffer)
        if self.training:
            rng.shuffle(batches)
        return batches

    def _pair_runs(self, buffer: list[Pair]) -> list[list[Pair]]:
        """Frozen mode: runs of the buffer sorted by longest cached protein, longest first.

        A run's first pair holds its longest protein, so a run of n pairs costs n x 2 x
        that length in padded pair tokens: the batch size is known from its first pair, and
        no pair is examined twice (the encoder's packing search is O(n^2) per batch).
        """
        row, stored = self.cache_index.row, self.cache_index.lengths.tolist()
        if self.training and self.windowing.mode == "crop":
            stored = [min(n, self.windowing.max_residues) for n in stored]
        try:
            widths = [max(stored[row[r.protein_a]], stored[row[r.protein_b]]) for r in buffer]
        except KeyError as error:
            raise KeyError(f"not in the embedding cache: {error.args[0]!r}") from None
        order = sorted(range(len(buffer)), key=widths.__getitem__, reverse=True)
        batches, start = [], 0
        while start < len(order):
            size = max(self.max_tokens // (2 * widths[order[start]]), 1)
            if self.max_pairs is not None:
                size = min(size, self.max_pairs)
            batches.append([buffer[i] for i in order[start : start + size]])
            start += size
        return batches

    def _encoder_runs(self, buffer: list[Pair]) -> list[list[Pair]]:
        """With the encoder: the budget counts what the encoder runs, the batch's distinct
        sequences packed into rows of its longest (`packing.pack_rows`, the model's own
        layout). Pairs are taken longest first; when the next one no longer fits, a few more
        are tried: the next longest, then the shortest of the buffer, which fill the gaps
        long rows leave.
        """
        windowing = self.windowing

        def tokens(sequence: str) -> list[int]:
            """Encoder rows of a sequence: its crop, or each of its windows (+2 each)."""
            return [w.stop - w.start + 2 for w in windowing.windows(len(sequence))]

        def longest_then_shortest(row: Pair) -> tuple[int, int]:
            a, b = sum(tokens(row.sequence_a)), sum(tokens(row.sequence_b))
            return max(a, b), min(a, b)

        pending = sorted(buffer, key=longest_then_shortest, reverse=True)
        batches = []
        while pending:
            batch = _FillingBatch(self.max_tokens, self.max_pairs, tokens)
            index, misses = 0, 0
            while index < len(pending) and misses <= _PACK_TRIES:
                if batch.fits(pending[index]):
                    batch.add(pending.pop(index))
                else:
                    index, misses = index + 1, misses + 1
            for index in range(len(pending) - 1, max(len(pending) - 1 - _PACK_TRIES, -1), -1):
                if batch.fits(pending[index]):
                    batch.add(pending.pop(index))
            batches.append(batch.rows)
        return batches


class _FillingBatch:
    """A token-budget batch being filled: its pairs and the tokens of its distinct sequences."""

    def __init__(self, max_tokens: int, max_pairs: int | None, tokens) -> None:
        self.max_tokens, self.max_pairs, self.tokens = max_tokens, max_pairs, tokens
        self.rows: list[Pair] = []
        self.lengths: dict[str, list[int]] = {}  # distinct sequence -> its rows' tokens

    def fits(self, row: Pair) -> bool:
        if self.max_pairs is not None and len(self.rows) == self.max_pairs:
            return False
        new = [self.tokens(s) for s in {row.sequence_a, row.sequence_b} if s not in self.lengths]
        if not self.rows or not new:
            return True
        candidate = [n for rows in (*self.lengths.values(), *new) for n in rows]
        # The sum is a lower bound of the packed count and rejects most candidates cheaply.
        return sum(candidate) <= self.max_tokens and packed_tokens(candidate) <= self.max_tokens

    def add(self, row: Pair) -> None:
        self.rows.append(row)
        for sequence in (row.sequence_a, row.sequence_b):
            self.lengths.setdefault(sequence, self.tokens(sequence))
