"""LoRA on the top layers: the trunk cache as the source of the lower layers' states.

With `lora_layers: N` below the encoder's depth, every window of every protein is run once
through the layers below LoRA (`open_trunk_cache`), and each training step gathers its
windows' cached states (`with_trunk_states`) and runs only the top N layers. Validation and
final scoring read the same cache through the model's `trunk` (`inference.trunk`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import torch
from accelerate import Accelerator

from ppi_dist.data.batching import batch_to_device
from ppi_dist.data.pairs import Pair
from ppi_dist.inference.trunk import TrunkCache
from ppi_dist.models.secai import SECAI
from ppi_dist.models.windows import Windowing
from ppi_dist.training.frozen import keep_on_gpu_with_room, sequences_of_splits


def open_trunk_cache(
    model: SECAI,
    splits: Iterable[Iterable[Pair]],
    directory: str | Path,
    accelerator: Accelerator,
    windowing: Windowing,
    dtype: str,
) -> TrunkCache:
    """The trunk states of every window of every split's proteins, built (or reused, or a
    stopped build resumed) by the main process on the accelerator's device; the other
    processes wait, then memory-map the same folder. Kept on the GPU where it fits."""
    directory, started = Path(directory), time.perf_counter()
    if accelerator.is_main_process:
        sequences = sequences_of_splits(splits)
        model.to(accelerator.device)
        TrunkCache.build(model, sequences, directory, windowing, dtype=dtype, progress=True)
    accelerator.wait_for_everyone()
    trunk = TrunkCache.open(directory)
    where = keep_on_gpu_with_room(trunk, torch.device(accelerator.device))
    accelerator.print(
        f"trunk cache: {len(trunk):,} windows through {trunk.settings.depth} layers, "
        f"{trunk.nbytes / 2**20:,.0f} MiB {trunk.settings.dtype} in {directory} "
        f"({time.perf_counter() - started:.0f} s){where}"
    )
    return trunk


def with_trunk_states(batch: dict, trunk: TrunkCache, device: torch.device) -> dict:
    """A training batch with its windows' trunk states (`trunk_states`, flat tokens, the
    cache's dtype) beside its tokens, every tensor on `device`."""
    rows = batch["trunk_rows"]
    rest = {k: v for k, v in batch.items() if k != "trunk_rows"}
    return {**batch_to_device(rest, device), "trunk_states": trunk.token_states(rows, device)}
