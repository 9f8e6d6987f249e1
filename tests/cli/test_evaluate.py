"""`ppi-dist evaluate`: bad flags and files refused in one line naming them (exit 2, no
traceback), before any output is written."""

from __future__ import annotations

import errno

import pytest

from ppi_dist.cli import evaluate as evaluate_cli
from ppi_dist.cli.evaluate import main
from ppi_dist.inference import scoring
from tests.cli.expect import failing_open, in_process, refused

BAD_FLAGS = [
    ("--bootstrap", "-1", "argument --bootstrap: must be at least 1, got -1"),
    ("--bootstrap", "0", "argument --bootstrap"),
    ("--max_residues", "0", "argument --max_residues: must be at least 1"),
]


@pytest.mark.parametrize(("flag", "value", "message"), BAD_FLAGS)
def test_bad_flag_values_are_refused(capsys, tmp_path, flag, value, message):
    args = ["--model", tmp_path, "--pairs", tmp_path / "p.tsv", flag, value]
    refused(*in_process(capsys, main, *args), message)


def _labelled(path, rows):
    path.write_text("protein_a\tprotein_b\tlabel\n" + "".join(rows))
    return path


def test_one_class_is_refused_before_any_output(capsys, model_folder, task, tmp_path):
    pairs = _labelled(tmp_path / "ones.tsv", ["P0\tP1\t1\n", "P2\tP3\t1\n"])
    out = tmp_path / "eval"
    args = ["--model", model_folder, "--pairs", pairs, "--fasta", task["fasta"], "--out", out]
    refused(*in_process(capsys, main, *args), str(pairs), "every pair is labelled 1")
    assert not out.exists()


def test_contradictory_labels_name_both_lines_unless_allowed(capsys, model_folder, task, tmp_path):
    pairs = _labelled(tmp_path / "c.tsv", ["P0\tP1\t1\n", "P2\tP3\t0\n", "P1\tP0\t0\n"])
    args = ["--model", model_folder, "--pairs", pairs, "--fasta", task["fasta"]]
    refused(*in_process(capsys, main, *args), f"{pairs}:4", f"{pairs}:2", "contradictory")
    # Published test files hold a few such pairs: scored as given when allowed.
    out = tmp_path / "eval"
    allowed = [*args, "--out", out, "--bootstrap", "5", "--allow_contradictory_labels"]
    assert in_process(capsys, main, *allowed)[0] == 0
    assert len((out / "predictions.tsv").read_text().splitlines()) == 1 + 3


def test_missing_pair_file_is_named(capsys, model_folder, tmp_path):
    missing = tmp_path / "nope.tsv"
    refused(*in_process(capsys, main, "--model", model_folder, "--pairs", missing), "nope.tsv")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_disk_or_read_only_output_names_the_path(
    capsys, model_folder, task, tmp_path, monkeypatch, code
):
    out = tmp_path / "eval"
    monkeypatch.setattr(scoring, "open", failing_open(open, out, code), raising=False)
    args = ["--model", model_folder, "--pairs", task["pairs"], "--fasta", task["fasta"]]
    line = refused(*in_process(capsys, main, *args, "--out", out, "--bootstrap", "5"), str(out))
    assert "cannot write" in line


def test_max_residues_alone_reads_windows_overlapping_a_quarter_of_it(
    capsys, model_folder, task, tmp_path
):
    args = ["--model", model_folder, "--pairs", task["pairs"], "--fasta", task["fasta"]]
    args += ["--out", tmp_path / "e", "--bootstrap", "5", "--max_residues", "64"]
    assert main([str(a) for a in args]) == 0
    assert "windows of 64 overlapping >= 16," in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--out", "--cache_dir"])
def test_a_folder_that_is_a_file_is_refused_before_the_model_loads(
    capsys, model_folder, task, tmp_path, monkeypatch, flag
):
    monkeypatch.setattr(evaluate_cli, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    taken = tmp_path / "taken.txt"
    taken.write_text("a file")
    args = ["--model", model_folder, "--pairs", task["pairs"], "--fasta", task["fasta"]]
    refused(*in_process(capsys, main, *args, flag, taken), f"{flag} {taken}: is a file")
