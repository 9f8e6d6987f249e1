"""`PairSource`: every file kind gives the same pairs, and every bad input is located."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ppi_dist.data import reading
from ppi_dist.data.batching import TokenBatches
from ppi_dist.data.pairs import PairSource
from ppi_dist.data.planner import BatchOptions
from tests.data.pair_files import all_pairs, error_of, write_tsv


def test_formats_gzip_glob_and_inline_sequences_give_the_same_pairs(tmp_path, proteome):
    fasta, sequences = proteome
    rows = all_pairs(30)
    expected = sorted((a, b, float(y)) for a, b, y in rows)
    tsv = write_tsv(tmp_path / "p.tsv", rows)
    (tmp_path / "p.csv").write_text(tsv.read_text().replace("\t", ","))
    with gzip.open(tmp_path / "p.tsv.gz", "wt") as f:
        f.write(tsv.read_text())
    (tmp_path / "p.jsonl").write_text(
        "".join(json.dumps({"protein_a": a, "protein_b": b, "label": y}) + "\n" for a, b, y in rows)
    )
    table = {"protein_a": [r[0] for r in rows], "protein_b": [r[1] for r in rows]}
    pq.write_table(pa.table({**table, "label": [r[2] for r in rows]}), tmp_path / "p.parquet")
    inline = tmp_path / "inline.tsv"
    write_tsv(
        inline,
        [(a, b, sequences[a].lower(), sequences[b] + "*", y) for a, b, y in rows],
        header="protein_a\tprotein_b\tsequence_a\tsequence_b\tlabel",
    )
    for name in ["p.tsv", "p.csv", "p.tsv.gz", "p.jsonl", "p.parquet"]:
        source = PairSource(tmp_path / name, fasta=fasta)
        got = [(r.protein_a, r.protein_b, r.label) for r in source.pair_rows()]
        assert sorted(got) == expected, name
        assert source.report.rows == 30
    rows_inline = list(PairSource(inline).pair_rows())
    assert [(r.protein_a, r.protein_b, r.label) for r in rows_inline] == [
        (a, b, float(y)) for a, b, y in rows
    ]
    assert rows_inline[0].sequence_a == sequences[rows[0][0]]  # upper-cased, `*` stripped
    # a glob over two halves, and a list of files
    write_tsv(tmp_path / "half1.tsv", rows[:10])
    write_tsv(tmp_path / "half2.tsv", rows[10:])
    for spec in [str(tmp_path / "half*.tsv"), [tmp_path / "half1.tsv", tmp_path / "half2.tsv"]]:
        source = PairSource(spec, fasta=fasta)
        assert [(r.protein_a, r.protein_b) for r in source.pair_rows()] == [r[:2] for r in rows]


def test_crlf_bom_renamed_columns_and_unlabeled(tmp_path, proteome):
    fasta, _ = proteome
    path = tmp_path / "p.tsv"
    path.write_bytes(b"\xef\xbb\xbfA\tB\ty\r\nP001\tP002\t1\r\nP003\tP004\t0\r\n")
    source = PairSource(path, fasta, columns={"protein_a": "A", "protein_b": "B", "label": "y"})
    assert [(r.protein_a, r.protein_b, r.label) for r in source.pair_rows()] == [
        ("P001", "P002", 1.0),
        ("P003", "P004", 0.0),
    ]
    unlabeled = write_tsv(tmp_path / "u.tsv", [("P001", "P002")], header="protein_a\tprotein_b")
    batch = next(iter(TokenBatches(PairSource(unlabeled, fasta), BatchOptions(training=False))))
    assert "labels" not in batch and batch["protein_a"] == ["P001"]


def test_missing_columns(tmp_path, proteome):
    fasta, _ = proteome
    path = write_tsv(tmp_path / "p.tsv", [("P001", "P002", 1)], header="protein_a\tprot_b\tlabel")
    assert error_of(PairSource(path, fasta)).startswith(f"{path}:1: field 'protein_b': missing")
    path = write_tsv(tmp_path / "q.tsv", [("P001", "P002", 1)], header="protein_a\tprotein_b\tlbl")
    message = error_of(PairSource(path, fasta, labeled=True))
    assert message.startswith(f"{path}:1: field 'label': missing column")
    assert "'lbl'" in message  # shows what the header has
    inline = write_tsv(tmp_path / "i.tsv", [("P001", "P002", 1)])  # no FASTA, no sequences
    assert error_of(PairSource(inline)).startswith(f"{inline}:1: field 'sequence_a': missing")


def test_identifier_absent_from_fasta(tmp_path, proteome):
    fasta, _ = proteome
    path = write_tsv(tmp_path / "p.tsv", [("P001", "P002", 1), ("P003", "Q99999", 0)])
    assert error_of(PairSource(path, fasta)) == (
        f"{path}:3: field 'protein_b': identifier 'Q99999' is not in {fasta}"
    )


@pytest.mark.parametrize(
    ("sequence", "problem"),
    [("", "empty sequence"), ("MKTJ", "invalid residue 'J'"), ("MK-T", "invalid residue '-'")],
)
def test_bad_inline_sequences(tmp_path, sequence, problem):
    header = "protein_a\tprotein_b\tsequence_a\tsequence_b\tlabel"
    rows = [("A", "B", "MKT", "mkv", 1), ("A", "C", "MKT", sequence, 0)]
    path = write_tsv(tmp_path / "p.tsv", rows, header=header)
    assert error_of(PairSource(path)).startswith(f"{path}:3: field 'sequence_b': {problem}")


@pytest.mark.parametrize("label", ["1.0", "yes", "", "2", "-1", "true"])
def test_labels_must_be_0_or_1(tmp_path, proteome, label):
    fasta, _ = proteome
    path = write_tsv(tmp_path / "p.tsv", [("P001", "P002", 1), ("P001", "P003", label)])
    assert error_of(PairSource(path, fasta)) == (
        f"{path}:3: field 'label': expected 0 or 1, got {label!r}"
    )


def test_jsonl_labels_and_missing_fields(tmp_path, proteome):
    fasta, _ = proteome
    path = tmp_path / "p.jsonl"
    path.write_text('{"protein_a": "P001", "protein_b": "P002", "label": 1}\n')
    with path.open("a") as f:
        f.write('{"protein_a": "P001", "protein_b": "P002", "label": true}\n')
    assert error_of(PairSource(path, fasta)) == (
        f"{path}:2: field 'label': expected 0 or 1, got True"
    )
    path.write_text('{"protein_a": "P001", "protein_b": "P002", "label": 1}\n{"protein_a": "P1"}\n')
    assert error_of(PairSource(path, fasta)) == f"{path}:2: field 'protein_b': missing"


def test_blank_and_ragged_lines(tmp_path, proteome):
    fasta, _ = proteome
    path = tmp_path / "p.tsv"
    path.write_text("protein_a\tprotein_b\tlabel\nP001\tP002\t1\n\nP003\tP004\t0\n")
    assert error_of(PairSource(path, fasta)) == f"{path}:3: blank line"
    path.write_text("protein_a\tprotein_b\tlabel\nP001\tP002\t1\nP003\tP004\n")
    assert error_of(PairSource(path, fasta)).startswith(
        f"{path}:3: 2 fields where the header has 3"
    )
    path.write_text("protein_a\tprotein_b\tlabel\nP001\tP002\t1\t7\n")
    assert error_of(PairSource(path, fasta)).startswith(
        f"{path}:2: 4 fields where the header has 3"
    )


def test_trailing_blank_lines_are_accepted_inner_ones_located(tmp_path, proteome):
    fasta, _ = proteome
    rows = [("P001", "P002", 1), ("P003", "P004", 0)]
    tsv = tmp_path / "p.tsv"
    tsv.write_text("protein_a\tprotein_b\tlabel\nP001\tP002\t1\nP003\tP004\t0\n\n  \n\r\n")
    jsonl = tmp_path / "p.jsonl"
    lines = [
        json.dumps(dict(zip(["protein_a", "protein_b", "label"], r, strict=True))) for r in rows
    ]
    jsonl.write_text("\n".join(lines) + "\n\n\n")
    gz = tmp_path / "p.tsv.gz"
    gz.write_bytes(gzip.compress(tsv.read_bytes()))
    for path in (tsv, jsonl, gz):
        source = PairSource(path, fasta)
        assert source.validate().rows == 2 and not source.report.skipped
        assert [(r.protein_a, r.protein_b, r.label) for r in source.pair_rows()] == [
            ("P001", "P002", 1.0),
            ("P003", "P004", 0.0),
        ]
    # Blank lines followed by data: each one located, never silently dropped.
    tsv.write_text("protein_a\tprotein_b\tlabel\nP001\tP002\t1\n\n\nP003\tP004\t0\n\n")
    assert error_of(PairSource(tsv, fasta)) == f"{tsv}:3: blank line"
    source = PairSource(tsv, fasta, skip_bad_rows=True)
    report = source.validate()
    assert report.rows == 2 and report.skipped == {"blank line": 2}
    assert report.first_skipped["blank line"] == f"{tsv}:3: blank line"
    # Only blank lines after the header: no pairs.
    tsv.write_text("protein_a\tprotein_b\tlabel\n\n\n")
    assert error_of(PairSource(tsv, fasta)) == f"{tsv}:2: no pairs after the header"


def test_a_data_line_equal_to_a_header_line_is_read_not_dropped(tmp_path, proteome):
    """The stream once matched header lines by text: a data line identical to any file's
    header was dropped, and the rest of its file read with that other file's columns."""
    fasta, sequences = proteome
    with fasta.open("a") as f:  # proteins that happen to be named like the columns
        f.write(f">protein_a\n{sequences['P001']}\n>protein_b\n{sequences['P002']}\n")
    one = write_tsv(
        tmp_path / "1.tsv",
        [("P005", "P006"), ("protein_b", "protein_a"), ("P007", "P008")],
        header="protein_a\tprotein_b",
    )
    two = write_tsv(tmp_path / "2.tsv", [("P010", "P009")], header="protein_b\tprotein_a")
    source = PairSource([one, two], fasta)
    assert source.validate().rows == 4
    expected = [("P005", "P006"), ("protein_b", "protein_a"), ("P007", "P008"), ("P009", "P010")]
    assert [(r.protein_a, r.protein_b) for r in source.pair_rows()] == expected
    # Labeled: a row reading like the header in a second file is reported with file:line.
    first = write_tsv(tmp_path / "a.tsv", [("P001", "P002", 1)])
    header_row = ("protein_a", "protein_b", "label")
    second = write_tsv(tmp_path / "b.tsv", [("P003", "P004", 0), header_row])
    assert error_of(PairSource([first, second], fasta)) == (
        f"{second}:3: field 'label': expected 0 or 1, got 'label'"
    )
    source = PairSource([first, second], fasta, skip_bad_rows=True)
    assert source.validate().skipped == {"bad label": 1}
    assert len(list(source.pair_rows())) == 2


def test_empty_files(tmp_path, proteome):
    fasta, _ = proteome
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    assert error_of(PairSource(empty, fasta)).startswith(f"{empty}: empty file")
    header_only = write_tsv(tmp_path / "h.tsv", [])
    assert error_of(PairSource(header_only, fasta)) == f"{header_only}:2: no pairs after the header"
    no_records = tmp_path / "none.fasta"
    no_records.write_text("\n")
    path = write_tsv(tmp_path / "p.tsv", [("P001", "P002", 1)])
    assert error_of(PairSource(path, no_records)) == f"{no_records}: no FASTA records"


def test_truncated_gzip(tmp_path, proteome):
    fasta, _ = proteome
    whole = gzip.compress(write_tsv(tmp_path / "p.tsv", all_pairs(2000)).read_bytes())
    path = tmp_path / "p.tsv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    message = error_of(PairSource(path, fasta))
    assert message.startswith(f"{path}:") and "gzip file is truncated" in message
    line = int(message.split(":")[1])
    assert 2 < line < 2002  # the line where the data stops


def test_unreadable_paths(tmp_path, proteome, monkeypatch):
    fasta, _ = proteome
    missing = tmp_path / "nope.tsv"
    assert error_of(PairSource(missing, fasta)) == f"{missing}: file not found"
    folder = tmp_path / "folder.tsv"
    folder.mkdir()
    assert error_of(PairSource(folder, fasta)) == f"{folder}: is a directory, expected a file"
    path = write_tsv(tmp_path / "p.tsv", [("P001", "P002", 1)])
    assert (
        error_of(PairSource(path, tmp_path / "x.fasta"))
        == f"{tmp_path / 'x.fasta'}: file not found"
    )

    # Tests may run as root, which chmod cannot lock out: make `open` refuse instead.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(reading, "open", refuse, raising=False)
    assert error_of(PairSource(path, fasta)) == f"{fasta}: permission denied"


def test_skip_bad_rows_reports_exact_counts(tmp_path, proteome, caplog):
    fasta, _ = proteome
    with fasta.open("a") as f:
        f.write(">BAD1\nMKJ\n>EMPTY\n")
    good = all_pairs(50)
    path = tmp_path / "p.tsv"
    lines = ["protein_a\tprotein_b\tlabel"] + ["\t".join(map(str, r)) for r in good]
    bad_lines = {
        5: "P001\tP002\tyes",
        9: "P001\tP002\t1.0",
        12: "",
        20: "P001\tP002",
        21: "P001\tQ0000\t1",
        30: "BAD1\tP002\t0",
        31: "EMPTY\tP002\t0",
        40: "\tP002\t1",
    }
    for line, text in sorted(bad_lines.items()):
        lines.insert(line - 1, text)
    path.write_text("\r\n".join(lines) + "\r\n")
    source = PairSource(path, fasta, skip_bad_rows=True)
    report = source.validate()
    assert report.rows == 50
    assert dict(report.skipped) == {
        "bad label": 2,
        "blank line": 1,
        "ragged line": 1,
        "unknown identifier": 1,
        "unusable sequence": 2,
        "bad identifier": 1,
    }
    assert report.first_skipped["bad label"] == (
        f"{path}:5: field 'label': expected 0 or 1, got 'yes'"
    )
    assert "skipped 8 of 58 rows" in caplog.text
    # the stream drops exactly those rows, nothing else
    assert [(r.protein_a, r.protein_b, r.label) for r in source.pair_rows()] == [
        (a, b, float(y)) for a, b, y in good
    ]
    # strict mode stops at the first problem instead: the bad FASTA record
    assert error_of(PairSource(path, fasta)).startswith(
        f"{fasta}:81: field 'sequence': invalid residue 'J'"
    )
