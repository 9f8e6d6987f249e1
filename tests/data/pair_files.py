"""Small pair files and FASTA for the data tests."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ppi_dist.data.pairs import PairSource
from ppi_dist.data.sequences import random_residues
from ppi_dist.errors import DataError


def make_proteome(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """40 proteins of 5 to 60 residues in a FASTA file (60-column lines, like the real ones)."""
    rng = random.Random(0)
    sequences = {f"P{i:03d}": random_residues(rng, rng.randint(5, 60)) for i in range(40)}
    fasta = tmp_path / "seqs.fasta"
    fasta.write_text("".join(f">{k} some protein\n{v}\n" for k, v in sequences.items()))
    return fasta, sequences


def all_pairs(n: int = 200, seed: int = 1) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)
    return [(f"P{rng.randrange(40):03d}", f"P{rng.randrange(40):03d}", i % 2) for i in range(n)]


def write_tsv(path: Path, rows: list, header: str = "protein_a\tprotein_b\tlabel") -> Path:
    path.write_text(header + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


def seen_pairs(batches) -> list[tuple[str, str, float]]:
    """(a, b, label) of the real (weight 1) pairs of some batches."""
    out = []
    for batch in batches:
        for a, b, label, weight in zip(
            batch["protein_a"], batch["protein_b"], batch["labels"], batch["weight"], strict=True
        ):
            if weight == 1.0:
                out.append((a, b, float(label)))
    return out


def error_of(source: PairSource) -> str:
    with pytest.raises(DataError) as caught:
        source.validate()
    return str(caught.value)
