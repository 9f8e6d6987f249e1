"""Frozen-encoder training: the embedding cache as the source of the encoder's states.

With `freeze_encoder: true` the encoder never changes, so every protein of every split is
encoded once (`open_training_cache`) and each step gathers its batch's states from the cache
(`with_cached_states`) instead of running ESM-2; only cross-attention and head train.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from ppi_dist.data.batching import batch_to_device
from ppi_dist.data.pairs import Pair, sequences_of
from ppi_dist.inference.cache import EmbeddingCache, covering_cache
from ppi_dist.inference.scoring import encode_proteins
from ppi_dist.inference.trunk import TrunkCache
from ppi_dist.models.packing import LAYOUT_FIELDS
from ppi_dist.models.windows import Windowing


def open_training_cache(
    model: nn.Module,
    splits: Iterable[Iterable[Pair]],
    directory: str | Path,
    accelerator: Accelerator,
    windowing: Windowing,
) -> EmbeddingCache:
    """Every protein of every split encoded once, by the main process, on the accelerator's
    device; the other processes wait, then memory-map the same folder.

    A cache already in the folder is reused when it holds every protein needed, from the
    same encoder weights and windowing (`inference.cache.covering_cache`). The cache reads
    proteins as scoring does (`scoring_windows`), so training, validation and test see the
    same states, and it is encoded as scoring encodes (`inference.scoring.encode_proteins`:
    its autocast, fp16), so the run's final validation and test scoring can read it
    instead of encoding again.
    """
    directory, started = Path(directory), time.perf_counter()
    if accelerator.is_main_process:
        sequences = sequences_of_splits(splits)
        if covering_cache(directory, model, sequences, windowing) is None:
            model.to(accelerator.device)  # encoded where the run computes
            encode_proteins(
                model, sequences, directory=directory, windowing=windowing, progress=True
            )
    accelerator.wait_for_everyone()
    cache = EmbeddingCache.open(directory)
    where = keep_on_gpu_with_room(cache, torch.device(accelerator.device))
    seconds = time.perf_counter() - started
    accelerator.print(
        f"embedding cache: {len(cache):,} proteins, {cache.nbytes / 2**20:,.0f} "
        f"MiB in {directory} ({seconds:.0f} s){where}"
    )
    return cache


def sequences_of_splits(splits: Iterable[Iterable[Pair]]) -> dict[str, str]:
    """Every protein of every split, by name: what a run's caches encode."""
    sequences = {}
    for pairs in splits:
        sequences.update(sequences_of(pairs))
    return sequences


def keep_on_gpu_with_room(cache: EmbeddingCache | TrunkCache, device: torch.device) -> str:
    """Moves the cache's states to `device` when it is a GPU with room for them (each step
    then gathers its batch there); what to add to the cache's log line."""
    if device.type != "cuda" or cache.nbytes >= 0.4 * torch.cuda.mem_get_info(device)[0]:
        return ""
    cache.keep_on(device)
    return "; kept on the GPU"


def with_cached_states(batch: dict, cache: EmbeddingCache, device: torch.device) -> dict:
    """A training batch with its proteins' cached residue states, every tensor on `device`.

    Frozen-encoder batches (`data.batching.CacheRowBatches`) already carry
    `cache_rows`, `index_a` and `index_b`, made in the loader's workers: here they are copied
    and the states gathered, nothing per pair runs in Python. A batch of tokens
    (`collate_pairs`) is indexed here from its protein ids, and its tokens and packing layout
    are dropped (the encoder does not run). The states keep the cache's dtype (see
    `EmbeddingCache.gather`).
    """
    if "cache_rows" not in batch:
        unused = {"input_ids", "attention_mask", *LAYOUT_FIELDS}
        batch = {k: v for k, v in batch.items() if k not in unused}
        batch.update(cache.index.place_pairs(batch["protein_a"], batch["protein_b"]))
    states, states_mask = cache.gather(
        batch["cache_rows"],
        dtype=None,
        device=device,
        starts=batch.get("cache_starts"),
        window=batch.get("cache_window"),
    )
    cache_fields = {"cache_rows", "cache_starts", "cache_window"}
    rest = {k: v for k, v in batch.items() if k not in cache_fields}
    return {**batch_to_device(rest, device), "states": states, "states_mask": states_mask}
