"""Reading pair files: their kinds, resolving globs and dataset names, and text lines.

`read_lines` is our reader of local text (TSV, CSV, JSONL, plain or gzip) rather than
`datasets`' "text" builder: the builder opens files in universal-newline mode (a stray
carriage return splits a line, so line numbers drift), raises decoding and truncated-gzip
errors unlocated, and reads a large pair file several times slower (BENCHMARKS.md).
`hf://` text files go through `datasets` (`datasets_lines`).
Every problem is a `DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import glob
import gzip
import zlib
from collections.abc import Iterable, Iterator
from io import BufferedReader
from pathlib import Path

from ppi_dist.errors import DataError

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


def format_of(path: str) -> str | None:
    """The kind of a pair file by its name (`PAIR_FORMATS`, after a `.gz`), or None."""
    name = path.lower().removesuffix(".gz")
    return PAIR_FORMATS.get(Path(name).suffix)


def open_binary(path: str | Path) -> BufferedReader:
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
    handle = open_binary(path)
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


def datasets_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of one text file streamed by `datasets` (remote `hf://` files).

    `datasets`' text builder opens files in universal-newline mode, so a lone carriage
    return inside a line splits it and line numbers can differ from `read_lines`'; a
    decoding error or a truncated download surfaces as `datasets`' own error, unlocated.
    """
    from datasets import load_dataset  # seconds to import; only remote files need it

    stream = load_dataset("text", data_files=[path], split="train", streaming=True)
    for number, record in enumerate(stream, start=1):
        text = record["text"]
        yield number, text.removeprefix("\ufeff") if number == 1 else text


def resolve_pair_files(
    pair_files: str | Path | Iterable[str | Path],
) -> tuple[list[str], str | None]:
    """Local or `hf://` files (globs expanded, in order), or a dataset name `datasets` streams."""
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
        elif format_of(spec) is None and not Path(spec).exists() and len(specs) == 1:
            return [], spec  # a dataset name, e.g. "user/ppi-pairs"
        else:
            files.append(spec)
    unknown = [f for f in files if format_of(f) is None]
    if unknown:
        raise DataError(unknown[0], f"unknown pair file format; use one of {sorted(PAIR_FORMATS)}")
    return files, None


def split_fields(text: str, file_format: str) -> list[str]:
    """The fields of one TSV or CSV line (quotes as the csv module reads them)."""
    delimiter = _DELIMITER[file_format]
    if '"' not in text:  # fast path, same result as the csv module without quotes
        return text.split(delimiter)
    return next(csv.reader([text], delimiter=delimiter))
