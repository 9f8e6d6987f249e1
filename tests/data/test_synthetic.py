"""The synthetic task: only the pairing is informative, and it never loops on a request."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from ppi_dist.data.fasta import read_fasta
from ppi_dist.data.synthetic import (
    LIGAND_LETTERS,
    RECEPTOR_LETTERS,
    SyntheticTask,
    composition_baseline,
    make_families,
    make_split,
    write_synthetic_task,
)


def test_every_protein_of_a_role_has_the_same_motif_letter_counts(tmp_path):
    task = SyntheticTask(seed=1, train_pairs=200, eval_pairs=60, composition_leak=False)
    paths = write_synthetic_task(tmp_path, task)
    sequences = read_fasta(paths["fasta"])
    for protein, sequence in sequences.items():
        role, family = re.match(r"\w+?_([LR])(\d)_", protein).groups()
        letters = LIGAND_LETTERS if role == "L" else RECEPTOR_LETTERS
        # Each of the role's letters exactly 4 times; the other role's letters never.
        assert {c: sequence.count(c) for c in letters} == dict.fromkeys(letters, 4), protein
        assert not set(sequence) & set(RECEPTOR_LETTERS if role == "L" else LIGAND_LETTERS)
        # One run: the family's letter; every decoy stands alone.
        runs = {c for c in letters if c * 2 in sequence}
        assert runs == {letters[int(family)]}, protein
        assert letters[int(family)] * 4 in sequence


def test_composition_baseline_is_at_chance_on_the_free_design_not_the_default(tmp_path):
    kwargs = {"seed": 0, "train_pairs": 1500, "eval_pairs": 600}
    free_task = SyntheticTask(composition_leak=False, **kwargs)
    free = composition_baseline(write_synthetic_task(tmp_path / "free", free_task))
    default = composition_baseline(
        write_synthetic_task(tmp_path / "default", SyntheticTask(**kwargs))
    )
    assert free["valid_auroc"] < 0.6 and free["test_auroc"] < 0.6, free
    assert default["valid_auroc"] > 0.9 and default["test_auroc"] > 0.9, default


def test_asking_for_more_pairs_than_exist_stops_with_what_to_change():
    families = make_families(2, 4)
    with pytest.raises(ValueError, match=r"--synthetic_eval_pairs.*at least 5"):
        make_split("valid", 100, families, random.Random(0), 3, 40, 60)  # 2 x 3 x 3 = 18
    _, pairs = make_split("valid", 36, families, random.Random(0), 3, 40, 60)  # all of them
    assert len({(a, b) for a, b, _ in pairs} | {(b, a) for a, b, _ in pairs}) == 2 * 36
    assert sum(y for *_, y in pairs) == 18


def test_large_eval_requests_finish(tmp_path):
    """--synthetic_eval_pairs 30000 once looped forever: now it returns, every pair once."""
    task = SyntheticTask(train_pairs=100, eval_pairs=30000, max_length=50)
    paths = write_synthetic_task(tmp_path, task)
    rows = paths["valid"].read_text().splitlines()[1:]
    assert len(rows) == len(set(rows)) == 30000


def test_families_are_checked():
    with pytest.raises(ValueError, match="n_families must be 2 to 5"):
        make_families(6, 4)


def _pairs(path: Path) -> list[tuple[str, str, int]]:
    rows = path.read_text().splitlines()[1:]
    return [(a, b, int(y)) for a, b, y in (row.split("\t") for row in rows)]


def test_synthetic_task_is_protein_disjoint_balanced_and_deterministic(tmp_path):
    task = SyntheticTask(seed=3, train_pairs=400, eval_pairs=100)
    paths = write_synthetic_task(tmp_path / "one", task)
    again = write_synthetic_task(tmp_path / "two", task)
    proteins = {}
    for split in ("train", "valid", "test"):
        pairs = _pairs(paths[split])
        assert pairs == _pairs(again[split])
        assert sum(label for *_, label in pairs) == len(pairs) // 2
        assert len(set(pairs)) == len(pairs)
        proteins[split] = {p for a, b, _ in pairs for p in (a, b)}
    assert not proteins["train"] & proteins["valid"]
    assert not proteins["train"] & proteins["test"]
    assert not proteins["valid"] & proteins["test"]
    assert paths["fasta"].read_text() == again["fasta"].read_text()
