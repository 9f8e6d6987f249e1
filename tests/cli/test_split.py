"""`ppi-dist split` (and `python -m ppi_dist.split`): bad fractions, files, labels and a
validation set that cannot rank are refused in one line (exit 2, no traceback)."""

from __future__ import annotations

import errno
import json

import pytest

from ppi_dist import files
from ppi_dist.checks import MIN_VALIDATION_PAIRS_PER_CLASS
from ppi_dist.cli.split import main
from ppi_dist.data import clusters
from tests.cli.conftest import write_task
from tests.cli.expect import failing_open, in_process, refused, shell


@pytest.mark.parametrize("fraction", ["1.0", "0", "-0.5", "nan", "1.5"])
def test_fractions_outside_0_1_are_refused(capsys, task, tmp_path, fraction):
    args = ["--pairs", task["pairs"], "--fasta", task["fasta"], "--out_dir", tmp_path / "s"]
    line = refused(*in_process(capsys, main, *args, "--valid_fraction", fraction))
    assert "argument --valid_fraction: must lie strictly between 0 and 1" in line
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--identity", "0", "argument --identity: must lie in (0, 1], got 0"),
        ("--test_fraction", "1", "argument --test_fraction: must lie in [0, 1), got 1"),
        ("--test_fraction", "-0.1", "argument --test_fraction: must lie in [0, 1)"),
    ],
)
def test_a_range_says_what_it_accepts(capsys, task, tmp_path, flag, value, message):
    """The range a flag's message gives is the one the split accepts: 0 identity and a
    test block of every pair are refused at the flag, in the flag's words."""
    args = ["--pairs", task["pairs"], "--fasta", task["fasta"], "--out_dir", tmp_path / "s"]
    refused(*in_process(capsys, main, *args, "--method", "random", flag, value), message)
    assert not (tmp_path / "s").exists()


def test_missing_pair_file_is_named(capsys, tmp_path):
    args = ["--pairs", tmp_path / "nope.tsv", "--out_dir", tmp_path / "s"]
    refused(*in_process(capsys, main, *args), "nope.tsv")


def test_a_validation_set_that_cannot_rank_is_refused(capsys, tmp_path):
    task = write_task(tmp_path, n_proteins=30, n_pairs=60)
    args = ["--pairs", task["pairs"], "--fasta", task["fasta"], "--out_dir", tmp_path / "s"]
    # The random draw of proteins (the graph cut would size validation by pairs instead).
    asked = ["--valid_fraction", "0.3", "--method", "random"]
    line = refused(*in_process(capsys, main, *args, *asked))
    assert "3 positive and 1 negative pairs" in line
    assert f"needs at least {MIN_VALIDATION_PAIRS_PER_CLASS} of each" in line
    assert "--valid_fraction" in line
    assert not (tmp_path / "s" / "valid.tsv").exists()


def test_contradictory_labels_are_refused_naming_both_lines_unless_allowed(capsys, tmp_path):
    task = write_task(tmp_path, n_proteins=40, n_pairs=300)
    a, b, label = task["rows"][5].split()
    with open(task["pairs"], "a") as handle:  # the same pair, swapped, the other label
        handle.write(f"{b}\t{a}\t{1 - int(label)}\n")
    args = ["--pairs", task["pairs"], "--fasta", task["fasta"], "--out_dir", tmp_path / "s"]
    args += ["--valid_fraction", "0.4"]
    pairs = str(task["pairs"])
    refused(*in_process(capsys, main, *args), f"{pairs}:302", f"{pairs}:7", "other order")
    assert in_process(capsys, main, *args, "--allow_contradictory_labels")[0] == 0
    assert json.loads((tmp_path / "s" / "split_report.json").read_text())["pairs_in"] == 301


@pytest.mark.multiprocess
def test_the_old_spelling_has_the_error_boundary(task, tmp_path):
    result = shell(
        *("-m", "ppi_dist.split", "--pairs", task["pairs"], "--out_dir", tmp_path / "s"),
        *("--valid_fraction", "nan"),
    )
    refused(result.returncode, result.stderr, "--valid_fraction")


def test_a_read_only_output_is_refused_before_mmseqs2_runs(capsys, task, tmp_path, monkeypatch):
    out = tmp_path / "s"
    monkeypatch.setattr(files, "open", failing_open(open, out, errno.EROFS), raising=False)

    def no_search(*args, **kwargs):
        raise AssertionError("MMseqs2 ran before the output was checked")

    monkeypatch.setattr(clusters, "_search", no_search)
    args = ["--pairs", task["pairs"], "--fasta", task["fasta"], "--out_dir", out]
    line = refused(*in_process(capsys, main, *args), str(out), "cannot write")
    assert "make the folder writable" in line


def _full_disk_for(real_open, name: str):
    """`open` whose write of `name`'s temporary file fails as a full disk does, after the
    file was created (the 0-byte file a full disk leaves)."""

    class Full:
        def __init__(self, handle, path):
            self.handle, self.path = handle, path

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device", self.path)

    def fake(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if "w" in mode and str(file).endswith(".partial") and f".{name}." in str(file):
            return Full(handle, str(file))
        return handle

    return fake


def test_a_full_disk_leaves_no_partial_file_and_a_rerun_clears_stale_ones(
    capsys, tmp_path, monkeypatch
):
    task = write_task(tmp_path, n_proteins=40, n_pairs=300)
    out = tmp_path / "s"
    args = ["--pairs", task["pairs"], "--fasta", task["fasta"], "--out_dir", out]
    args += ["--valid_fraction", "0.3", "--method", "random"]
    with monkeypatch.context() as patched:
        patched.setattr(files, "open", _full_disk_for(open, "valid.tsv"), raising=False)
        refused(*in_process(capsys, main, *args), "valid.tsv", "No space left on device")
    assert not list(out.glob(".*.partial"))
    stale = out / ".valid.tsv.999999999.partial"  # a writer that was killed: no such process
    stale.write_text("")
    assert in_process(capsys, main, *args)[0] == 0
    assert not stale.exists() and not list(out.glob(".*.partial"))
    assert (out / "valid.tsv").is_file()
