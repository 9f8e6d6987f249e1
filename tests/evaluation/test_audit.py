"""Leakage audit: figures on a toy split, and the published yeast figures from the real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppi_dist.cli.audit import main
from ppi_dist.data.pairs import Pair
from ppi_dist.evaluation.audit import audit, degree_baseline_scores
from tests.helpers import SHARED


def write(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    path.write_text(
        "protein_a\tprotein_b\tlabel\n" + "".join(f"{a}\t{b}\t{y}\n" for a, b, y in rows)
    )
    return path


def test_audit_counts_on_a_toy_split(tmp_path, capsys):
    train = write(tmp_path / "train.tsv", [("A", "B", 1), ("A", "C", 1), ("D", "E", 0)])
    test = write(
        tmp_path / "test.tsv", [("B", "A", 1), ("A", "X", 1), ("X", "Y", 0), ("D", "Z", 0)]
    )
    report = audit(train, test)
    assert report["shared_proteins"] == 3  # A, B, D
    assert report["shared_pairs"] == 1  # (A, B) in the other order
    assert report["test_pairs_by_proteins_seen"] == {"C1_both": 1, "C2_one": 2, "C3_none": 1}
    assert report["train"] | {"file": None} == {
        "file": None,
        "pairs": 3,
        "positive": 2,
        "negative": 1,
        "proteins": 5,
    }
    # net degrees: A +2, B +1, C +1, D -1, E -1 -> scores 3, 2, 0, -1: ranks positives first
    train_pairs = [Pair("A", "B", label=1.0), Pair("A", "C", label=1.0), Pair("D", "E", label=0.0)]
    test_pairs = [Pair("B", "A"), Pair("A", "X"), Pair("X", "Y"), Pair("D", "Z")]
    assert degree_baseline_scores(train_pairs, test_pairs) == [3, 2, 0, -1]
    assert report["degree_baseline_auroc"] == 1.0
    assert main(["--train", str(train), "--test", str(test), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shared_pairs"] == 1
    assert main(["--train", str(train), "--test", str(tmp_path / "missing.tsv")]) == 2
    assert "missing.tsv: file not found" in capsys.readouterr().err


@pytest.mark.real_data
def test_yeast_random_split_leaks_and_c3_does_not():
    yeast = SHARED / "data" / "yeast-du2017"
    if not yeast.exists():
        pytest.skip(f"shared data not found at {yeast}")
    random_split = audit(yeast / "random" / "train.tsv", yeast / "random" / "test.tsv")
    assert (random_split["shared_proteins"], random_split["test"]["proteins"]) == (2969, 3128)
    assert random_split["degree_baseline_auroc"] > 0.9  # degrees alone "predict" the test set
    c3 = audit(yeast / "c3" / "train.tsv", yeast / "c3" / "test.tsv")
    assert c3["shared_proteins"] == 0
    assert c3["test_pairs_by_proteins_seen"]["C3_none"] == c3["test"]["pairs"] == 4842
    assert c3["degree_baseline_auroc"] == 0.5
