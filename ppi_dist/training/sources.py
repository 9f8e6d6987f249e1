"""A run's data: validated pair sources of each split, and this rank's training batches.

Without a `train_file` the run trains on the embedded synthetic task (`data.synthetic`),
written once per machine into output_dir/synthetic_data.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator

from ppi_dist.checks import check_can_rank
from ppi_dist.data.batching import CacheIndex, PairBatches
from ppi_dist.data.loader import BatchLoader
from ppi_dist.data.pairs import Columns, PairSource
from ppi_dist.data.synthetic import synthetic_task_paths, write_synthetic_task
from ppi_dist.training.config import TrainConfig


def make_sources(config: TrainConfig, accelerator: Accelerator) -> dict[str, PairSource]:
    """Validated pair sources of train/valid(/test); the synthetic task when none is given."""
    data = config.data
    files = {"train": data.train_file, "valid": data.valid_file, "test": data.test_file}
    fasta = data.fasta
    if data.train_file is None:  # the embedded default
        paths = prepare_synthetic_task(config, accelerator)
        files, fasta = {k: str(paths[k]) for k in files}, str(paths["fasta"])
    columns = Columns(data.column_a, data.column_b, label=data.column_label)
    reading = {
        "columns": columns,
        "max_residues": config.model.secai.max_residues,
        "skip_bad_rows": data.skip_bad_rows,
        "allow_contradictory_labels": data.allow_contradictory_labels,
    }
    sources = {}
    for split, path in files.items():
        if path is not None:
            sources[split] = PairSource(path, fasta, labeled=True, **reading)
            report = sources[split].validate()
            accelerator.print(f"{split}: {report.summary()}")
    valid = sources["valid"].report
    # Nothing can be chosen on a validation set that cannot rank: stop before training.
    check_can_rank(
        f"valid_file {files['valid']}",
        valid.classes[1],
        valid.classes[0],
        "give a validation file with more pairs of each class (`ppi-dist split` makes one)",
    )
    return sources


def prepare_synthetic_task(config: TrainConfig, accelerator: Accelerator) -> dict[str, Path]:
    """The trainer's default data: written once per machine (the folder may be node-local),
    to temporary names renamed into place; the other processes wait, then read it."""
    out_dir = Path(config.run.output_dir) / "synthetic_data"
    if accelerator.is_local_main_process:
        write_synthetic_task(
            out_dir,
            seed=config.optimization.seed,
            train_pairs=config.data.synthetic_train_pairs,
            eval_pairs=config.data.synthetic_eval_pairs,
        )
    accelerator.wait_for_everyone()
    return synthetic_task_paths(out_dir)


def training_batches(
    source: PairSource,
    config: TrainConfig,
    accelerator: Accelerator,
    cache_index: CacheIndex | None = None,
) -> BatchLoader:
    """This rank's training batches, prepared in loader workers (`data_workers`). With a
    frozen encoder's `cache_index` the workers hand out cache rows (no tokens), budgeted in
    cross-attention tokens."""
    data = config.data
    batches = PairBatches(
        source,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        seed=config.optimization.seed,
        training=True,
        max_tokens=data.max_tokens,
        max_pairs=data.max_pairs,
        batch_size=data.batch_size,
        sort_buffer=data.sort_buffer,
        shuffle_buffer=data.shuffle_buffer,
        cache_index=cache_index,
        windowing=config.model.secai.windowing("train"),
    )
    workers = data.data_workers
    return BatchLoader(
        batches, num_workers=2 * torch.cuda.is_available() if workers is None else workers
    )
