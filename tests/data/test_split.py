"""Protein-disjoint split: no protein on both sides, duplicates together, counts add up."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from ppi_dist.data.pairs import Pair
from ppi_dist.data.split import protein_groups, split_file, split_pairs
from tests.helpers import REPO

LETTERS = "ACDEFGHIKLMNPQRSTVWY"


def _write_task(tmp_path, n_proteins=60, n_pairs=400, seed=0):
    """Random pairs among proteins P0..; P1 repeats P0's sequence, P3 repeats P2's."""
    rng = random.Random(seed)
    sequences = {f"P{i}": "".join(rng.choices(LETTERS, k=30)) for i in range(n_proteins)}
    sequences["P1"], sequences["P3"] = sequences["P0"], sequences["P2"]
    pairs, labelled = set(), set()
    while len(pairs) < n_pairs:
        a, b = rng.sample(sorted(sequences), 2)
        if frozenset((a, b)) in labelled:  # one label per pair: contradictions are refused
            continue
        labelled.add(frozenset((a, b)))
        pairs.add((a, b, rng.randint(0, 1)))
    pair_file, fasta = tmp_path / "pairs.tsv", tmp_path / "seqs.fasta"
    pair_file.write_text(
        "protein_a\tprotein_b\tlabel\n" + "".join(f"{a}\t{b}\t{y}\n" for a, b, y in sorted(pairs))
    )
    fasta.write_text("".join(f">{p}\n{s}\n" for p, s in sequences.items()))
    return pair_file, fasta, sorted(pairs)


def _read(path):
    return [tuple(line.split("\t")) for line in path.read_text().splitlines()[1:]]


def test_split_is_protein_disjoint_keeps_duplicates_and_counts_add_up(tmp_path):
    pair_file, fasta, pairs = _write_task(tmp_path)
    report = split_file(pair_file, fasta, tmp_path / "out", valid_fraction=0.3, seed=0)
    train, valid = _read(tmp_path / "out" / "train.tsv"), _read(tmp_path / "out" / "valid.tsv")
    train_proteins = {p for a, b, _ in train for p in (a, b)}
    valid_proteins = {p for a, b, _ in valid for p in (a, b)}
    assert train and valid and not train_proteins & valid_proteins
    for duplicates in (("P0", "P1"), ("P2", "P3")):
        sides = {p in valid_proteins for p in duplicates if p in train_proteins | valid_proteins}
        assert len(sides) == 1, duplicates
    assert (
        report.pairs_in
        == len(pairs)
        == report.train_pairs + report.valid_pairs + (report.dropped_mixed_pairs)
    )
    assert (report.train_pairs, report.valid_pairs) == (len(train), len(valid))
    assert report.dropped_mixed_pairs > 0
    positives = sum(y for *_, y in pairs)
    assert report.train_positive + report.valid_positive + report.dropped_positive == positives
    assert report.multi_protein_groups == 2 and report.proteins_in_multi_protein_groups == 4
    assert report.valid_proteins + report.train_proteins == report.proteins == 60
    assert report.valid_proteins >= 0.3 * 60
    saved = json.loads((tmp_path / "out" / "split_report.json").read_text())
    assert saved["dropped_mixed_pairs"] == report.dropped_mixed_pairs
    # Every input pair is in exactly one of train, valid or the dropped count.
    kept = {(a, b, int(y)) for a, b, y in train + valid}
    assert len(kept) == len(train) + len(valid) and kept <= set(pairs)


def test_split_is_deterministic_by_seed(tmp_path):
    pair_file, fasta, _ = _write_task(tmp_path)
    one = split_file(pair_file, fasta, tmp_path / "one", 0.2, seed=4)
    two = split_file(pair_file, fasta, tmp_path / "two", 0.2, seed=4)
    other = split_file(pair_file, fasta, tmp_path / "other", 0.2, seed=5)
    assert (tmp_path / "one" / "valid.tsv").read_text() == (
        tmp_path / "two" / "valid.tsv"
    ).read_text()
    assert one == two
    assert (tmp_path / "one" / "valid.tsv").read_text() != (
        tmp_path / "other" / "valid.tsv"
    ).read_text()
    assert other.pairs_in == one.pairs_in


def test_clusters_join_groups_and_bad_fractions_are_refused():
    sequences = {"A": "MKV", "B": "MKV", "C": "LLL", "D": "QQQ"}
    assert protein_groups(sequences) == [["A", "B"], ["C"], ["D"]]
    assert protein_groups(sequences, [("C", "D"), ("C", "X")]) == [["A", "B"], ["C", "D"]]
    with pytest.raises(ValueError, match="valid_fraction"):
        split_pairs([Pair("A", "C", label=1.0)], sequences, 1.5)
    with pytest.raises(ValueError, match="change --valid_fraction"):
        # One pair cannot fill both sides.
        split_pairs([Pair("A", "C", label=1.0)], sequences, 0.5, seed=0)


@pytest.mark.multiprocess
def test_command_line_prints_counts(tmp_path):
    pair_file, fasta, _ = _write_task(tmp_path)
    out = str(tmp_path / "cli")
    command = [
        sys.executable,
        "-m",
        "ppi_dist.split",
        "--pairs",
        str(pair_file),
        "--fasta",
        str(fasta),
        "--valid_fraction",
        "0.3",
        "--out_dir",
        out,
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "dropped" in done.stdout and "mixed pairs" in done.stdout
    assert (tmp_path / "cli" / "split_report.json").exists()
