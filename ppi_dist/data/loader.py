"""`BatchLoader`: a rank's batches (`data.batching`) prepared off the training loop, in workers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ppi_dist.data.planner import BatchPlanner


class BatchLoader:
    """A batcher's batches prepared off the training loop, in `DataLoader` worker processes.

    Args:
        batches: the rank's batcher (`TokenBatches`, `CacheRowBatches`); the loader owns its
            position from now on.
        num_workers: worker processes preparing batches (read, shuffle, plan, crop,
            tokenise, packing layout; frozen: cache rows). 0: in the calling process,
            exactly the batcher.
            With n workers, each plans the whole epoch (cheap) and collates every n-th batch;
            the `DataLoader` returns them in order, so the batches are the same for any n.
        pin_memory: pin batches (page-locked) for fast `non_blocking` copies; default: when
            CUDA is available.
        prefetch_factor: batches each worker prepares ahead.
        persistent_workers: keep the workers between epochs (they are told the epoch and
            position through shared memory when an epoch starts).

    Use::

        loader = BatchLoader(batches, num_workers=2)
        loader.load_state_dict(state)      # optional: resume
        for epoch in ...:
            loader.set_epoch(epoch)
            for batch in loader:           # what the batcher yields (+ pinned)
                ...
                state = loader.state_dict()  # position after the LAST batch handed out

    `state_dict()` counts the batches this loader handed to the caller, never the ones the
    workers prepared ahead, so a checkpoint taken after a step resumes at the next batch.
    It is the batcher's `state_dict()`, interchangeable with it, the same on every rank.
    """

    def __init__(
        self,
        batches: BatchPlanner,
        *,
        num_workers: int = 1,
        pin_memory: bool | None = None,
        prefetch_factor: int = 4,
        persistent_workers: bool = True,
    ):
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.batches = batches
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        # (epoch, batches_done) the workers start an epoch from; shared with them.
        self._start = torch.zeros(2, dtype=torch.long).share_memory_()
        self._loader: torch.utils.data.DataLoader | None = None

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state)

    def count_batches(self) -> int:
        return self.batches.count_batches()

    def close(self) -> None:
        """Stop the workers now (they stop anyway when the loader is garbage collected)."""
        self._loader = None

    def __iter__(self) -> Iterator[dict]:
        if self.num_workers == 0:
            for batch in self.batches:
                yield _pinned(batch) if self.pin_memory else batch
            return
        self.batches.source.validate()  # here, once: errors in this process; workers inherit
        epoch = self.batches.epoch
        self._start[0], self._start[1] = epoch, self.batches.batches_done
        if self._loader is None:
            self._loader = torch.utils.data.DataLoader(
                _WorkerStream(self.batches, self._start),
                batch_size=None,
                collate_fn=_as_is,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                prefetch_factor=self.prefetch_factor,
                persistent_workers=self.persistent_workers,
            )
        for batch, (batch_epoch, batches_done) in self._loader:
            self.batches.epoch, self.batches.batches_done = batch_epoch, batches_done
            yield batch
        self.batches.epoch, self.batches.batches_done = epoch + 1, 0


class _WorkerStream(torch.utils.data.IterableDataset):
    """In a worker: this worker's share of the epoch's batches, each with the state after it."""

    def __init__(self, batches: BatchPlanner, start: torch.Tensor):
        self.batches, self.start = batches, start

    def __iter__(self) -> Iterator[tuple[dict, tuple[int, int]]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        batches = self.batches  # this process's copy
        batches.epoch, batches.batches_done = int(self.start[0]), int(self.start[1])
        for k, (index, pairs, weight) in enumerate(batches.plan()):
            if k % workers == worker:
                state = (batches.epoch, batches.batches_done)
                yield batches.collate(index, pairs, weight), state


def _as_is(item: Any) -> Any:
    return item


def _pinned(batch: dict) -> dict:
    return {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
