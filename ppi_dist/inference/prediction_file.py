"""The file `predict` writes: each rank's rows in a part file, merged into TSV or Parquet.

A rank appends its chunks' rows to `OUT.partial/rankR-of-W.tsv`, one line per pair:

    chunk  protein_a  protein_b  probability  raw_score  predicted  label

`raw_score` is the model's sigmoid; `probability` is its calibrated value when the model
ships a calibration (`models/calibration.py`), else the raw score again. `predicted` is the
raw score at the decision threshold, the scale the threshold was chosen on (the map is
increasing, so it is the same cut on the calibrated scale). Floats are written with `repr`,
so merging loses nothing. The merged file keeps `raw_score` only when it differs from
`probability`, and `label` only when the pair file had labels.
"""

from __future__ import annotations

import heapq
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ppi_dist.data.pairs import Pair

OUTPUT_FORMATS = {".tsv": "tsv", ".txt": "tsv", ".parquet": "parquet", ".pq": "parquet"}
SCREEN_FIELDS = ("stage", "first_pass")  # a screen's: what scored the row, the first pass's score
FIELDS = (
    "protein_a",
    "protein_b",
    "probability",
    "raw_score",
    "predicted",
    "label",
    *SCREEN_FIELDS,
)
STAGES = ("cross_attention", "first_pass")  # the values of `stage`


def _float_or_none(text: str) -> float | None:
    return float(text) if text else None  # empty: a pair the screen did not send on


_TYPES = {
    "protein_a": (pa.string(), str),
    "protein_b": (pa.string(), str),
    "probability": (pa.float64(), _float_or_none),
    "raw_score": (pa.float64(), _float_or_none),
    "predicted": (pa.int8(), int),
    "label": (pa.int8(), int),
    "stage": (pa.string(), str),
    "first_pass": (pa.float64(), float),
}


@dataclass(frozen=True)
class RowSelection:
    """Which scored pairs become rows, and their decision."""

    threshold: float
    """Decision threshold on the raw score."""
    top_k: int | None = None
    """Keep only the k most probable pairs."""
    min_prob: float | None = None
    """Keep only pairs whose `probability` (calibrated when the model has one) reaches it."""


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def part_paths(out: Path, rank: int, world_size: int) -> tuple[Path, Path]:
    """This rank's part file and its progress file."""
    stem = parts_dir(out) / f"rank{rank}-of-{world_size}"
    return stem.with_suffix(".tsv"), stem.with_suffix(".json")


def output_columns(calibrated: bool, has_labels: bool, screened: bool = False) -> list[str]:
    columns = ["protein_a", "protein_b", "probability"]
    columns += ["raw_score"] if calibrated else []
    columns += ["predicted"]
    columns += ["label"] if has_labels else []
    return columns + (list(SCREEN_FIELDS) if screened else [])


def chunk_lines(
    chunk: int,
    pairs: Sequence[Pair],
    scores: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    selection: RowSelection,
) -> list[str]:
    """The part-file lines of one scored chunk (input order), filtered by `selection`.

    `scores`: the raw scores, their probabilities and, from a screen, the first pass's
    probabilities (None without one). A pair the screen did not send to cross-attention has
    a NaN raw score: its row has no probability, is predicted 0, and `min_prob` and `top_k`
    (on the final scores) never keep it.
    """
    raw, probabilities, first_pass = scores
    scored = np.isfinite(raw)
    keep = np.arange(len(pairs))
    if selection.min_prob is not None or selection.top_k is not None:
        keep = keep[scored]
    if selection.min_prob is not None:
        keep = keep[probabilities[keep] >= selection.min_prob]
    if selection.top_k is not None and keep.size > selection.top_k:
        # A chunk's share of the global top k is within its own top k; ties: earlier row.
        best = np.argsort(-probabilities[keep], kind="stable")[: selection.top_k]
        keep = np.sort(keep[best])
    lines = []
    for k in keep:
        pair = pairs[k]
        label = "" if pair.label is None else str(int(pair.label))
        if scored[k]:
            score = float(raw[k])
            shown = (repr(float(probabilities[k])), repr(score))
            decision = int(score >= selection.threshold)
        else:
            shown, decision = ("", ""), 0
        fields = (pair.protein_a, pair.protein_b, *shown, str(decision), label)
        if first_pass is not None:
            fields += (STAGES[0] if scored[k] else STAGES[1], repr(float(first_pass[k])))
        lines.append(f"{chunk}\t" + "\t".join(fields) + "\n")
    return lines


def _read_part(path: Path) -> Iterator[tuple[int, list[str]]]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            yield int(fields[0]), fields[1:]


def finalize(out: Path, world_size: int, top_k: int | None, columns: list[str]) -> int:
    """Merge the ranks' part files in chunk order (or keep the top k) into `out`'s `columns`
    (`output_columns`); removes the parts; returns the rows written."""
    parts = [part_paths(out, r, world_size) for r in range(world_size)]
    for _, progress_path in parts:
        if not progress_path.is_file() or not json.loads(progress_path.read_text())["done"]:
            raise RuntimeError(f"{progress_path}: that rank has not finished")
    merged = heapq.merge(*(_read_part(part) for part, _ in parts), key=lambda item: item[0])
    rows: Iterator[list[str]] = (fields for _, fields in merged)
    if top_k is not None:
        # Highest probability first; ties keep enumeration order (the counter).
        best = heapq.nlargest(
            top_k,
            ((float(f[2]), -i, f) for i, f in enumerate(rows)),
            key=lambda item: (item[0], item[1]),
        )
        rows = (fields for _, _, fields in best)
    index = [FIELDS.index(name) for name in columns]
    selected = ([fields[i] for i in index] for fields in rows)
    temporary = out.with_name(out.name + ".writing")
    count = _write_table(temporary, selected, columns, OUTPUT_FORMATS[out.suffix.lower()])
    temporary.replace(out)
    shutil.rmtree(parts_dir(out))
    return count


def _write_table(path: Path, rows: Iterator[list[str]], columns: list[str], fmt: str) -> int:
    """Stream rows (text fields as in the part files) to TSV or Parquet; returns the count."""
    count = 0
    if fmt == "tsv":
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("\t".join(columns) + "\n")
            for fields in rows:
                handle.write("\t".join(fields) + "\n")
                count += 1
        return count
    schema = pa.schema([(name, _TYPES[name][0]) for name in columns])
    converters = [_TYPES[name][1] for name in columns]
    with pq.ParquetWriter(path, schema) as writer:
        buffer: list[list[str]] = []

        def flush() -> None:
            values = list(zip(*buffer, strict=True))
            arrays = [
                pa.array([converters[c](v) for v in values[c]], type=schema.field(c).type)
                for c in range(len(columns))
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            buffer.clear()

        for fields in rows:
            buffer.append(fields)
            count += 1
            if len(buffer) == 65536:
                flush()
        if buffer:
            flush()
    return count
