"""A run's data: validated pair sources of each split, and this rank's training batches.

Without a `train_file` the run trains on the embedded synthetic task (`data.synthetic`),
written once per machine into output_dir/synthetic_data. With `valid_fraction` instead of a
`valid_file`, the training file is split into train and validation first (output_dir/split).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from accelerate import Accelerator

from ppi_dist.checks import check_can_rank
from ppi_dist.data.batching import CacheIndex, PairBatches, TrunkIndex
from ppi_dist.data.loader import BatchLoader
from ppi_dist.data.pairs import Columns, PairSource
from ppi_dist.data.split import split_file
from ppi_dist.data.synthetic import synthetic_task_paths, write_synthetic_task
from ppi_dist.errors import ConfigError
from ppi_dist.files import read_json, write_text_atomic
from ppi_dist.training.config import TrainConfig


def make_sources(config: TrainConfig, accelerator: Accelerator) -> dict[str, PairSource]:
    """Validated pair sources of train/valid(/test); the synthetic task when none is given."""
    data = config.data
    files = {"train": data.train_file, "valid": data.valid_file, "test": data.test_file}
    fastas = dict.fromkeys(files, data.fasta)
    columns = dict.fromkeys(files, columns_of(config))
    if data.train_file is None:  # the embedded default
        paths = prepare_synthetic_task(config, accelerator)
        files, fastas = {k: str(paths[k]) for k in files}, dict.fromkeys(files, str(paths["fasta"]))
    elif data.valid_fraction is not None:  # train and valid from the split of train_file
        held_out = hold_out_validation(config, accelerator)
        for split in ("train", "valid"):  # written as `write_pairs` writes, ids only
            files[split], fastas[split] = str(held_out[split]), str(held_out["fasta"])
            columns[split] = Columns()
    reading = {
        "max_residues": config.model.secai.max_residues,
        "skip_bad_rows": data.skip_bad_rows,
        "allow_contradictory_labels": data.allow_contradictory_labels,
    }
    sources = {}
    for split, path in files.items():
        if path is not None:
            sources[split] = PairSource(
                path, fastas[split], columns=columns[split], labeled=True, **reading
            )
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


def columns_of(config: TrainConfig) -> Columns:
    """The user's pair-file columns (`column_a`, `column_b`, `column_label`)."""
    data = config.data
    return Columns(data.column_a, data.column_b, label=data.column_label)


def hold_out_validation(config: TrainConfig, accelerator: Accelerator) -> dict[str, Path]:
    """train.tsv and valid.tsv of `train_file` split by `ppi-dist split`'s graph method into
    output_dir/split (with split_report.json; sequences.fasta when the sequences were
    inline). Made once by the main process; a resumed run reuses it when the split's inputs
    and settings are the same, and refuses a folder made with others."""
    data, seed = config.data, config.optimization.seed
    out_dir = Path(config.run.output_dir) / "split"
    wanted = {
        "train_file": data.train_file,
        "fasta": data.fasta,
        "valid_fraction": data.valid_fraction,
        "split_identity": data.split_identity,
        "seed": seed,
    }
    settings = out_dir / "split_settings.json"
    if accelerator.is_main_process:
        saved = read_json(settings) if settings.is_file() else None
        if saved is not None and saved != wanted:
            raise ConfigError(
                f"{settings}: this run's split was made with other settings "
                f"({saved}); use another output_dir, or remove {out_dir}"
            )
        if saved is None:
            report = split_file(
                data.train_file,
                data.fasta,
                out_dir,
                data.valid_fraction,
                columns=columns_of(config),
                allow_contradictory_labels=data.allow_contradictory_labels,
                identity=data.split_identity,
                seed=seed,
                threads=max(1, min(8, os.cpu_count() or 1)),
            )
            accelerator.print(f"validation held out of {data.train_file}:\n{report.describe()}")
            write_text_atomic(settings, json.dumps(wanted, indent=2) + "\n")  # last: complete
        else:
            accelerator.print(f"validation held out of {data.train_file}: {out_dir} (reused)")
    accelerator.wait_for_everyone()
    fasta = Path(data.fasta) if data.fasta is not None else out_dir / "sequences.fasta"
    return {"train": out_dir / "train.tsv", "valid": out_dir / "valid.tsv", "fasta": fasta}


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
    trunk_index: TrunkIndex | None = None,
) -> BatchLoader:
    """This rank's training batches, prepared in loader workers (`data_workers`). With a
    frozen encoder's `cache_index` the workers hand out cache rows (no tokens), budgeted in
    cross-attention tokens; with a `trunk_index`, tokens and the trunk rows of their
    windows."""
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
        trunk_index=trunk_index,
    )
    workers = data.data_workers
    return BatchLoader(
        batches, num_workers=2 * torch.cuda.is_available() if workers is None else workers
    )
