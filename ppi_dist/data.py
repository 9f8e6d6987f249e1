"""Pair data: from pair files and sequences to batches the model reads.

A batch holds each distinct sequence once (`input_ids`, `attention_mask`) and, per pair,
the rows of its two proteins (`index_a`, `index_b`): the encoder runs once on the distinct
sequences and the pairs pick their states from there.

Reading data (what the trainer calls)::

    source = PairSource("train.tsv", fasta="sequences.fasta")   # or .csv/.jsonl/.parquet, .gz,
    report = source.validate()                                   # a glob, a list, hf://...
    batches = PairBatches(source, rank=rank, world_size=world_size, seed=0, training=True,
                          max_tokens=16384)
    for epoch in range(start_epoch, epochs):
        batches.set_epoch(epoch)
        for batch in batches:        # collate_pairs dict + "weight" (1.0 real pair, 0.0 padding)
            ...
        state = batches.state_dict() # save with the checkpoint; load_state_dict() resumes

Off the training loop: `loader = BatchLoader(batches, num_workers=2)` prepares the same
batches in `DataLoader` worker processes and has the same `set_epoch`, `state_dict`,
`load_state_dict` (position after the last batch it handed out, not the prefetched ones).
Batches carry the encoder's packed layout (`pack_*`, see `packing.packing_layout`).
Frozen-encoder training (`PairBatches(..., cache_index=cache.index)`) gets batches of
embedding-cache rows instead: no crops, no tokens, no layout (see `PairBatches`).

Pair files have a header naming the columns `protein_a`, `protein_b` and (optionally)
`label` (0 or 1), or other names given by `Columns`. Sequences come from a FASTA file keyed
by identifier, or from columns `sequence_a`, `sequence_b` in the pair file.

One reader per kind of file serves both the validation pass (`PairSource.validate`, once,
before training) and the stream of every epoch (`PairSource.pair_rows`), file by file, so a
row has the same location in both and nothing is matched by its text: local text files
(TSV, CSV, JSONL, plain or gzip) through our line reader `read_lines`; local parquet through
pyarrow, by row; `hf://` files and dataset names through `datasets` streaming, one file at a
time (lines of text files, rows of parquet and of datasets). For local text we keep our
reader rather than `datasets`' "text" builder: the builder opens files in universal-newline
mode (a stray carriage return splits a line, so line numbers drift), raises decoding and
truncated-gzip errors unlocated, and read Bernett train (163k lines) in 0.5 s against our
0.04 to 0.07 s (`benchmarks/data_loader.py`). Every problem is reported as a `DataError`
naming file, line (header = line 1; parquet and datasets: row index, 0-based) and field,
e.g. `pairs.tsv:17: field 'label': expected 0 or 1, got 'yes'`. Blank lines at the end of a
text file are ignored; a blank line with data after it is a bad row.
With `skip_bad_rows=True` bad rows are skipped instead and counted per reason
(`ValidationReport.skipped`), and the count is logged.

Distributed training: every rank reads the same shuffled stream and forms the same global
sequence of batches, and rank r takes global batches r, r + world_size, ... So the ranks'
batches are disjoint and together cover every pair once per epoch, and every rank takes the
same number of steps: when the number of batches does not divide by world_size, the ranks
left short get one padding batch (a copy of the epoch's last batch with `weight` 0.0), so the
trainer must weight the loss (and metrics) by `batch["weight"]`. We don't split the stream
with `datasets.distributed.split_dataset_by_node`: its shards hold the same number of pairs,
but batches formed by a token budget would then differ in number between ranks, and the
ranks would have to talk to agree on a step count. Reading a pair file of a few MB on every
rank costs about half a second per epoch (example-level `split_dataset_by_node` reads the
whole file on every rank too).
"""

from __future__ import annotations

import csv
import glob
import gzip
import itertools
import json
import logging
import math
import random
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from ppi_dist.packing import packed_tokens, packing_layout
from ppi_dist.sequences import (
    ESM2_MAX_RESIDUES,
    InvalidSequenceError,
    clean_sequence,
    crop,
    tokenize,
)

if TYPE_CHECKING:
    from ppi_dist.embeddings import CacheIndex

logger = logging.getLogger(__name__)

# Candidates tried beyond the first pair that does not fit a batch (each way): fills the
# rows' gaps at little cost; on Bernett lengths 8 brings padding from 1.08 to under 1.05.
_PACK_TRIES = 8


@dataclass(frozen=True)
class Pair:
    """One protein pair with cleaned (and, if needed, cropped) sequences."""

    protein_a: str
    protein_b: str
    sequence_a: str
    sequence_b: str
    label: float | None = None


def collate_pairs(pairs: list[Pair], *, layout: bool = True) -> dict:
    """Tokenise the distinct sequences of `pairs` once and index them per pair.

    Returns a dict with tensors `input_ids` and `attention_mask` (distinct sequences x
    tokens), `index_a` and `index_b` (pairs), `labels` (pairs, float; only when every pair
    has one) and the lists `protein_a`, `protein_b` of identifiers. With `layout` (default)
    also the encoder's packed layout of the distinct sequences, `packing.LAYOUT_FIELDS`
    (`pack_*` tensors, see `packing.packing_layout`), computed here on the CPU so the
    model can pack on the device without a host sync (`packing.packed_inputs_from_layout`).
    """
    row_of: dict[str, int] = {}
    for pair in pairs:
        row_of.setdefault(pair.sequence_a, len(row_of))
        row_of.setdefault(pair.sequence_b, len(row_of))
    input_ids, attention_mask = tokenize(list(row_of))
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "index_a": torch.tensor([row_of[p.sequence_a] for p in pairs], dtype=torch.long),
        "index_b": torch.tensor([row_of[p.sequence_b] for p in pairs], dtype=torch.long),
        "protein_a": [p.protein_a for p in pairs],
        "protein_b": [p.protein_b for p in pairs],
    }
    if all(p.label is not None for p in pairs):
        batch["labels"] = torch.tensor([p.label for p in pairs], dtype=torch.float32)
    if layout:
        batch.update(packing_layout([len(sequence) + 2 for sequence in row_of]))
    return batch


def swap_sides(batch: dict, generator: torch.Generator) -> dict:
    """Swap A and B of a random half of the pairs (augmentation for order-dependent heads).

    The coin flips come from a CPU generator (resumable, the same on any device) and move
    to the indices' device.
    """
    a, b = batch["index_a"], batch["index_b"]
    flip = (torch.rand(a.shape, generator=generator) < 0.5).to(a.device)
    return {**batch, "index_a": torch.where(flip, b, a), "index_b": torch.where(flip, a, b)}


# --------------------------------------------------------------------------- errors


class DataError(ValueError):
    """Bad input data, located: `file:line: field 'name': problem`.

    `line` is the physical line in a text file (header = 1), or the 0-based row index of a
    parquet file or a remote dataset (then printed as `file: row N`).
    """

    def __init__(
        self,
        path: str | Path,
        problem: str,
        *,
        line: int | None = None,
        row: int | None = None,
        field: str | None = None,
    ):
        self.path, self.line, self.row, self.field, self.problem = (
            str(path),
            line,
            row,
            field,
            problem,
        )
        where = str(path)
        if line is not None:
            where += f":{line}"
        elif row is not None:
            where += f": row {row}"
        what = f"field {field!r}: {problem}" if field else problem
        super().__init__(f"{where}: {what}")


class _BadRow(Exception):
    """A row-level problem, located by the caller; `reason` is the key it is counted under."""

    def __init__(self, field: str | None, problem: str, reason: str):
        super().__init__(problem)
        self.field, self.problem, self.reason = field, problem, reason


# --------------------------------------------------------------------------- files

PAIR_FORMATS = {
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_DELIMITER = {"tsv": "\t", "csv": ","}


def _format_of(path: str) -> str | None:
    name = path.lower().removesuffix(".gz")
    return PAIR_FORMATS.get(Path(name).suffix)


def _open_binary(path: str | Path):
    """Open for reading, turning the OS's reasons into one-line DataErrors."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a directory, expected a file") from None
    except PermissionError:
        raise DataError(path, "permission denied") from None
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror or error}") from None


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text without line ending) of a UTF-8 text file, plain or gzip.

    Gzip is recognised by its magic bytes. CRLF and a UTF-8 byte-order mark are accepted.
    A truncated gzip file, non-UTF-8 bytes or an unreadable path raise a located DataError.
    """
    handle = _open_binary(path)
    with handle:
        is_gzip = handle.peek(2)[:2] == b"\x1f\x8b"
        if is_gzip != str(path).lower().endswith(".gz"):
            kind = "gzip-compressed" if is_gzip else "not gzip-compressed"
            raise DataError(path, f"file is {kind} but its name says otherwise; rename it")
        stream = gzip.GzipFile(fileobj=handle) if is_gzip else handle
        number = 0
        try:
            for number, raw in enumerate(stream, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(path, "not UTF-8 text", line=number) from None
                if number == 1:
                    text = text.removeprefix("\ufeff")
                yield number, text.rstrip("\r\n")
        except EOFError:
            raise DataError(
                path, "gzip file is truncated (download or copy incomplete?)", line=number + 1
            ) from None
        except (gzip.BadGzipFile, zlib.error) as error:
            raise DataError(path, f"corrupt gzip data: {error}", line=number + 1) from None


# --------------------------------------------------------------------------- FASTA

_UNIPROT_HEADER = re.compile(r"^(?:sp|tr)\|([^|]+)\|")


def _read_fasta(path: str | Path, keep_bad: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Cleaned sequences by identifier, and (if `keep_bad`) bad records' problems by id."""
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
            if not keep_bad:
                where = {"line": line, "field": "sequence"}
                raise DataError(path, f"{problem} (record {name!r})", **where) from None
            bad[name] = problem
            return
        if name in sequences and sequences[name] != sequence:
            problem = (
                f"duplicate identifier {name!r} with a different sequence "
                f"(first at line {first_line[name]})"
            )
            if not keep_bad:
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
    """Cleaned sequences (see `sequences.clean_sequence`) by identifier, plain or gzip FASTA.

    The identifier is the first word of the header, or the accession of a UniProt header
    (`>sp|P12345|...`). The same identifier twice is accepted only with the same sequence.
    """
    return _read_fasta(path, keep_bad=False)[0]


# --------------------------------------------------------------------------- pair source


@dataclass(frozen=True)
class Columns:
    """Column names in the pair files."""

    protein_a: str = "protein_a"
    protein_b: str = "protein_b"
    label: str = "label"
    sequence_a: str = "sequence_a"
    sequence_b: str = "sequence_b"


class _PairRow(NamedTuple):
    """A valid row: identifiers, full cleaned sequences (cropped only when batched), label."""

    protein_a: str
    protein_b: str
    sequence_a: str
    sequence_b: str
    label: float | None


@dataclass
class ValidationReport:
    """What `PairSource.validate` found: usable rows, and skipped rows counted by reason."""

    rows: int = 0
    rows_per_file: dict[str, int] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    first_skipped: dict[str, str] = field(default_factory=dict)  # reason -> located message

    def summary(self) -> str:
        total = self.rows + sum(self.skipped.values())
        text = f"{self.rows:,} usable pairs"
        if self.skipped:
            reasons = "; ".join(
                f"{count:,} {reason} (first: {self.first_skipped[reason]})"
                for reason, count in self.skipped.most_common()
            )
            text += f", skipped {sum(self.skipped.values()):,} of {total:,} rows: {reasons}"
        return text


class PairSource:
    """Protein pairs from one or more pair files, with their sequences.

    Args:
        pair_files: a path, a glob (`data/*.tsv.gz`), a list of them, an `hf://` path or a
            dataset name `datasets` can stream. Formats by extension: .tsv/.tab/.txt, .csv,
            .jsonl/.ndjson/.json (one object per line), .parquet; text files may be gzipped
            (.gz). All files must have the same format.
        fasta: FASTA file (plain or gzip) keyed by the identifiers; without it the pair files
            must carry the sequences in columns `columns.sequence_a` / `sequence_b`.
        columns: column names (`Columns`, or a dict of the fields to rename).
        labeled: True requires the label column, False ignores it, None (default) uses it
            when the files have it (prediction on unlabeled pairs otherwise).
        max_residues: crop longer sequences to this (random window in training, centred
            window in evaluation; see `sequences.crop`).
        skip_bad_rows: skip bad rows (and FASTA records) instead of stopping at the first,
            and report exact counts per reason.
        with_sequences: False reads identifiers and labels only (rows get empty sequences),
            for tools like the leakage audit.
        split: split name for a dataset name.
    """

    def __init__(
        self,
        pair_files: str | Path | Iterable[str | Path],
        fasta: str | Path | None = None,
        *,
        columns: Columns | dict[str, str] | None = None,
        labeled: bool | None = None,
        max_residues: int = ESM2_MAX_RESIDUES,
        skip_bad_rows: bool = False,
        split: str = "train",
        with_sequences: bool = True,
    ):
        self.columns = Columns(**columns) if isinstance(columns, dict) else columns or Columns()
        self.fasta = str(fasta) if fasta is not None else None
        self.labeled = labeled
        self.max_residues = max_residues
        self.skip_bad_rows = skip_bad_rows
        self.split = split
        self.with_sequences = with_sequences
        self.files, self.dataset_name = _resolve(pair_files)
        formats = {_format_of(f) for f in self.files} if self.files else {None}
        if len(formats) > 1:
            raise ValueError(f"pair files mix formats {sorted(map(str, formats))}: {self.files}")
        self.format = formats.pop()
        self.sequences: dict[str, str] | None = None
        self.bad_sequences: dict[str, str] = {}
        self.report: ValidationReport | None = None
        self._wanted: list[str] | None = None  # the columns we read
        self._has_label = labeled is not False

    def __repr__(self) -> str:
        where = self.dataset_name or ", ".join(self.files)
        return f"PairSource({where!r}, fasta={self.fasta!r})"

    # -- validation --------------------------------------------------------------------

    def validate(self) -> ValidationReport:
        """Check every row once (cached); raise a located DataError or count skipped rows."""
        if self.report is not None:
            return self.report
        if self.fasta is not None and self.with_sequences:
            self.sequences, self.bad_sequences = _read_fasta(self.fasta, self.skip_bad_rows)
        report = ValidationReport()
        for name, records in self._located_records():
            usable = 0
            for location, record in records:
                try:
                    self._parse(record)
                    usable += 1
                except _BadRow as bad:
                    error = DataError(name, bad.problem, field=bad.field, **location)
                    if not self.skip_bad_rows:
                        raise error from None
                    report.skipped[bad.reason] += 1
                    report.first_skipped.setdefault(bad.reason, str(error))
            report.rows_per_file[name] = usable
            report.rows += usable
        if report.rows == 0:
            raise DataError(self.dataset_name or self.files[0], "no usable pairs")
        if report.skipped:
            logger.warning("%s: %s", self, report.summary())
        self.report = report
        return report

    def _located_records(self) -> Iterator[tuple[str, Iterator[tuple[dict, Any]]]]:
        """Per file: its name and its (location, record) pairs in file order.

        The one reader of pair files: `validate` and `pair_rows` both read through here, file
        by file, so a record is located by the same count in both and nothing is matched by
        its text. Local text: our line reader (`read_lines`); local parquet: pyarrow, rows;
        `hf://` files: `datasets`, one file at a time (lines of text files, rows of
        parquet); a dataset name: `datasets`, rows in stream order.
        """
        if self.dataset_name is not None:
            from datasets import load_dataset

            stream = load_dataset(self.dataset_name, split=self.split, streaming=True)
            name = self.dataset_name
            yield name, (({"row": i}, r) for i, r in enumerate(self._dataset_rows(name, stream)))
            return
        for path in self.files:
            remote = path.startswith("hf://")
            if self.format == "parquet":
                rows = self._remote_parquet(path) if remote else self._parquet_records(path)
                yield path, (({"row": i}, r) for i, r in enumerate(rows))
            else:
                lines = _datasets_lines(path) if remote else read_lines(path)
                yield path, (({"line": n}, r) for n, r in self._text_records(path, lines))

    def _dataset_rows(self, name: str, stream: Iterable[dict]) -> Iterator[dict]:
        for record in stream:
            if self._wanted is None:
                self._use_columns(name, list(record))
            yield record

    def _remote_parquet(self, path: str) -> Iterator[dict]:
        from datasets import load_dataset

        stream = load_dataset("parquet", data_files=[path], split="train", streaming=True)
        return self._dataset_rows(path, stream)

    def _text_records(
        self, path: str, lines: Iterator[tuple[int, str]]
    ) -> Iterator[tuple[int, dict | _BadRow]]:
        """(line, record) of one text file. Blank lines at the end of the file are ignored
        (an editor's leftover); a blank line followed by more data is a bad row."""
        first = next(lines, None)
        if first is None:
            raise DataError(path, "empty file; expected a header line naming the columns")
        if self.format == "jsonl":  # no header: the first line is data
            header = None
            lines = itertools.chain([first], lines)
        else:
            header = self._read_header(path, first[1])
        rows = 0
        blank: list[int] = []  # blank lines not (yet) followed by data
        for number, text in lines:
            if not text.strip():
                blank.append(number)
                continue
            for line in blank:
                yield line, _BadRow(None, "blank line", "blank line")
            blank.clear()
            rows += 1
            yield number, self._record_from_line(text, header)
        if rows == 0:
            raise DataError(path, "no pairs after the header", line=2)

    def _read_header(self, path: str, text: str) -> list[str]:
        header = _split(text, self.format)
        self._use_columns(path, header, line=1)
        return header

    def _use_columns(self, path: str, names: list[str], *, line: int | None = None) -> None:
        """Fix the columns we read from the first file's; every file must have them."""
        if self._wanted is None:
            c = self.columns
            if self.labeled is None:
                self._has_label = c.label in names
            wanted = [c.protein_a, c.protein_b]
            if self.fasta is None and self.with_sequences:
                wanted += [c.sequence_a, c.sequence_b]
            self._wanted = [*wanted, c.label] if self._has_label else wanted
        missing = [c for c in self._wanted if c not in names]
        if missing:
            header = ", ".join(map(repr, names))
            raise DataError(
                path, f"missing column; the header has {header}", line=line, field=missing[0]
            )

    def _record_from_line(self, text: str, header: list[str] | None) -> dict | _BadRow:
        """One line as a record; the same code for the validation pass and the stream."""
        if header is None:  # JSONL
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                return _BadRow(None, f"invalid JSON: {error.msg}", "invalid JSON")
            if not isinstance(record, dict):
                return _BadRow(None, "not a JSON object", "invalid JSON")
            if self._wanted is None:
                self._use_columns("", list(record))  # labeled or not: decided by the first row
            return record
        values = _split(text, self.format)
        if len(values) != len(header):
            problem = f"{len(values)} fields where the header has {len(header)} (ragged line)"
            return _BadRow(None, problem, "ragged line")
        return dict(zip(header, values, strict=True))

    def _parquet_records(self, path: str) -> Iterator[dict]:
        import pyarrow.parquet as pq

        _open_binary(path).close()  # the OS's reasons first, as for text files
        try:
            parquet = pq.ParquetFile(path)
        except Exception as error:  # pyarrow raises several kinds for a bad file
            raise DataError(path, f"not a readable parquet file ({error})") from None
        self._use_columns(path, parquet.schema_arrow.names)
        if parquet.metadata.num_rows == 0:
            raise DataError(path, "no pairs", row=0)
        for batch in parquet.iter_batches(batch_size=65536, columns=self._wanted):
            yield from batch.to_pylist()

    # -- parsing one row ---------------------------------------------------------------

    def _parse(self, record: dict | _BadRow) -> _PairRow:
        """A valid row from a record (dict by column name), or raise _BadRow."""
        if isinstance(record, _BadRow):
            raise record
        if len(record) < len(self._wanted) or self.format == "jsonl" or self.dataset_name:
            # Text rows have every header column (or are ragged); the others may not.
            missing = [name for name in self._wanted if name not in record]
            if missing:
                raise _BadRow(missing[0], "missing", "missing field")
        c = self.columns
        protein_a = _identifier(record[c.protein_a], c.protein_a)
        protein_b = _identifier(record[c.protein_b], c.protein_b)
        if not self.with_sequences:
            sequence_a = sequence_b = ""
        elif self.sequences is not None:
            sequence_a = self._lookup(protein_a, c.protein_a)
            sequence_b = self._lookup(protein_b, c.protein_b)
        else:
            sequence_a = _clean(record[c.sequence_a], c.sequence_a)
            sequence_b = _clean(record[c.sequence_b], c.sequence_b)
        label = _label(record[c.label], c.label) if self._has_label else None
        return _PairRow(protein_a, protein_b, sequence_a, sequence_b, label)

    def _lookup(self, protein: str, column: str) -> str:
        sequence = self.sequences.get(protein)
        if sequence is not None:
            return sequence
        if protein in self.bad_sequences:
            problem = f"sequence of {protein!r} unusable: {self.bad_sequences[protein]}"
            raise _BadRow(column, problem, "unusable sequence")
        problem = f"identifier {protein!r} is not in {self.fasta}"
        raise _BadRow(column, problem, "unknown identifier")

    # -- streaming ---------------------------------------------------------------------

    def pair_rows(self) -> Iterator[_PairRow]:
        """Valid rows in file order; bad ones skipped (skip_bad_rows) or raised."""
        self.validate()
        for name, records in self._located_records():
            for location, record in records:
                try:
                    yield self._parse(record)
                except _BadRow as bad:
                    if not self.skip_bad_rows:  # validated already, so a file changed since
                        problem = f"{bad.problem} (file changed since validation?)"
                        raise DataError(name, problem, field=bad.field, **location) from None


def _datasets_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of one text file streamed by `datasets` (remote `hf://` files).

    `datasets`' text builder opens files in universal-newline mode, so a lone carriage
    return inside a line splits it and line numbers can differ from `read_lines`'; a
    decoding error or a truncated download surfaces as `datasets`' own error, unlocated.
    """
    from datasets import load_dataset

    stream = load_dataset("text", data_files=[path], split="train", streaming=True)
    for number, record in enumerate(stream, start=1):
        text = record["text"]
        yield number, text.removeprefix("\ufeff") if number == 1 else text


def rows_and_sequences(
    pair_rows: Iterable,
) -> tuple[list[tuple[str, str, float | None]], dict[str, str]]:
    """(protein_a, protein_b, label) rows and identifier -> sequence, from `PairSource.pair_rows`.

    An identifier that comes with two different sequences (inline sequence columns) is an
    error: its states would be ambiguous.
    """
    rows: list[tuple[str, str, float | None]] = []
    sequences: dict[str, str] = {}
    for row in pair_rows:
        for protein, sequence in ((row.protein_a, row.sequence_a), (row.protein_b, row.sequence_b)):
            if sequences.setdefault(protein, sequence) != sequence:
                raise ValueError(f"identifier {protein!r} comes with two different sequences")
        rows.append((row.protein_a, row.protein_b, row.label))
    return rows, sequences


def _resolve(pair_files: str | Path | Iterable[str | Path]) -> tuple[list[str], str | None]:
    """Local files (globs expanded, in order), or a remote dataset name."""
    specs = [pair_files] if isinstance(pair_files, str | Path) else list(pair_files)
    if not specs:
        raise ValueError("no pair files given")
    files: list[str] = []
    for spec in map(str, specs):
        if spec.startswith("hf://"):
            files.append(spec)
        elif glob.has_magic(spec):
            matches = sorted(glob.glob(spec))
            if not matches:
                raise DataError(spec, "no file matches this pattern")
            files += matches
        elif _format_of(spec) is None and not Path(spec).exists() and len(specs) == 1:
            return [], spec  # a dataset name, e.g. "user/ppi-pairs"
        else:
            files.append(spec)
    unknown = [f for f in files if _format_of(f) is None]
    if unknown:
        raise DataError(unknown[0], f"unknown pair file format; use one of {sorted(PAIR_FORMATS)}")
    return files, None


def _split(text: str, file_format: str) -> list[str]:
    delimiter = _DELIMITER[file_format]
    if '"' not in text:  # fast path, same result as the csv module without quotes
        return text.split(delimiter)
    return next(csv.reader([text], delimiter=delimiter))


def _identifier(value: Any, column: str) -> str:
    if type(value) is str and value and not value[0].isspace() and not value[-1].isspace():
        return value
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise _BadRow(column, f"expected a protein identifier, got {value!r}", "bad identifier")


def _clean(value: Any, column: str) -> str:
    if not isinstance(value, str):
        raise _BadRow(column, f"expected a sequence, got {value!r}", "invalid sequence")
    try:
        return clean_sequence(value)
    except InvalidSequenceError as error:
        raise _BadRow(column, str(error), "invalid sequence") from None


def _label(value: Any, column: str) -> float:
    # Exactly 0 or 1 (int or text): "1.0", "yes", "" or True are refused, not guessed.
    if value in ("0", "1") or (type(value) is int and value in (0, 1)):
        return float(value)
    raise _BadRow(column, f"expected 0 or 1, got {value!r}", "bad label")


# --------------------------------------------------------------------------- batches


def _buffer_shuffle(rows: Iterable, buffer_size: int, rng: random.Random) -> Iterator:
    """Approximate shuffle with a bounded buffer (the algorithm of `datasets`' shuffle).

    Ours because `IterableDataset.shuffle` took 12.9 s per pass over Bernett train (163k
    rows, buffer 100k) on this CPU versus about 0.1 s for this loop.
    """
    buffer: list = []
    for row in rows:
        if len(buffer) < buffer_size:
            buffer.append(row)
            continue
        i = rng.randrange(buffer_size)
        yield buffer[i]
        buffer[i] = row
    rng.shuffle(buffer)
    yield from buffer


class PairBatches:
    """Batches of one rank, as `collate_pairs` dicts plus `weight` (1.0 real, 0.0 padding).

    Args:
        source: a `PairSource` (validated on first use).
        rank, world_size: this process and the number of processes.
        seed: with the epoch, fixes the shuffle, the batches and the random crops.
        training: shuffle and crop at random; otherwise file order and centred crops.
        max_tokens: token budget per batch, counted as the step runs it. With the encoder:
            the distinct sequences packed into rows of the longest (+2 for `<cls>`/`<eos>`),
            rows x width. Frozen (`cache_index`): the cross-attention's padded pair tokens,
            pairs x 2 x longest cached protein of the batch (both sides are padded to it).
            Batches are formed from a length-sorted buffer of `sort_buffer` pairs, then
            shuffled. Ignored when `batch_size` is given.
        max_pairs: optional cap on pairs per token-budget batch.
        batch_size: fixed-size batches of this many pairs, in stream order (no sorting).
        sort_buffer: pairs sorted by length together.
        shuffle_buffer: pairs in the shuffle buffer (training). Files sorted by label (the
            yeast DIP splits are) need a buffer about as large as the file to mix classes.
        cache_index: frozen-encoder mode, for an embedding cache holding every protein of
            `source` (`EmbeddingCache.index`). Batches are then `protein_a`, `protein_b`,
            `labels`, `weight` and the int64 `cache_rows`, `index_a`, `index_b` of
            `CacheIndex.pair_rows`: all `embeddings.with_cached_states` needs, made here
            (in the loader's workers) rather than in the training loop. No crops: the cache
            holds each protein's centred crop, and the budget counts its stored length.
            Nothing is tokenised and no packing layout is planned (the encoder does not run).

    Every rank yields the same number of batches per epoch (see the module docstring).
    After a complete pass the iterator moves to the next epoch by itself; `set_epoch`
    sets it explicitly. `state_dict()` / `load_state_dict()` resume at the next batch.
    """

    def __init__(
        self,
        source: PairSource,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        training: bool = True,
        max_tokens: int = 16384,
        max_pairs: int | None = None,
        batch_size: int | None = None,
        sort_buffer: int = 4096,
        shuffle_buffer: int = 100_000,
        cache_index: CacheIndex | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if batch_size is None and max_tokens < 2 * (source.max_residues + 2):
            raise ValueError(
                f"max_tokens={max_tokens} cannot hold one pair of two {source.max_residues}-"
                f"residue sequences; use at least {2 * (source.max_residues + 2)}"
            )
        self.source, self.rank, self.world_size, self.seed = source, rank, world_size, seed
        self.training, self.max_tokens, self.max_pairs = training, max_tokens, max_pairs
        self.batch_size, self.sort_buffer, self.shuffle_buffer = (
            batch_size,
            sort_buffer,
            shuffle_buffer,
        )
        self.cache_index = cache_index
        self.epoch = 0
        self.batches_done = 0  # global batches of this epoch taken by all ranks together

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.batches_done = epoch, 0

    def state_dict(self) -> dict:
        """The same on every rank; resuming on a different world size works too."""
        return {"epoch": self.epoch, "batches_done": self.batches_done, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"state was saved with seed {state['seed']}, not {self.seed}")
        self.epoch, self.batches_done = state["epoch"], state["batches_done"]

    def __iter__(self) -> Iterator[dict]:
        for index, rows, weight in self._plan():
            yield self._collate(index, rows, weight)

    def _plan(self) -> Iterator[tuple[int, list[_PairRow], float]]:
        """This rank's (global index, rows, weight) in order; the state moves as they go."""
        start, world, rank = self.batches_done, self.world_size, self.rank
        taken = 0
        last = None
        total = 0
        for index, rows in enumerate(self._global_batches(self.epoch)):
            total, last = index + 1, (index, rows)
            if index < start or (index - start) % world != rank:
                continue
            taken += 1
            self.batches_done = start + taken * world
            yield index, rows, 1.0
        # Ranks short of a batch in the last round take a weightless copy of the last one.
        if last is not None and taken < math.ceil(max(total - start, 0) / world):
            yield *last, 0.0
        self.epoch, self.batches_done = self.epoch + 1, 0

    def count_batches(self) -> int:
        """Steps every rank takes in the current epoch (one pass over the lengths)."""
        total = sum(1 for _ in self._global_batches(self.epoch))
        return math.ceil(max(total - self.batches_done, 0) / self.world_size)

    def _collate(self, index: int, rows: list[_PairRow], weight: float) -> dict:
        if self.cache_index is not None:
            return self._collate_cached(rows, weight)
        # One crop per distinct sequence per batch, so a protein twice in a batch is encoded once;
        # the generator depends only on (seed, epoch, batch), so resumed runs crop the same.
        rng = random.Random(f"{self.seed}:{self.epoch}:{index}") if self.training else None
        limit, cropped = self.source.max_residues, {}

        def crop_once(sequence: str) -> str:
            if sequence not in cropped:
                cropped[sequence] = crop(sequence, limit, rng)
            return cropped[sequence]

        pairs = [
            Pair(
                r.protein_a, r.protein_b, crop_once(r.sequence_a), crop_once(r.sequence_b), r.label
            )
            for r in rows
        ]
        batch = collate_pairs(pairs)
        batch["weight"] = torch.full((len(pairs),), weight)
        return batch

    def _collate_cached(self, rows: list[_PairRow], weight: float) -> dict:
        """Frozen mode: the pairs as cache rows, ids and labels; no sequence is touched."""
        protein_a = [r.protein_a for r in rows]
        protein_b = [r.protein_b for r in rows]
        batch = {"protein_a": protein_a, "protein_b": protein_b}
        batch.update(self.cache_index.pair_rows(protein_a, protein_b))
        if all(r.label is not None for r in rows):
            batch["labels"] = torch.tensor([r.label for r in rows], dtype=torch.float32)
        batch["weight"] = torch.full((len(rows),), weight)
        return batch

    def _global_batches(self, epoch: int) -> Iterator[list[_PairRow]]:
        """All ranks' batches of an epoch, in order; the same on every rank."""
        rows: Iterable[_PairRow] = self.source.pair_rows()
        rng = random.Random(f"{self.seed}:{epoch}:order")
        if self.training:
            rows = _buffer_shuffle(rows, self.shuffle_buffer, rng)
        if self.batch_size is not None:
            batch: list[_PairRow] = []
            for row in rows:
                batch.append(row)
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch
            return
        buffer: list[_PairRow] = []
        for row in rows:
            buffer.append(row)
            if len(buffer) == self.sort_buffer:
                yield from self._pack(buffer, rng)
                buffer = []
        if buffer:
            yield from self._pack(buffer, rng)

    def _pack(self, buffer: list[_PairRow], rng: random.Random) -> list[list[_PairRow]]:
        """Token-budget batches from the buffer sorted by length, then shuffled."""
        frozen = self.cache_index is not None
        batches = self._pair_runs(buffer) if frozen else self._encoder_runs(buffer)
        if self.training:
            rng.shuffle(batches)
        return batches

    def _pair_runs(self, buffer: list[_PairRow]) -> list[list[_PairRow]]:
        """Frozen mode: runs of the buffer sorted by longest cached protein, longest first.

        A run's first pair holds its longest protein, so a run of n pairs costs n x 2 x
        that length in padded pair tokens: the batch size is known from its first pair, and
        no pair is examined twice (the encoder's packing search is O(n^2) per batch).
        """
        row, stored = self.cache_index.row, self.cache_index.lengths.tolist()
        try:
            widths = [max(stored[row[r.protein_a]], stored[row[r.protein_b]]) for r in buffer]
        except KeyError as error:
            raise KeyError(f"not in the embedding cache: {error.args[0]!r}") from None
        order = sorted(range(len(buffer)), key=widths.__getitem__, reverse=True)
        batches, start = [], 0
        while start < len(order):
            size = max(self.max_tokens // (2 * widths[order[start]]), 1)
            if self.max_pairs is not None:
                size = min(size, self.max_pairs)
            batches.append([buffer[i] for i in order[start : start + size]])
            start += size
        return batches

    def _encoder_runs(self, buffer: list[_PairRow]) -> list[list[_PairRow]]:
        """With the encoder: the budget counts what the encoder runs, the batch's distinct
        sequences packed into rows of its longest (`packing.pack_rows`, the model's own
        layout). Pairs are taken longest first; when the next one no longer fits, a few more
        are tried: the next longest, then the shortest of the buffer, which fill the gaps
        long rows leave.
        """
        limit = self.source.max_residues

        def tokens(sequence: str) -> int:
            return min(len(sequence), limit) + 2

        def longest_then_shortest(row: _PairRow) -> tuple[int, int]:
            a, b = tokens(row.sequence_a), tokens(row.sequence_b)
            return max(a, b), min(a, b)

        pending = sorted(buffer, key=longest_then_shortest, reverse=True)
        batches = []
        while pending:
            batch = _FillingBatch(self.max_tokens, self.max_pairs, tokens)
            index, misses = 0, 0
            while index < len(pending) and misses <= _PACK_TRIES:
                if batch.fits(pending[index]):
                    batch.add(pending.pop(index))
                else:
                    index, misses = index + 1, misses + 1
            for index in range(len(pending) - 1, max(len(pending) - 1 - _PACK_TRIES, -1), -1):
                if batch.fits(pending[index]):
                    batch.add(pending.pop(index))
            batches.append(batch.rows)
        return batches


class _FillingBatch:
    """A token-budget batch being filled: its pairs and the tokens of its distinct sequences."""

    def __init__(self, max_tokens: int, max_pairs: int | None, tokens) -> None:
        self.max_tokens, self.max_pairs, self.tokens = max_tokens, max_pairs, tokens
        self.rows: list[_PairRow] = []
        self.lengths: dict[str, int] = {}  # distinct sequence -> encoder tokens

    def fits(self, row: _PairRow) -> bool:
        if self.max_pairs is not None and len(self.rows) == self.max_pairs:
            return False
        new = [self.tokens(s) for s in {row.sequence_a, row.sequence_b} if s not in self.lengths]
        if not self.rows or not new:
            return True
        candidate = [*self.lengths.values(), *new]
        # The sum is a lower bound of the packed count and rejects most candidates cheaply.
        return sum(candidate) <= self.max_tokens and packed_tokens(candidate) <= self.max_tokens

    def add(self, row: _PairRow) -> None:
        self.rows.append(row)
        for sequence in (row.sequence_a, row.sequence_b):
            self.lengths.setdefault(sequence, self.tokens(sequence))


# --------------------------------------------------------------------------- loader


class BatchLoader:
    """`PairBatches` prepared off the training loop, in `DataLoader` worker processes.

    Args:
        batches: the rank's `PairBatches`; the loader owns its position from now on.
        num_workers: worker processes preparing batches (read, shuffle, plan, crop,
            tokenise, packing layout; frozen: cache rows). 0: in the calling process,
            exactly `PairBatches`.
            With n workers, each plans the whole epoch (cheap) and collates every n-th batch;
            the `DataLoader` returns them in order, so the batches are the same for any n.
        pin_memory: pin batches (page-locked) for fast `non_blocking` copies; default: when
            CUDA is available.
        prefetch_factor: batches each worker prepares ahead.
        persistent_workers: keep the workers between epochs (they are told the epoch and
            position through shared memory when an epoch starts).

    Use::

        loader = BatchLoader(batches, num_workers=2)
        loader.load_state_dict(state)      # optional: resume
        for epoch in ...:
            loader.set_epoch(epoch)
            for batch in loader:           # what PairBatches yields (+ pinned)
                ...
                state = loader.state_dict()  # position after the LAST batch handed out

    `state_dict()` counts the batches this loader handed to the caller, never the ones the
    workers prepared ahead, so a checkpoint taken after a step resumes at the next batch.
    It is `PairBatches.state_dict()`, interchangeable with it, the same on every rank.
    """

    def __init__(
        self,
        batches: PairBatches,
        *,
        num_workers: int = 1,
        pin_memory: bool | None = None,
        prefetch_factor: int = 4,
        persistent_workers: bool = True,
    ):
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.batches = batches
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        # (epoch, batches_done) the workers start an epoch from; shared with them.
        self._start = torch.zeros(2, dtype=torch.long).share_memory_()
        self._loader: torch.utils.data.DataLoader | None = None

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state)

    def count_batches(self) -> int:
        return self.batches.count_batches()

    def close(self) -> None:
        """Stop the workers now (they stop anyway when the loader is garbage collected)."""
        self._loader = None

    def __iter__(self) -> Iterator[dict]:
        if self.num_workers == 0:
            for batch in self.batches:
                yield _pinned(batch) if self.pin_memory else batch
            return
        self.batches.source.validate()  # here, once: errors in this process; workers inherit
        epoch = self.batches.epoch
        self._start[0], self._start[1] = epoch, self.batches.batches_done
        if self._loader is None:
            self._loader = torch.utils.data.DataLoader(
                _WorkerStream(self.batches, self._start),
                batch_size=None,
                collate_fn=_as_is,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                prefetch_factor=self.prefetch_factor,
                persistent_workers=self.persistent_workers,
            )
        for batch, (batch_epoch, batches_done) in self._loader:
            self.batches.epoch, self.batches.batches_done = batch_epoch, batches_done
            yield batch
        self.batches.epoch, self.batches.batches_done = epoch + 1, 0


class _WorkerStream(torch.utils.data.IterableDataset):
    """In a worker: this worker's share of the epoch's batches, each with the state after it."""

    def __init__(self, batches: PairBatches, start: torch.Tensor):
        self.batches, self.start = batches, start

    def __iter__(self) -> Iterator[tuple[dict, tuple[int, int]]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        batches = self.batches  # this process's copy
        batches.epoch, batches.batches_done = int(self.start[0]), int(self.start[1])
        for k, (index, rows, weight) in enumerate(batches._plan()):
            if k % workers == worker:
                state = (batches.epoch, batches.batches_done)
                yield batches._collate(index, rows, weight), state


def _as_is(item: Any) -> Any:
    return item


def _pinned(batch: dict) -> dict:
    return {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
