"""FASTA files: cleaned sequences by identifier, every problem located by line.

The identifier is the first word of the header, or the accession of a UniProt header
(`>sp|P12345|NAME_HUMAN ...`). The same identifier twice is accepted only with the same
sequence. Plain or gzip (`reading.read_lines`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from ppi_dist.data.reading import read_lines
from ppi_dist.data.sequences import clean_sequence
from ppi_dist.errors import DataError, InvalidSequenceError

_UNIPROT_HEADER = re.compile(r"^(?:sp|tr)\|([^|]+)\|")


def read_fasta_records(
    path: str | Path, *, skip_bad: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """Cleaned sequences by identifier and, with `skip_bad`, the problems of the records left
    out, by identifier (without it the first bad record raises its located DataError)."""
    sequences: dict[str, str] = {}
    first_line: dict[str, int] = {}
    bad: dict[str, str] = {}

    def finish(name: str | None, line: int, chunks: list[str]) -> None:
        if name is None:
            return
        try:
            sequence = clean_sequence("".join(chunks))
        except InvalidSequenceError as error:
            problem = "record has no sequence" if not chunks else str(error)
            if not skip_bad:
                where = {"line": line, "field": "sequence"}
                raise DataError(path, f"{problem} (record {name!r})", **where) from None
            bad[name] = problem
            return
        if name in sequences and sequences[name] != sequence:
            problem = (
                f"duplicate identifier {name!r} with a different sequence "
                f"(first at line {first_line[name]})"
            )
            if not skip_bad:
                raise DataError(path, problem, line=line, field="id")
            bad[name] = problem
        sequences.setdefault(name, sequence)
        first_line.setdefault(name, line)

    name, header_line, chunks = None, 0, []
    for number, text in read_lines(path):
        if text.startswith(">"):
            finish(name, header_line, chunks)
            words = text[1:].split()
            if not words:
                raise DataError(path, "header without identifier", line=number, field="id")
            # UniProt headers `>sp|P12345|NAME_HUMAN ...` are keyed by the accession.
            uniprot = _UNIPROT_HEADER.match(words[0])
            name, header_line, chunks = (uniprot[1] if uniprot else words[0]), number, []
        elif text.strip():
            if name is None:
                raise DataError(path, "expected a '>' header line first", line=number)
            chunks.append(text)
    finish(name, header_line, chunks)
    if not sequences and not bad:
        raise DataError(path, "no FASTA records")
    for name in bad:
        sequences.pop(name, None)
    return sequences, bad


def read_fasta(path: str | Path) -> dict[str, str]:
    """Cleaned sequences (`sequences.clean_sequence`) by identifier; see the module docstring."""
    return read_fasta_records(path, skip_bad=False)[0]


def write_fasta(path: str | Path, sequences: Mapping[str, str], width: int = 60) -> Path:
    """Write `sequences` (identifier -> sequence) as FASTA, `width` residues a line."""
    path = Path(path)
    with open(path, "w") as handle:
        for protein, sequence in sequences.items():
            handle.write(f">{protein}\n")
            handle.writelines(
                sequence[i : i + width] + "\n" for i in range(0, len(sequence), width)
            )
    return path
