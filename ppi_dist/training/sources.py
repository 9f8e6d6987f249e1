"""A run's data: validated pair sources of each split, and this rank's training batches.

Without a `train_file` the run trains on the embedded synthetic task (`data.synthetic`),
written once per machine into output_dir/synthetic_data. With `valid_fraction` instead of a
`valid_file`, the training file is split into train and validation first (output_dir/split),
keyed on its settings and the SHA-256 of its input (`split_key`, made before the run folder
is claimed): reused while both are the same, split anew otherwise, refused on resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator

from ppi_dist.checks import MIN_HELD_OUT_PAIRS_PER_CLASS, check_can_rank
from ppi_dist.data.batching import CacheIndex, CacheRowBatches, TokenBatches, TrunkIndex
from ppi_dist.data.clusters import mmseqs_binary
from ppi_dist.data.loader import BatchLoader
from ppi_dist.data.pairs import Columns, PairSource, sequences_of
from ppi_dist.data.partition import partitioner_name
from ppi_dist.data.planner import BatchOptions
from ppi_dist.data.reading import open_binary, resolve_pair_files
from ppi_dist.data.split import prepare_out_dir, read_labelled, split_pairs, write_split
from ppi_dist.data.synthetic import SyntheticTask, synthetic_task_paths, write_synthetic_task
from ppi_dist.errors import ConfigError
from ppi_dist.files import read_json, write_text_atomic
from ppi_dist.training.config import TrainConfig
from ppi_dist.training.rundir import run_contents

logger = logging.getLogger(__name__)

SPLIT_SETTINGS = "split_settings.json"  # written last: a split without it is incomplete


def make_sources(
    config: TrainConfig, accelerator: Accelerator, split: dict | None = None
) -> dict[str, PairSource]:
    """Validated pair sources of train/valid(/test); the synthetic task when none is given.
    `split`: `split_key(config)`, made before the run folder was claimed."""
    data = config.data
    files = {"train": data.train_file, "valid": data.valid_file, "test": data.test_file}
    fastas = dict.fromkeys(files, data.fasta)
    columns = dict.fromkeys(files, columns_of(config))
    if data.train_file is None:  # the embedded default
        paths = prepare_synthetic_task(config, accelerator)
        files, fastas = {k: str(paths[k]) for k in files}, dict.fromkeys(files, str(paths["fasta"]))
    elif data.valid_fraction is not None:  # train and valid from the split of train_file
        held_out = hold_out_validation(config, accelerator, split or split_key(config))
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


def split_key(config: TrainConfig) -> dict | None:
    """What the trainer's split is made of: its settings and the SHA-256 of its input (the
    training file(s) and the FASTA); None without `valid_fraction`. Made before the run
    folder is claimed or cleared, so that a missing file or tool stops nothing half done."""
    data = config.data
    if data.valid_fraction is None:
        return None
    partitioner_name()  # the named errors of a missing tool, before anything is removed
    mmseqs_binary()
    columns = columns_of(config)
    return {
        "train_file": data.train_file,
        "fasta": data.fasta,
        "valid_fraction": data.valid_fraction,
        "split_identity": data.split_identity,
        "seed": config.optimization.seed,
        "columns": [columns.protein_a, columns.protein_b, columns.label],
        "allow_contradictory_labels": data.allow_contradictory_labels,
        "sha256": input_digests(data.train_file, data.fasta, columns),
    }


def input_digests(pair_files, fasta: str | None, columns: Columns) -> dict[str, str]:
    """The SHA-256 of each local pair file and of the FASTA, by path; remote files and
    dataset names are hashed as read (every pair's identifiers, label and sequences)."""
    files, dataset = resolve_pair_files(pair_files)
    if dataset is not None or any(name.startswith("hf://") for name in files):
        digest = hashlib.sha256()
        # Hashed here, judged by the split: contradictory labels are the split's to refuse.
        allow = {"allow_contradictory_labels": True}
        source = PairSource(pair_files, fasta, columns=columns, labeled=True, **allow)
        for pair in source.pair_rows():
            digest.update("\t".join(map(str, pair)).encode() + b"\n")
        digests = {f"{dataset or ', '.join(files)} (as read)": digest.hexdigest()}
    else:
        digests = {name: _sha256(name) for name in files}
    if fasta is not None:
        digests[str(fasta)] = _sha256(fasta)
    return digests


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open_binary(path) as handle:  # a missing file is a DataError naming it
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def hold_out_validation(
    config: TrainConfig, accelerator: Accelerator, key: dict
) -> dict[str, Path]:
    """train.tsv and valid.tsv of `train_file` split by `ppi-dist split`'s graph method into
    output_dir/split (with split_report.json and `key` as split_settings.json; sequences.fasta
    when the sequences were inline). Made by the main process. A split whose `key` (settings
    and input content) is this run's is reused; another is split anew, unless this run
    resumes a run made on it: resuming on other data is refused, naming what changed."""
    out_dir = Path(config.run.output_dir) / "split"
    settings = out_dir / SPLIT_SETTINGS
    if accelerator.is_main_process:
        saved = read_json(settings) if settings.is_file() else None
        if saved is not None and _reusable(saved, key, settings, resumes(config)):
            accelerator.print(
                f"validation held out of {config.data.train_file}: {out_dir} (reused)"
            )
        else:
            if out_dir.exists():  # another split: not this run's
                shutil.rmtree(out_dir)
            make_split(config, out_dir, accelerator)
            write_text_atomic(settings, json.dumps(key, indent=2) + "\n")  # last: complete
    accelerator.wait_for_everyone()
    fasta = config.data.fasta
    fasta = Path(fasta) if fasta is not None else out_dir / "sequences.fasta"
    return {"train": out_dir / "train.tsv", "valid": out_dir / "valid.tsv", "fasta": fasta}


def resumes(config: TrainConfig) -> bool:
    """Whether this run continues a run in its folder (`--resume_from` and one is there)."""
    return bool(config.run.resume_from) and bool(run_contents(Path(config.run.output_dir)))


def _reusable(saved: dict, key: dict, path: Path, resuming: bool) -> bool:
    """True when the saved split is this run's; False to split anew; a refusal when this
    run resumes one made on another split (settings or content)."""
    if saved == key:
        return True
    differ = [n for n in sorted(key.keys() & saved.keys()) if n != "sha256" and saved[n] != key[n]]
    if not resuming:
        return False
    if differ:
        shown = "; ".join(f"{n}: {saved[n]!r} -> {key[n]!r}" for n in differ)
        raise ConfigError(
            f"{path}: this run's split was made with other settings ({shown}); resume with "
            "the run's settings, or pass --overwrite to start again (or use another output_dir)"
        )
    if "sha256" not in saved:  # written by an earlier version, which recorded no content
        logger.warning("%s records no input content: the split is reused unchecked", path)
        return True
    changed = [f for f in key["sha256"] if saved["sha256"].get(f) != key["sha256"][f]]
    changed += [f for f in saved["sha256"] if f not in key["sha256"]]
    if not changed:  # the same content; settings this version does not know
        return True
    name = changed[0]
    before, now = saved["sha256"].get(name), key["sha256"].get(name)
    raise ConfigError(
        f"{name}: its content changed since this run's split was made (SHA-256 "
        f"{str(before)[:12]}... -> {str(now)[:12]}..., recorded in {path}); resuming would "
        "train on other data than the run began with: pass --overwrite to start again on "
        "the new data, or use another output_dir"
    )


def make_split(config: TrainConfig, out_dir: Path, accelerator: Accelerator) -> None:
    """Split `train_file` into `out_dir` (checked writable before MMseqs2 runs); refuse a
    validation block with fewer than `MIN_HELD_OUT_PAIRS_PER_CLASS` pairs of a class, or
    warn under `allow_small_validation`."""
    data = config.data
    out_dir = prepare_out_dir(out_dir)
    rows = read_labelled(
        data.train_file, data.fasta, columns_of(config), data.allow_contradictory_labels
    )
    sequences = sequences_of(rows)
    split = split_pairs(
        rows,
        sequences,
        data.valid_fraction,
        identity=data.split_identity,
        seed=config.optimization.seed,
        threads=max(1, min(8, os.cpu_count() or 1)),
    )
    valid = split.report.blocks["valid"]
    positives, negatives = valid["positive"], valid["pairs"] - valid["positive"]
    where = f"--valid_fraction {data.valid_fraction} of {data.train_file}"
    if not data.allow_small_validation:
        check_can_rank(
            where,
            positives,
            negatives,
            "raise --valid_fraction, or pass --allow_small_validation true to train on it",
            MIN_HELD_OUT_PAIRS_PER_CLASS,
        )
    split.report.inputs = {"pairs": str(data.train_file), "fasta": data.fasta, "clusters": None}
    write_split(out_dir, split, sequences if data.fasta is None else None)
    accelerator.print(f"validation held out of {data.train_file}:\n{split.report.describe()}")
    if min(positives, negatives) < MIN_HELD_OUT_PAIRS_PER_CLASS:
        accelerator.print(
            f"warning: {where}: {positives:,} positive and {negatives:,} negative pairs, "
            f"fewer than {MIN_HELD_OUT_PAIRS_PER_CLASS} of a class: the checkpoint, threshold "
            "and calibration chosen on it rest on few pairs (--allow_small_validation)"
        )


def prepare_synthetic_task(config: TrainConfig, accelerator: Accelerator) -> dict[str, Path]:
    """The trainer's default data: written once per machine (the folder may be node-local),
    to temporary names renamed into place; the other processes wait, then read it."""
    out_dir = Path(config.run.output_dir) / "synthetic_data"
    if accelerator.is_local_main_process:
        task = SyntheticTask(
            seed=config.optimization.seed,
            train_pairs=config.data.synthetic_train_pairs,
            eval_pairs=config.data.synthetic_eval_pairs,
        )
        write_synthetic_task(out_dir, task)
    accelerator.wait_for_everyone()
    return synthetic_task_paths(out_dir)


def batch_options(config: TrainConfig) -> BatchOptions:
    """The run's training batches: its seed, shuffled and cropped, its budget and buffers."""
    data = config.data
    return BatchOptions(
        seed=config.optimization.seed,
        training=True,
        max_tokens=data.max_tokens,
        max_pairs=data.max_pairs,
        batch_size=data.batch_size,
        sort_buffer=data.sort_buffer,
        shuffle_buffer=data.shuffle_buffer,
    )


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
    options = batch_options(config)
    ranks = {"rank": accelerator.process_index, "world_size": accelerator.num_processes}
    windowing = config.model.secai.windowing("train")
    if cache_index is not None:
        batches = CacheRowBatches(source, cache_index, options, **ranks, windowing=windowing)
    else:
        batches = TokenBatches(
            source, options, **ranks, windowing=windowing, trunk_index=trunk_index
        )
    workers = data.data_workers
    return BatchLoader(
        batches, num_workers=2 * torch.cuda.is_available() if workers is None else workers
    )
