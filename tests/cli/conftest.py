"""Fixtures of the command-line cases: a saved tiny model folder and labelled pair files."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from ppi_dist.hub.folder import save_for_hub
from tests.helpers import random_sequence, tiny_model


@pytest.fixture(scope="session")
def _saved_once(tmp_path_factory) -> Path:
    model = tiny_model()
    model.config.decision_threshold = 0.5
    return save_for_hub(model, tmp_path_factory.mktemp("saved") / "model")


@pytest.fixture
def model_folder(_saved_once, tmp_path) -> Path:
    """A fresh copy of a saved tiny model folder (each case may damage its own)."""
    return Path(shutil.copytree(_saved_once, tmp_path / "model"))


def write_task(folder: Path, n_proteins: int = 12, n_pairs: int = 40, seed: int = 0) -> dict:
    """A FASTA and a labelled pair file (both classes, one label per pair) in `folder`."""
    rng = random.Random(seed)
    proteins = {f"P{i}": random_sequence(rng, 8, 20) for i in range(n_proteins)}
    fasta = folder / "seqs.fasta"
    fasta.write_text("".join(f">{p}\n{s}\n" for p, s in proteins.items()))
    seen, rows = set(), []
    while len(rows) < n_pairs:
        a, b = rng.sample(sorted(proteins), 2)
        if frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            rows.append(f"{a}\t{b}\t{len(rows) % 2}\n")
    pairs = folder / "pairs.tsv"
    pairs.write_text("protein_a\tprotein_b\tlabel\n" + "".join(rows))
    return {"fasta": fasta, "pairs": pairs, "rows": rows}


@pytest.fixture
def task(tmp_path) -> dict:
    return write_task(tmp_path)
