"""Protein pairs from pair files: the one pair record, and the source that reads and checks them.

    source = PairSource("train.tsv", fasta="sequences.fasta")   # or .csv/.jsonl/.parquet, .gz,
    report = source.validate()                                   # a glob, a list, hf://...
    for pair in source.pair_rows():                              # `Pair`s, in file order
        ...

Pair files have a header naming the columns `protein_a`, `protein_b` and (optionally)
`label` (0 or 1), or other names given by `Columns`. Sequences come from a FASTA file keyed
by identifier, or from columns `sequence_a`, `sequence_b` in the pair file.

One reader per kind of file serves both the validation pass (`PairSource.validate`, once,
before training) and the stream of every epoch (`PairSource.pair_rows`), file by file, so a
row has the same location in both and nothing is matched by its text: local text files
(TSV, CSV, JSONL, plain or gzip) through our line reader (`reading.read_lines`); local
parquet through pyarrow, by row; `hf://` files and dataset names through `datasets`
streaming, one file at a time (lines of text files, rows of parquet and of datasets). Every
problem is reported as a `DataError` naming file, line (header = line 1; parquet and
datasets: row index, 0-based) and field, e.g. `pairs.tsv:17: field 'label': expected 0 or
1, got 'yes'`. Blank lines at the end of a text file are ignored; a blank line with data
after it is a bad row. With `skip_bad_rows=True` bad rows are skipped instead and counted
per reason (`ValidationReport.skipped`), and the count is logged.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow.parquet as pq

from ppi_dist.data.fasta import read_fasta_records
from ppi_dist.data.reading import (
    datasets_lines,
    format_of,
    open_binary,
    read_lines,
    resolve_pair_files,
    split_fields,
)
from ppi_dist.data.sequences import ESM2_MAX_RESIDUES, clean_sequence
from ppi_dist.errors import BadRow, DataError, InvalidSequenceError, UserError
from ppi_dist.files import write_text_atomic

logger = logging.getLogger(__name__)


class Pair(NamedTuple):
    """One protein pair: THE pair record, from a file's row to a score.

    `sequence_a`, `sequence_b`: the cleaned sequences, whole (cropped only when batched);
    empty where a pair is named by its proteins alone (all-vs-all plans, the audit).
    `label`: 1.0 or 0.0, None when unlabelled.
    """

    protein_a: str
    protein_b: str
    sequence_a: str = ""
    sequence_b: str = ""
    label: float | None = None


@dataclass(frozen=True)
class Columns:
    """Column names in the pair files."""

    protein_a: str = "protein_a"
    protein_b: str = "protein_b"
    label: str = "label"
    sequence_a: str = "sequence_a"
    sequence_b: str = "sequence_b"


@dataclass
class ValidationReport:
    """What `PairSource.validate` found: usable rows, and skipped rows counted by reason."""

    rows: int = 0
    rows_per_file: dict[str, int] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    first_skipped: dict[str, str] = field(default_factory=dict)  # reason -> located message
    classes: Counter = field(default_factory=Counter)  # label (0, 1) -> usable rows
    contradictions: int = 0  # rows whose pair (either order) came earlier with the other label
    first_contradiction: str | None = None  # located message of the first

    def summary(self) -> str:
        total = self.rows + sum(self.skipped.values())
        text = f"{self.rows:,} usable pairs"
        if self.skipped:
            reasons = "; ".join(
                f"{count:,} {reason} (first: {self.first_skipped[reason]})"
                for reason, count in self.skipped.most_common()
            )
            text += f", skipped {sum(self.skipped.values()):,} of {total:,} rows: {reasons}"
        if self.contradictions:
            text += (
                f"; {self.contradictions:,} contradictory labels kept "
                f"(first: {self.first_contradiction})"
            )
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
        allow_contradictory_labels: keep a pair labelled 1 on one line and 0 on another
            (either order: (A, B) and (B, A) are one pair), counted in the report; by
            default a labelled source refuses it, naming both lines.
        with_sequences: False reads identifiers and labels only (rows get empty sequences),
            for tools like the leakage audit.

    A dataset name is read at its "train" split; set `split` on the source before it is
    read for another.
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
        with_sequences: bool = True,
        allow_contradictory_labels: bool = False,
    ):
        self.columns = Columns(**columns) if isinstance(columns, dict) else columns or Columns()
        self.fasta = str(fasta) if fasta is not None else None
        self.labeled = labeled
        self.max_residues = max_residues
        self.skip_bad_rows = skip_bad_rows
        self.split = "train"  # of a dataset name
        self.with_sequences = with_sequences
        self.allow_contradictory_labels = allow_contradictory_labels
        self.files, self.dataset_name = resolve_pair_files(pair_files)
        formats = {format_of(f) for f in self.files} if self.files else {None}
        if len(formats) > 1:
            raise UserError(f"pair files mix formats {sorted(map(str, formats))}: {self.files}")
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
            self.sequences, self.bad_sequences = read_fasta_records(
                self.fasta, skip_bad=self.skip_bad_rows
            )
        report = ValidationReport()
        labelled: dict[tuple[str, str], tuple[float, str, dict, bool]] = {}
        for name, records in self._located_records():
            usable = 0
            for location, record in records:
                try:
                    pair = self._parse(record)
                    usable += 1
                except BadRow as bad:
                    error = DataError(name, bad.problem, field=bad.field, **location)
                    if not self.skip_bad_rows:
                        raise error from None
                    report.skipped[bad.reason] += 1
                    report.first_skipped.setdefault(bad.reason, str(error))
                    continue
                if pair.label is not None:
                    report.classes[int(pair.label)] += 1
                    self._check_label(labelled, pair, name, location, report)
            report.rows_per_file[name] = usable
            report.rows += usable
        if report.rows == 0:
            raise DataError(self.dataset_name or self.files[0], "no usable pairs")
        if report.skipped:
            logger.warning("%s: %s", self, report.summary())
        self.report = report
        return report

    def _check_label(
        self,
        labelled: dict[tuple[str, str], tuple[float, str, dict, bool]],
        pair: Pair,
        name: str,
        location: dict,
        report: ValidationReport,
    ) -> None:
        """The same pair (either order) with both labels: refused naming both lines, or
        (allow_contradictory_labels) counted."""
        swapped = pair.protein_b < pair.protein_a
        key = (pair.protein_b, pair.protein_a) if swapped else (pair.protein_a, pair.protein_b)
        earlier = labelled.setdefault(key, (pair.label, name, location, swapped))
        if earlier[0] == pair.label:
            return
        label, first_name, first_location, first_swapped = earlier
        first = str(DataError(first_name, "", **first_location)).rstrip(": ")
        order = " (in the other order)" if swapped != first_swapped else ""
        problem = (
            f"pair ({pair.protein_a}, {pair.protein_b}) is labelled {int(pair.label)} here and "
            f"{int(label)} at {first}{order}"
        )
        error = DataError(name, problem, field=self.columns.label, **location)
        report.contradictions += 1
        if report.first_contradiction is None:
            report.first_contradiction = str(error)
        if not self.allow_contradictory_labels and self.labeled:
            raise DataError(
                name,
                f"{problem}: contradictory labels; keep one, or allow them with "
                "allow_contradictory_labels",
                field=self.columns.label,
                **location,
            )

    def _located_records(self) -> Iterator[tuple[str, Iterator[tuple[dict, Any]]]]:
        """Per file: its name and its (location, record) pairs in file order.

        The one reader of pair files: `validate` and `pair_rows` both read through here, file
        by file, so a record is located by the same count in both and nothing is matched by
        its text. Local text: our line reader (`read_lines`); local parquet: pyarrow, rows;
        `hf://` files: `datasets`, one file at a time (lines of text files, rows of
        parquet); a dataset name: `datasets`, rows in stream order.
        """
        if self.dataset_name is not None:
            from datasets import load_dataset  # seconds to import; only datasets need it

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
                lines = datasets_lines(path) if remote else read_lines(path)
                yield path, (({"line": n}, r) for n, r in self._text_records(path, lines))

    def _dataset_rows(self, name: str, stream: Iterable[dict]) -> Iterator[dict]:
        for record in stream:
            if self._wanted is None:
                self._use_columns(name, list(record))
            yield record

    def _remote_parquet(self, path: str) -> Iterator[dict]:
        from datasets import load_dataset  # seconds to import; only remote files need it

        stream = load_dataset("parquet", data_files=[path], split="train", streaming=True)
        return self._dataset_rows(path, stream)

    def _text_records(
        self, path: str, lines: Iterator[tuple[int, str]]
    ) -> Iterator[tuple[int, dict | BadRow]]:
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
                yield line, BadRow(None, "blank line", "blank line")
            blank.clear()
            rows += 1
            yield number, self._record_from_line(text, header)
        if rows == 0:
            raise DataError(path, "no pairs after the header", line=2)

    def _read_header(self, path: str, text: str) -> list[str]:
        header = split_fields(text, self.format)
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

    def _record_from_line(self, text: str, header: list[str] | None) -> dict | BadRow:
        """One line as a record; the same code for the validation pass and the stream."""
        if header is None:  # JSONL
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                return BadRow(None, f"invalid JSON: {error.msg}", "invalid JSON")
            if not isinstance(record, dict):
                return BadRow(None, "not a JSON object", "invalid JSON")
            if self._wanted is None:
                self._use_columns("", list(record))  # labeled or not: decided by the first row
            return record
        values = split_fields(text, self.format)
        if len(values) != len(header):
            problem = f"{len(values)} fields where the header has {len(header)} (ragged line)"
            return BadRow(None, problem, "ragged line")
        return dict(zip(header, values, strict=True))

    def _parquet_records(self, path: str) -> Iterator[dict]:
        open_binary(path).close()  # the OS's reasons first, as for text files
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

    def _parse(self, record: dict | BadRow) -> Pair:
        """A valid row from a record (dict by column name), or raise BadRow."""
        if isinstance(record, BadRow):
            raise record
        if len(record) < len(self._wanted) or self.format == "jsonl" or self.dataset_name:
            # Text rows have every header column (or are ragged); the others may not.
            missing = [name for name in self._wanted if name not in record]
            if missing:
                raise BadRow(missing[0], "missing", "missing field")
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
        return Pair(protein_a, protein_b, sequence_a, sequence_b, label)

    def _lookup(self, protein: str, column: str) -> str:
        sequence = self.sequences.get(protein)
        if sequence is not None:
            return sequence
        if protein in self.bad_sequences:
            problem = f"sequence of {protein!r} unusable: {self.bad_sequences[protein]}"
            raise BadRow(column, problem, "unusable sequence")
        problem = f"identifier {protein!r} is not in {self.fasta}"
        raise BadRow(column, problem, "unknown identifier")

    # -- streaming ---------------------------------------------------------------------

    def pair_rows(self) -> Iterator[Pair]:
        """Valid rows in file order; bad ones skipped (skip_bad_rows) or raised."""
        self.validate()
        for name, records in self._located_records():
            for location, record in records:
                try:
                    yield self._parse(record)
                except BadRow as bad:
                    if not self.skip_bad_rows:  # validated already, so a file changed since
                        problem = f"{bad.problem} (file changed since validation?)"
                        raise DataError(name, problem, field=bad.field, **location) from None


def _identifier(value: Any, column: str) -> str:
    if type(value) is str and value and not value[0].isspace() and not value[-1].isspace():
        return value
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise BadRow(column, f"expected a protein identifier, got {value!r}", "bad identifier")


def _clean(value: Any, column: str) -> str:
    if not isinstance(value, str):
        raise BadRow(column, f"expected a sequence, got {value!r}", "invalid sequence")
    try:
        return clean_sequence(value)
    except InvalidSequenceError as error:
        raise BadRow(column, str(error), "invalid sequence") from None


def _label(value: Any, column: str) -> float:
    # Exactly 0 or 1 (int or text): "1.0", "yes", "" or True are refused, not guessed.
    if value in ("0", "1") or (type(value) is int and value in (0, 1)):
        return float(value)
    raise BadRow(column, f"expected 0 or 1, got {value!r}", "bad label")


def sequences_of(pairs: Iterable[Pair]) -> dict[str, str]:
    """Identifier -> sequence of every protein of `pairs`, in order of appearance.

    An identifier that comes with two different sequences (inline sequence columns) is an
    error: its states would be ambiguous.
    """
    sequences: dict[str, str] = {}
    for pair in pairs:
        for protein, sequence in (
            (pair.protein_a, pair.sequence_a),
            (pair.protein_b, pair.sequence_b),
        ):
            if sequences.setdefault(protein, sequence) != sequence:
                raise UserError(f"identifier {protein!r} comes with two different sequences")
    return sequences


def write_pairs(path: str | Path, pairs: Iterable[Pair]) -> Path:
    """Write labelled pairs as the TSV `PairSource` reads (`protein_a`, `protein_b`, `label`);
    the file appears whole or not at all (`files.write_text_atomic`)."""
    lines = ["protein_a\tprotein_b\tlabel\n"]
    lines += [f"{p.protein_a}\t{p.protein_b}\t{int(p.label)}\n" for p in pairs]
    write_text_atomic(path, "".join(lines))
    return Path(path)
