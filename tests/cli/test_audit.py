"""`ppi-dist audit`: bad files refused in one line naming file and line; contradictory labels
counted (within each file and test against train), not refused."""

from __future__ import annotations

import json

from ppi_dist.cli.audit import main
from tests.cli.expect import in_process, refused


def _pairs(path, rows):
    path.write_text("protein_a\tprotein_b\tlabel\n" + "".join(rows))
    return path


def test_bad_files_are_located(capsys, tmp_path):
    good = _pairs(tmp_path / "train.tsv", ["A\tB\t1\n", "C\tD\t0\n"])
    bad = _pairs(tmp_path / "test.tsv", ["A\tB\t1\n", "C\tD\tyes\n"])
    refused(*in_process(capsys, main, "--train", good, "--test", bad), f"{bad}:3", "'label'")
    missing = tmp_path / "nope.tsv"
    refused(*in_process(capsys, main, "--train", missing, "--test", good), "nope.tsv")
    refused(*in_process(capsys, main, "--train", good), "--test")


def test_contradictory_labels_are_counted(capsys, tmp_path):
    train = _pairs(tmp_path / "train.tsv", ["A\tB\t1\n", "B\tA\t0\n", "C\tD\t0\n", "E\tF\t1\n"])
    test = _pairs(tmp_path / "test.tsv", ["D\tC\t1\n", "E\tF\t1\n", "G\tH\t0\n"])
    capsys.readouterr()
    assert main(["--train", str(train), "--test", str(test), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["contradictory_labels"] == {
        "within_train": 1,
        "within_test": 0,
        "test_vs_train": 1,
    }
    assert in_process(capsys, main, "--train", train, "--test", test)[0] == 0
