"""The trainer's command line (`ppi-dist train`, `ppi_dist/train.py`): bad encoders,
checkpoints, labels and validation sets are refused in one line naming the folder, file or
line (exit 2, no traceback), in this process; a full disk names the path."""

from __future__ import annotations

import errno
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import SafetensorError
from transformers import EsmConfig, EsmModel

from ppi_dist import files
from ppi_dist.checks import MIN_HELD_OUT_PAIRS_PER_CLASS, MIN_VALIDATION_PAIRS_PER_CLASS
from ppi_dist.cli.train import main
from ppi_dist.errors import MissingToolError
from ppi_dist.files import sha256_of, write_manifest
from ppi_dist.models.shapes import tiny_esm2_config
from ppi_dist.training import checkpoint, sources
from tests.cli.conftest import write_task
from tests.cli.expect import in_process, refused
from tests.helpers import REPO
from tests.integration.runs import TINY

SAVED = REPO / "tests" / "fixtures" / "saved_60fab62" / "checkpoint"


def _data_flags(task: dict, valid: Path | None = None) -> list:
    return [
        *("--train_file", task["pairs"], "--valid_file", valid or task["pairs"]),
        *("--fasta", task["fasta"], "--report_to", "none", "--plots", "false"),
    ]


def _encoder_folder(tmp_path: Path, damage: str) -> Path:
    folder = tmp_path / "esm"
    EsmModel(EsmConfig(**tiny_esm2_config()), add_pooling_layer=False).save_pretrained(folder)
    weights = folder / "model.safetensors"
    if damage == "pickle only":
        weights.rename(folder / "pytorch_model.bin")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-64])
    return folder


@pytest.mark.parametrize(
    ("damage", "needles"),
    [
        ("missing", ["no such local folder"]),
        ("pickle only", ["no model.safetensors", "pytorch_model.bin"]),
        ("truncated", ["model.safetensors: not a readable safetensors file"]),
    ],
)
def test_a_bad_local_encoder_is_named(capsys, task, tmp_path, damage, needles):
    encoder = tmp_path / "nowhere" if damage == "missing" else _encoder_folder(tmp_path, damage)
    args = [*_data_flags(task), "--encoder", encoder, "--output_dir", tmp_path / "run"]
    refused(*in_process(capsys, main, *args), str(encoder), *needles)


def _labelled(path: Path, rows: list[str]) -> Path:
    path.write_text("protein_a\tprotein_b\tlabel\n" + "".join(rows))
    return path


def test_a_validation_set_that_cannot_rank_is_refused(capsys, task, tmp_path):
    rows = task["rows"]
    one_class = _labelled(tmp_path / "valid.tsv", [r for r in rows if r.endswith("1\n")])
    few = _labelled(tmp_path / "few.tsv", rows[:4])
    for valid in (one_class, few):
        args = [*_data_flags(task, valid), *TINY, "--output_dir", tmp_path / "run"]
        line = refused(*in_process(capsys, main, *args), str(valid))
        assert f"needs at least {MIN_VALIDATION_PAIRS_PER_CLASS} of each" in line


def test_contradictory_labels_are_refused_naming_both_lines(capsys, task, tmp_path):
    a, b, label = task["rows"][3].split()
    train = _labelled(tmp_path / "train.tsv", [*task["rows"], f"{b}\t{a}\t{1 - int(label)}\n"])
    args = [*_data_flags(task), "--train_file", train, *TINY, "--output_dir", tmp_path / "run"]
    last = len(task["rows"]) + 2
    refused(*in_process(capsys, main, *args), f"{train}:{last}", f"{train}:5", "contradictory")


def _saved_run(tmp_path: Path) -> tuple[Path, list]:
    """The checkpoint saved by 60fab62, in a run folder, and the flags that resume it."""
    run = tmp_path / "run"
    shutil.copytree(SAVED, run / "checkpoints")
    config = json.loads((run / "checkpoints" / "step_00000003" / "trainer_state.json").read_text())
    recipe = tmp_path / "saved.yaml"
    recipe.write_text(yaml.safe_dump(config["config"]))
    flags = ["--config", recipe, "--output_dir", run, "--resume_from", "latest", "--plots", "false"]
    return run / "checkpoints" / "step_00000003", flags


@pytest.mark.parametrize("name", ["trainer_state.json", "rng_0.json", "optimizer.json"])
def test_a_truncated_checkpoint_file_is_named(capsys, tmp_path, name):
    step, flags = _saved_run(tmp_path)
    path = step / name
    path.write_text(path.read_text()[: len(path.read_text()) // 2])
    refused(*in_process(capsys, main, *flags), str(path), "not readable JSON")


def test_a_changed_checkpoint_file_is_named_by_its_manifest(capsys, tmp_path):
    step, flags = _saved_run(tmp_path)
    write_manifest(step)  # as a checkpoint of this version has one
    path = step / "trainable.safetensors"
    tensors = checkpoint.read_safetensors(path)
    checkpoint.save_safetensors(
        {k: -v if v.is_floating_point() else v for k, v in tensors.items()}, path
    )
    line = refused(*in_process(capsys, main, *flags), str(path))
    assert "SHA-256" in line


def test_a_resume_from_that_is_no_checkpoint_says_so(capsys, tmp_path):
    """A missing folder, or a run folder instead of one of its checkpoints: said as such,
    not as an unreadable trainer_state.json."""
    step, flags = _saved_run(tmp_path)
    resume = flags.index("--resume_from") + 1
    missing = tmp_path / "nowhere"
    flags[resume] = missing
    refused(*in_process(capsys, main, *flags), f"--resume_from {missing}: no such checkpoint")
    flags[resume] = step.parent.parent  # the run folder
    line = refused(*in_process(capsys, main, *flags), "not a completed checkpoint")
    assert "give one of its checkpoints/step_*" in line and "trainer_state" not in line


def test_resuming_onto_another_model_shape_is_refused(capsys, tmp_path):
    _, flags = _saved_run(tmp_path)
    other = [*flags, "--tiny_hidden", "64", "--resume_override", "tiny_hidden"]
    line = refused(*in_process(capsys, main, *other), "another model shape")
    assert "step_00000003" in line


def test_a_full_disk_names_the_path_and_keeps_the_checkpoints(capsys, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real = checkpoint.save_safetensors
    saved: list[str] = []

    def save_file(tensors, path, *args, **kwargs):
        if "step_00000002" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        saved.append(str(path))
        return real(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_safetensors", save_file)
    args = [*TINY, "--max_steps", "2", "--checkpoint_every", "1", "--output_dir", run]
    line = refused(*in_process(capsys, main, *args), "step_00000002", "cannot write")
    assert "free space" in line and "--resume_from latest" in line
    assert (run / "checkpoints" / "step_00000001" / "COMPLETE").is_file()


FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


def test_safetensors_full_disk_names_the_file_it_was_writing(capsys, tmp_path, monkeypatch):
    """safetensors says a disk is full in its own words, naming no file: the line names the
    checkpoint's file and keeps those words."""
    run, real = tmp_path / "run", files.save_file

    def save_file(tensors, path, *args, **kwargs):
        if "step_00000002" in str(path):
            raise SafetensorError(FULL)
        return real(tensors, path, *args, **kwargs)

    monkeypatch.setattr(files, "save_file", save_file)
    args = [*TINY, "--max_steps", "2", "--checkpoint_every", "1", "--output_dir", run]
    line = refused(*in_process(capsys, main, *args), f"cannot write ({FULL})")
    assert f"error: {run / 'checkpoints' / 'step_00000002'}/" in line and ".safetensors:" in line
    assert "free space" in line and "--resume_from latest" in line


def test_debug_keeps_the_traceback(task, tmp_path):
    args = [*_data_flags(task), "--encoder", tmp_path / "nowhere", "--debug", "true"]
    with pytest.raises(ValueError, match="no such local folder"):
        main([str(a) for a in [*args, "--output_dir", tmp_path / "run"]])
    assert torch.distributed.is_initialized() is False


def _split_run(tmp_path: Path, pairs: Path, fasta: Path, *more) -> list:
    """A tiny run that holds its validation out of `pairs` (`--valid_fraction`)."""
    return [
        *TINY,
        *("--train_file", pairs, "--fasta", fasta, "--valid_fraction", "0.2"),
        *("--max_steps", "1", "--output_dir", tmp_path / "run", *more),
    ]


def test_a_held_out_validation_with_few_pairs_of_a_class_is_refused(capsys, tmp_path):
    task = write_task(tmp_path, n_proteins=40, n_pairs=300)
    args = _split_run(tmp_path, task["pairs"], task["fasta"])
    line = refused(*in_process(capsys, main, *args), "--valid_fraction 0.2", "--allow_small")
    assert f"needs at least {MIN_HELD_OUT_PAIRS_PER_CLASS} of each" in line
    counts = re.search(r"(\d+) positive and (\d+) negative pairs", line)
    assert counts and min(map(int, counts.groups())) < MIN_HELD_OUT_PAIRS_PER_CLASS, line
    assert not (tmp_path / "run" / "split" / "valid.tsv").exists()
    capsys.readouterr()
    assert main([str(a) for a in [*args, "--allow_small_validation", "true"]]) == 0
    printed = capsys.readouterr().out
    assert f"{counts[1]} positive and {counts[2]} negative pairs, fewer than" in printed


def _rewrite(task: dict) -> set[tuple[str, str, str]]:
    """The training file rewritten: a third of its pairs gone, 30 labels flipped."""
    rows = []
    for i, row in enumerate(task["rows"][:200]):
        a, b, label = row.split()
        rows.append(f"{a}\t{b}\t{1 - int(label) if i < 30 else label}\n")
    _labelled(task["pairs"], rows)
    return {tuple(row.split()) for row in rows}


def _rows(path: Path) -> set[tuple[str, str, str]]:
    return {tuple(line.split("\t")) for line in path.read_text().splitlines()[1:]}


def test_the_trainers_split_follows_the_content_of_its_input(capsys, tmp_path):
    task = write_task(tmp_path, n_proteins=40, n_pairs=300)
    args = _split_run(tmp_path, task["pairs"], task["fasta"], "--allow_small_validation", "true")
    assert main([str(a) for a in args]) == 0
    split = tmp_path / "run" / "split"
    first = (split / "valid.tsv").read_text()
    now = _rewrite(task)
    # Resuming on other data is refused, naming the file; the split is left as it was.
    resume = [*args, "--resume_from", "latest", "--max_steps", "2"]
    refused(*in_process(capsys, main, *resume), str(task["pairs"]), "content changed")
    assert (split / "valid.tsv").read_text() == first
    # --overwrite replaces the split too: made again from the file as it is now.
    assert main([str(a) for a in [*args, "--overwrite", "true"]]) == 0
    assert _rows(split / "train.tsv") | _rows(split / "valid.tsv") <= now
    settings = json.loads((split / "split_settings.json").read_text())
    assert settings["sha256"][str(task["pairs"])] == sha256_of(task["pairs"])
    # Another fraction with --overwrite: split anew (it deleted the run, then refused).
    other = [*args, "--valid_fraction", "0.3", "--overwrite", "true"]
    assert main([str(a) for a in other]) == 0
    assert json.loads((split / "split_settings.json").read_text())["valid_fraction"] == 0.3


def test_settings_are_checked_before_overwrite_removes_anything(capsys, tmp_path, monkeypatch):
    task = write_task(tmp_path, n_proteins=40, n_pairs=300)
    args = _split_run(tmp_path, task["pairs"], task["fasta"], "--allow_small_validation", "true")
    assert main([str(a) for a in args]) == 0
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("step_*"))
    assert checkpoints
    missing = [*args, "--train_file", tmp_path / "gone.tsv", "--overwrite", "true"]
    refused(*in_process(capsys, main, *missing), "gone.tsv")

    def no_mmseqs() -> str:
        raise MissingToolError("MMseqs2 is not installed")

    monkeypatch.setattr(sources, "mmseqs_binary", no_mmseqs)
    refused(*in_process(capsys, main, *args, "--overwrite", "true"), "MMseqs2 is not installed")
    assert sorted((tmp_path / "run" / "checkpoints").glob("step_*")) == checkpoints
    assert (tmp_path / "run" / "split" / "split_settings.json").is_file()
