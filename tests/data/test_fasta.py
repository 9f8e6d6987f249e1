"""FASTA: identifiers (UniProt accessions too), duplicates, and bad records located by line."""

from __future__ import annotations

import gzip

import pytest

from ppi_dist.data.fasta import read_fasta, write_fasta
from ppi_dist.data.pairs import PairSource
from tests.data.pair_files import error_of, write_tsv


def test_uniprot_headers_and_duplicate_identical_records(tmp_path):
    fasta = tmp_path / "s.fasta.gz"
    with gzip.open(fasta, "wt") as f:
        f.write(">sp|P12345|ABC_HUMAN Some protein\nMKT\nLLV\n>P2\nmkty*\n>P2 again\nMKTY\n")
    assert read_fasta(fasta) == {"P12345": "MKTLLV", "P2": "MKTY"}


@pytest.mark.parametrize(
    ("fasta_text", "line", "field", "problem"),
    [
        (">P001\nMKT\n>P002\nMKV\n>P001\nMKA\n", 5, "id", "duplicate identifier 'P001'"),
        (">P001\nMKT\n>P002\n>P003\nMKV\n", 3, "sequence", "record has no sequence"),
        (">P001\nMKT\n>P002\nMK1V\n", 3, "sequence", "invalid residue '1'"),
    ],
)
def test_bad_fasta_records(tmp_path, fasta_text, line, field, problem):
    fasta = tmp_path / "s.fasta"
    fasta.write_text(fasta_text)
    path = write_tsv(tmp_path / "p.tsv", [("P001", "P001", 1)])
    message = error_of(PairSource(path, fasta))
    assert message.startswith(f"{fasta}:{line}: field '{field}': {problem}")


def test_written_fasta_reads_back_with_60_residue_lines(tmp_path):
    sequences = {"P1": "M" * 130, "P2": "ACDE"}
    path = write_fasta(tmp_path / "s.fasta", sequences)
    assert read_fasta(path) == sequences
    assert max(len(line) for line in path.read_text().splitlines()) == 60
