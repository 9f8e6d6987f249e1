"""The one planner under both batchers: which pairs form each batch, and which rank takes it.

    batches = TokenBatches(source, BatchOptions(seed=0, max_tokens=16384), rank=r, world_size=n)
    for epoch in range(start_epoch, epochs):
        batches.set_epoch(epoch)
        for batch in batches:        # a dict the model reads + "weight" (1.0 real, 0.0 padding)
            ...
        state = batches.state_dict() # save with the checkpoint; load_state_dict() resumes

`BatchPlanner` streams an epoch's pairs through a shuffle buffer, cuts each sort buffer of
them into batches (the batcher's `cut`: a token budget, or a pair-token budget over cached
proteins) and deals the batches out to the ranks; the batcher's `collate` turns a batch's
pairs into tensors (`data.batching.TokenBatches`, `data.batching.CacheRowBatches`).

Distributed training: every rank reads the same shuffled stream and forms the same global
sequence of batches, and rank r takes global batches r, r + world_size, ... So the ranks'
batches are disjoint and together cover every pair once per epoch, and every rank takes the
same number of steps: when the number of batches does not divide by world_size, the ranks
left short get one padding batch (a copy of the epoch's last batch with `weight` 0.0), so the
trainer must weight the loss (and metrics) by `batch["weight"]`. We don't split the stream
with `datasets.distributed.split_dataset_by_node`: its shards hold the same number of pairs,
but batches formed by a token budget would then differ in number between ranks, and the
ranks would have to talk to agree on a step count. Every rank reads the whole pair file
(example-level `split_dataset_by_node` does too); docs/benchmarks-history.md has what a pass
costs (data loading).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ppi_dist.data.pairs import Pair, PairSource
from ppi_dist.models.windows import Windowing


@dataclass(frozen=True)
class BatchOptions:
    """How an epoch's pairs become batches; the same on every rank.

    Args:
        seed: with the epoch, fixes the shuffle, the batches and the random crops.
        training: shuffle and crop at random; otherwise file order and centred crops.
        max_tokens: token budget per batch, counted as the step runs it (each batcher says
            how). Batches are formed from a length-sorted buffer of `sort_buffer` pairs,
            then shuffled. Ignored when `batch_size` is given.
        max_pairs: optional cap on pairs per token-budget batch.
        batch_size: fixed-size batches of this many pairs, in stream order (no sorting).
        sort_buffer: pairs sorted by length together.
        shuffle_buffer: pairs in the shuffle buffer (training). Files sorted by label (the
            yeast DIP splits are) need a buffer about as large as the file to mix classes.
    """

    seed: int = 0
    training: bool = True
    max_tokens: int = 16384
    max_pairs: int | None = None
    batch_size: int | None = None
    sort_buffer: int = 4096
    shuffle_buffer: int = 100_000


def buffer_shuffle(pairs: Iterable, buffer_size: int, rng: random.Random) -> Iterator:
    """Approximate shuffle with a bounded buffer (the algorithm of `datasets`' shuffle).

    Ours because `IterableDataset.shuffle` is much slower per pass over a large pair file
    (docs/benchmarks-history.md, data loading).
    """
    buffer: list = []
    for pair in pairs:
        if len(buffer) < buffer_size:
            buffer.append(pair)
            continue
        i = rng.randrange(buffer_size)
        yield buffer[i]
        buffer[i] = pair
    rng.shuffle(buffer)
    yield from buffer


class BatchPlanner:
    """One rank's batches of a pair source, epoch after epoch; a batcher adds `cut` (a sort
    buffer of pairs -> batches) and `collate` (a batch's pairs -> the dict the model reads).

    `windowing`: how a protein longer than one window is read (`models.windows`); None:
    crops of `source.max_residues`. Every rank yields the same number of batches per epoch
    (see the module docstring). After a complete pass the iterator moves to the next epoch
    by itself; `set_epoch` sets it explicitly. `state_dict()` / `load_state_dict()` resume at
    the next batch.
    """

    def __init__(
        self,
        source: PairSource,
        options: BatchOptions,
        *,
        rank: int = 0,
        world_size: int = 1,
        windowing: Windowing | None = None,
    ):
        self.windowing = windowing or Windowing(source.max_residues, 0, "crop")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        window = self.windowing.max_residues
        if options.batch_size is None and options.max_tokens < 2 * (window + 2):
            raise ValueError(
                f"max_tokens={options.max_tokens} cannot hold one pair of two {window}-"
                f"residue sequences; use at least {2 * (window + 2)}"
            )
        self.source, self.options, self.rank, self.world_size = source, options, rank, world_size
        self.epoch = 0
        self.batches_done = 0  # global batches of this epoch taken by all ranks together

    @property
    def seed(self) -> int:
        return self.options.seed

    def cut(self, buffer: list[Pair]) -> list[list[Pair]]:
        """A sort buffer's pairs as token-budget batches (the batcher's own budget)."""
        raise NotImplementedError

    def collate(self, index: int, pairs: list[Pair], weight: float) -> dict:
        """Global batch `index` of the current epoch as the dict the model reads."""
        raise NotImplementedError

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
        for index, pairs, weight in self.plan():
            yield self.collate(index, pairs, weight)

    def plan(self) -> Iterator[tuple[int, list[Pair], float]]:
        """This rank's (global index, pairs, weight) in order; the state moves as they go."""
        start, world, rank = self.batches_done, self.world_size, self.rank
        taken = 0
        last = None
        total = 0
        for index, pairs in enumerate(self._global_batches(self.epoch)):
            total, last = index + 1, (index, pairs)
            if index < start or (index - start) % world != rank:
                continue
            taken += 1
            self.batches_done = start + taken * world
            yield index, pairs, 1.0
        # Ranks short of a batch in the last round take a weightless copy of the last one.
        if last is not None and taken < math.ceil(max(total - start, 0) / world):
            yield *last, 0.0
        self.epoch, self.batches_done = self.epoch + 1, 0

    def count_batches(self) -> int:
        """Steps every rank takes in the current epoch (one pass over the lengths)."""
        total = sum(1 for _ in self._global_batches(self.epoch))
        return math.ceil(max(total - self.batches_done, 0) / self.world_size)

    def _global_batches(self, epoch: int) -> Iterator[list[Pair]]:
        """All ranks' batches of an epoch, in order; the same on every rank."""
        options = self.options
        pairs: Iterable[Pair] = self.source.pair_rows()
        rng = random.Random(f"{self.seed}:{epoch}:order")
        if options.training:
            pairs = buffer_shuffle(pairs, options.shuffle_buffer, rng)
        if options.batch_size is not None:
            yield from _fixed_size(pairs, options.batch_size)
            return
        buffer: list[Pair] = []
        for pair in pairs:
            buffer.append(pair)
            if len(buffer) == options.sort_buffer:
                yield from self._shuffled_cut(buffer, rng)
                buffer = []
        if buffer:
            yield from self._shuffled_cut(buffer, rng)

    def _shuffled_cut(self, buffer: list[Pair], rng: random.Random) -> list[list[Pair]]:
        batches = self.cut(buffer)
        if self.options.training:
            rng.shuffle(batches)
        return batches


def _fixed_size(pairs: Iterable[Pair], size: int) -> Iterator[list[Pair]]:
    batch: list[Pair] = []
    for pair in pairs:
        batch.append(pair)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
