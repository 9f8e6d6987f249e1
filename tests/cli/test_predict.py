"""`ppi-dist predict`: every bad flag or file is refused in one line naming it (exit 2, no
traceback); a full disk or read-only output names the path; `--debug` keeps the traceback."""

from __future__ import annotations

import errno
import json
import math

import pytest
from safetensors.torch import load_file, save_file

from ppi_dist.cli import predict as predict_cli
from ppi_dist.cli.predict import main
from ppi_dist.files import acquire_lock, write_manifest
from ppi_dist.hub.folder import ALLOWED_PATTERNS
from ppi_dist.inference import predict as predict_module
from tests.cli.expect import failing_open, in_process, refused, shell

# (flag, value, what the line must say)
BAD_FLAGS = [
    ("--tile", "0", "argument --tile: must be at least 1, got 0"),
    ("--max_residues", "0", "argument --max_residues: must be at least 1"),
    ("--max_residues", "-3", "argument --max_residues"),
    ("--chunk_pairs", "0", "argument --chunk_pairs"),
    ("--max_tokens", "0", "argument --max_tokens"),
    ("--max_chunks", "0", "argument --max_chunks"),
    ("--top_k", "0", "argument --top_k"),
    ("--min_prob", "2", "argument --min_prob: must lie in [0, 1], got 2"),
    ("--min_prob", "nan", "argument --min_prob"),
    ("--threshold", "1.7", "argument --threshold: must lie in [0, 1]"),
    ("--threshold", "nan", "argument --threshold"),
    ("--threshold", "half", "argument --threshold: expected a number, got 'half'"),
    ("--memory_limit_gb", "0", "argument --memory_limit_gb"),
    ("--prior", "0", "argument --prior: must lie strictly between 0 and 1, got 0"),
    ("--prior", "1", "argument --prior: must lie strictly between 0 and 1, got 1"),
    ("--tile", "many", "argument --tile: expected an integer"),
    ("--bogus", "1", "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize(("flag", "value", "message"), BAD_FLAGS)
def test_bad_flag_values_are_refused_in_one_line(capsys, tmp_path, flag, value, message):
    out = tmp_path / "out.tsv"
    args = ["--model", tmp_path, "--fasta", tmp_path / "p.fasta", "--out", out, flag, value]
    refused(*in_process(capsys, main, *args), message)
    assert not out.exists()


def _config_edit(folder, **changes):
    path = folder / "secai_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


# (how the model folder is damaged, what the line must say)
BAD_FOLDERS = {
    "head_hidden string": (
        lambda f: _config_edit(f, head_hidden="32"),
        ["secai_config.json", "head_hidden must be an integer, got the string '32'"],
    ),
    "lora_r 8.5": (
        lambda f: _config_edit(f, lora_r=8.5),
        ["secai_config.json", "lora_r must be an integer, got 8.5"],
    ),
    "heads null": (
        lambda f: _config_edit(f, cross_attention_heads=None),
        ["secai_config.json", "cross_attention_heads must be set, got null"],
    ),
    "targets a string": (
        lambda f: _config_edit(f, lora_target_modules="query"),
        ["lora_target_modules must be a list of names, got the string 'query'"],
    ),
    "threshold string": (
        lambda f: _config_edit(f, decision_threshold="0.5"),
        ["decision_threshold must be a number, got the string '0.5'"],
    ),
    "unknown setting": (
        lambda f: _config_edit(f, head_layers=3),
        ["secai_config.json", "unknown setting 'head_layers'"],
    ),
    "truncated config": (
        lambda f: (f / "secai_config.json").write_text('{"lora_r": 4,'),
        ["secai_config.json", "not readable JSON"],
    ),
}


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_damaged_model_folders_are_named(capsys, model_folder, task, tmp_path, case):
    damage, needles = BAD_FOLDERS[case]
    damage(model_folder)
    (model_folder / "manifest.json").unlink()  # as an older folder
    args = ["--model", model_folder, "--fasta", task["fasta"], "--out", tmp_path / "o.tsv"]
    refused(*in_process(capsys, main, *args, "--no_progress"), *needles)


def test_finite_but_changed_weights_are_named_by_the_manifest(capsys, model_folder, task, tmp_path):
    """Sign bits of the LoRA weights flipped: still finite, other scores; the SHA-256 in
    manifest.json names the file."""
    path = model_folder / "adapter" / "adapter_model.safetensors"
    save_file({name: -tensor for name, tensor in load_file(path).items()}, path)
    args = ["--model", model_folder, "--fasta", task["fasta"], "--out", tmp_path / "o.tsv"]
    line = refused(*in_process(capsys, main, *args, "--no_progress"), str(path))
    assert "SHA-256" in line and "manifest.json" in line


@pytest.mark.parametrize(
    "name",
    [
        "adapter/adapter_model.safetensors",
        "secai_head.safetensors",
        "secai_config.json",
        "base_encoder/model.safetensors",
        "encoder_identity.json",
    ],
)
def test_a_manifest_that_forgets_a_file_of_the_model_is_refused(
    capsys, model_folder, task, tmp_path, name
):
    """manifest.json no longer lists one of the folder's own files, whose values changed
    (finite): refused naming the file, not scored with other values and no warning."""
    path = model_folder / name
    if path.suffix == ".safetensors":
        save_file({key: -tensor for key, tensor in load_file(path).items()}, path)
    manifest = model_folder / "manifest.json"
    listed = json.loads(manifest.read_text())
    del listed["files"][name]
    manifest.write_text(json.dumps(listed))
    args = ["--model", model_folder, "--fasta", task["fasta"], "--out", tmp_path / "o.tsv"]
    line = refused(*in_process(capsys, main, *args, "--no_progress"), str(path))
    assert f"not listed in {manifest}" in line


def _summary(capsys, *args) -> dict:
    capsys.readouterr()
    assert main([str(a) for a in [*args, "--no_progress", "--overwrite"]]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_max_residues_alone_reads_windows_overlapping_a_quarter_of_it(
    capsys, model_folder, task, tmp_path
):
    """The model was trained at the default 1,022 (overlap left to its default): a smaller
    --max_residues brings its own quarter, printed, and scores as if given explicitly."""
    out = tmp_path / "o.tsv"
    args = ["--model", model_folder, "--fasta", task["fasta"], "--out", out]
    for window, overlap in ((64, 16), (512, 128)):
        encoding = _summary(capsys, *args, "--max_residues", window)["encoding"]
        assert f"windows of {window} overlapping >= {overlap}," in encoding
    _summary(capsys, *args, "--max_residues", 8)  # proteins of 8-20 residues: windows
    alone = out.read_text()
    _summary(capsys, *args, "--max_residues", 8, "--window_overlap", 2)
    assert out.read_text() == alone


def test_an_overlap_set_at_training_is_kept_and_named(capsys, model_folder, task, tmp_path):
    _config_edit(model_folder, window_overlap=100)
    args = ["--model", model_folder, "--fasta", task["fasta"], "--out", tmp_path / "o.tsv"]
    encoding = _summary(capsys, *args, "--max_residues", 512)["encoding"]
    assert "windows of 512 overlapping >= 100," in encoding
    line = refused(*in_process(capsys, main, *args, "--max_residues", "64"), "--max_residues 64")
    assert "trained with window_overlap 100" in line and "pass --window_overlap" in line


def test_a_changed_cache_is_encoded_again_not_reused(capsys, model_folder, task, tmp_path, caplog):
    """One byte of --cache_dir's states.bin flipped: encoded again, saying why, and the
    same probabilities as before the damage."""
    out, states = tmp_path / "o.tsv", tmp_path / "states"
    args = ["--model", model_folder, "--fasta", task["fasta"], "--out", out]
    _summary(capsys, *args, "--cache_dir", states)
    scored = out.read_text()
    with open(states / "states.bin", "r+b") as handle:
        handle.seek(handle.seek(0, 2) // 2)
        byte = handle.read(1)[0]
        handle.seek(-1, 1)
        handle.write(bytes([byte ^ 0x40]))
    _summary(capsys, *args, "--cache_dir", states)
    assert "differ from their checksum in index.json (changed on disk?)" in caplog.text
    assert out.read_text() == scored


def test_a_cache_dir_that_is_a_file_is_refused_before_the_model_loads(
    capsys, model_folder, task, tmp_path, monkeypatch
):
    monkeypatch.setattr(predict_cli, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    taken = tmp_path / "taken.txt"
    taken.write_text("a file")
    args = ["--model", model_folder, "--fasta", task["fasta"], "--out", tmp_path / "o.tsv"]
    refused(*in_process(capsys, main, *args, "--cache_dir", taken), f"--cache_dir {taken}: is a")


MISSING = object()
# (what calibration.json holds instead of a fitted calibration's value, what the line says)
BAD_CALIBRATIONS = {
    "slope -1.5": ({"slope": -1.5}, "slope must be a finite number above 0, got -1.5"),
    "slope NaN": ({"slope": math.nan}, "slope must be a finite number above 0, got nan"),
    "offset Infinity": ({"offset": math.inf}, "offset must be a finite number, got inf"),
    "prior 1.5": ({"prior": 1.5}, "prior must lie strictly between 0 and 1, got 1.5"),
    "prior 0": ({"prior": 0}, "prior must lie strictly between 0 and 1, got 0"),
    "slope a string": ({"slope": "1.5"}, "slope must be a number, got the string '1.5'"),
    "prior a boolean": ({"prior": True}, "prior must be a number or null, got the boolean true"),
    "no offset": ({"offset": MISSING}, "offset is missing"),
}


@pytest.mark.parametrize("case", BAD_CALIBRATIONS)
def test_a_damaged_calibration_is_refused_naming_the_field(
    capsys, model_folder, task, tmp_path, case
):
    """calibration.json's values are checked on load, even when the manifest agrees with
    them (as if saved so): nothing is scored with a reversed, flat or NaN map."""
    changes, message = BAD_CALIBRATIONS[case]
    fitted = {"slope": 0.5, "offset": 0.3, "method": "platt", "pairs": 100, "prior": 0.5}
    values = {k: v for k, v in {**fitted, **changes}.items() if v is not MISSING}
    path = model_folder / "calibration.json"
    path.write_text(json.dumps(values))
    write_manifest(model_folder, ALLOWED_PATTERNS)
    out = tmp_path / "o.tsv"
    args = ["--model", model_folder, "--fasta", task["fasta"], "--out", out, "--no_progress"]
    refused(*in_process(capsys, main, *args), f"{path}: {message}")
    assert not out.exists()


def test_a_saved_threshold_outside_0_1_is_refused(capsys, model_folder, task, tmp_path):
    for bad in (1.7, math.nan):
        _config_edit(model_folder, decision_threshold=bad)
        (model_folder / "manifest.json").unlink(missing_ok=True)
        args = ["--model", model_folder, "--fasta", task["fasta"], "--out", tmp_path / "o.tsv"]
        refused(*in_process(capsys, main, *args), "saved decision_threshold", "not in [0, 1]")


def test_no_pairs_names_the_file(capsys, model_folder, tmp_path):
    fasta = tmp_path / "one.fasta"
    fasta.write_text(">A\nMKV\n")
    args = ["--model", model_folder, "--fasta", fasta, "--out", tmp_path / "o.tsv"]
    refused(*in_process(capsys, main, *args), f"no pairs to score in {fasta}")


def test_a_second_predict_names_the_output_file_not_the_folder(
    capsys, model_folder, task, tmp_path
):
    out = tmp_path / "out.tsv"
    with acquire_lock(out.with_name("out.tsv.lock"), what="predict", holds=out):
        args = ["--model", model_folder, "--fasta", task["fasta"], "--out", out]
        line = refused(*in_process(capsys, main, *args), f"{out}: in use by another predict")
    assert "choose another output" in line


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_disk_or_read_only_output_names_the_path(
    capsys, model_folder, task, tmp_path, monkeypatch, code
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    monkeypatch.setattr(predict_module, "open", failing_open(open, out_dir, code), raising=False)
    args = ["--model", model_folder, "--fasta", task["fasta"], "--out", out_dir / "o.tsv"]
    line = refused(*in_process(capsys, main, *args, "--no_progress"), str(out_dir), "cannot write")
    assert "rerun the same command to resume" in line
    advice = "free space" if code == errno.ENOSPC else "make the folder writable"
    assert advice in line


def test_debug_keeps_the_traceback(model_folder, tmp_path):
    fasta = tmp_path / "one.fasta"
    fasta.write_text(">A\nMKV\n")
    args = ["--model", model_folder, "--fasta", fasta, "--out", tmp_path / "o.tsv", "--debug"]
    with pytest.raises(ValueError, match="no pairs to score"):
        main([str(a) for a in args])


@pytest.mark.multiprocess
def test_a_shell_sees_one_line(tmp_path):
    result = shell("-m", "ppi_dist.predict", "--model", tmp_path, "--out", "x.tsv", "--tile", "0")
    refused(result.returncode, result.stderr, "argument --tile: must be at least 1")
    assert result.stderr.count("\n") == 1


def test_an_edited_setting_is_a_warning_naming_it_and_still_checked(
    capsys, model_folder, task, tmp_path, caplog
):
    """secai_config.json may be edited on purpose (`encoder` moved): the manifest names it in
    a warning; its values are still checked field by field (here a wrong kind)."""
    config_path = model_folder / "secai_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(config, indent=4))  # same settings, other bytes
    args = ["--model", model_folder, "--fasta", task["fasta"], "--out", tmp_path / "o.tsv"]
    assert in_process(capsys, main, *args, "--no_progress")[0] == 0
    assert f"{config_path}: changed since it was saved" in caplog.text
    _config_edit(model_folder, head_hidden="32")
    refused(*in_process(capsys, main, *args, "--overwrite"), "head_hidden must be an integer")


def test_an_encoder_of_another_shape_is_one_sentence_with_both_fingerprints(capsys, task, tmp_path):
    """The model's `encoder` folder now holds another ESM-2 shape: one short line (torch's
    own message lists every tensor), with the found and the trained-on fingerprints."""
    from transformers import EsmConfig, EsmModel

    from ppi_dist.hub.folder import save_for_hub
    from ppi_dist.models.config import SECAIConfig
    from ppi_dist.models.secai import SECAI
    from ppi_dist.models.shapes import tiny_esm2_config

    encoder = tmp_path / "esm"
    EsmModel(EsmConfig(**tiny_esm2_config()), add_pooling_layer=False).save_pretrained(encoder)
    config = SECAIConfig(encoder=str(encoder), cross_attention_heads=4, head_hidden=16, lora_r=4)
    folder = save_for_hub(SECAI(config), tmp_path / "model")
    wider = {**tiny_esm2_config(), "hidden_size": 64, "intermediate_size": 128}
    EsmModel(EsmConfig(**wider), add_pooling_layer=False).save_pretrained(encoder)
    args = ["--model", folder, "--fasta", task["fasta"], "--out", tmp_path / "o.tsv"]
    line = refused(*in_process(capsys, main, *args), "has another shape", "trained on")
    assert len(line) < 400 and line.count("fingerprint") == 1


def test_a_pair_labelled_both_ways_is_scored_with_its_labels(capsys, model_folder, task, tmp_path):
    # predict learns nothing from labels, it carries them: nothing to refuse.
    pairs = tmp_path / "c.tsv"
    pairs.write_text("protein_a\tprotein_b\tlabel\nP0\tP1\t1\nP2\tP3\t0\nP1\tP0\t0\n")
    out = tmp_path / "o.tsv"
    args = ["--model", model_folder, "--pairs", pairs, "--fasta", task["fasta"], "--out", out]
    assert in_process(capsys, main, *args, "--no_progress")[0] == 0
    labels = [line.split("\t")[-1] for line in out.read_text().splitlines()[1:]]
    assert labels == ["1", "0", "0"]
