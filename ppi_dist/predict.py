"""Score protein pairs with a saved SE-CAI model: a pair file, all-vs-all, or set A x set B.

    python -m ppi_dist.predict --model runs/best --fasta proteome.fasta --out scores.tsv
    python -m ppi_dist.predict --model runs/best --fasta a.fasta --fasta_b b.fasta --out x.parquet
    python -m ppi_dist.predict --model runs/best --pairs test.tsv --fasta seqs.fasta --out p.tsv
    accelerate launch -m ppi_dist.predict ...          # several GPUs: each takes a slice

Cost: every distinct protein goes through the encoder once (`embeddings.EmbeddingCache`);
each pair then costs only cross-attention + head, so all-vs-all over N proteins is N encoder
passes + N(N-1)/2 cheap pair scores.

Order and resuming: pairs are enumerated in a fixed order, cut into chunks. All-vs-all sorts
the proteins by length and cuts them into tiles of `tile` proteins; a chunk is one pair of
tiles (I <= J), so the pairs of a chunk have similar lengths and pad little. A pair file is
cut into chunks of `chunk_pairs` rows in file order. Rank r of W takes chunks r, r+W, ...
and appends its rows to `OUT.partial/rankR-of-W.tsv`; after each chunk a small JSON file
beside it records the next chunk and the byte size of the part file. A rerun with the same
arguments truncates the part file to that size and goes on from there. When every rank is
done, rank 0 merges the parts in chunk order (or keeps the top k) into OUT (.tsv or
.parquet) and removes OUT.partial. Nothing holds the N^2 table in memory.

Output columns: protein_a, protein_b, probability, predicted (0/1 at the model's saved
`decision_threshold`, or --threshold), and label when the pair file has labels. All-vs-all
names each pair once, protein_a being the one that comes first in the FASTA file.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ppi_dist.cli import run_tool
from ppi_dist.data import PairSource, read_fasta
from ppi_dist.embeddings import DEFAULT_MEMORY_LIMIT, EmbeddingCache, encoder_fingerprint
from ppi_dist.errors import UserError
from ppi_dist.rundir import acquire_lock
from ppi_dist.scoring import CHUNK_PAIRS, Row, encode_proteins, score_pairs
from ppi_dist.sequences import ESM2_MAX_RESIDUES

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = {".tsv": "tsv", ".txt": "tsv", ".parquet": "parquet", ".pq": "parquet"}


# --------------------------------------------------------------------------- pair plans


class AllPairsPlan:
    """Every unordered pair of one protein set, or every (a, b) of set A x set B, in chunks.

    Proteins are sorted by (length, input position) and cut into tiles of `tile`; a chunk
    is a pair of tiles. Self pairs (a protein with itself) only with `include_self`.
    """

    def __init__(
        self,
        lengths: Mapping[str, int],
        ids_a: list[str],
        ids_b: list[str] | None = None,
        *,
        include_self: bool = False,
        tile: int = 64,
    ) -> None:
        if tile < 1:
            raise ValueError("tile must be at least 1")
        self.single = ids_b is None
        self.include_self = include_self
        self.position = {p: i for i, p in enumerate(ids_a)}  # FASTA order orients pairs

        def tiles(ids: list[str]) -> list[list[str]]:
            order = {p: i for i, p in enumerate(ids)}
            ranked = sorted(ids, key=lambda p: (lengths[p], order[p]))
            return [ranked[i : i + tile] for i in range(0, len(ranked), tile)]

        self.tiles_a = tiles(ids_a)
        self.tiles_b = self.tiles_a if self.single else tiles(ids_b)
        n_a, n_b = len(self.tiles_a), len(self.tiles_b)
        if self.single:
            self.chunk_tiles = [(i, j) for i in range(n_a) for j in range(i, n_a)]
            n = len(ids_a)
            self.total_pairs = n * (n - 1) // 2 + (n if include_self else 0)
        else:
            self.chunk_tiles = [(i, j) for i in range(n_a) for j in range(n_b)]
            shared = len(set(ids_a) & set(ids_b))
            self.total_pairs = len(ids_a) * len(ids_b) - (0 if include_self else shared)
        self.num_chunks = len(self.chunk_tiles)
        self.has_labels = False

    def pairs_of(self, chunk: int) -> list[Row]:
        i, j = self.chunk_tiles[chunk]
        rows: list[Row] = []
        for x, a in enumerate(self.tiles_a[i]):
            # Within a diagonal tile, take each unordered pair once: b after a in the tile.
            start = (x if self.include_self else x + 1) if self.single and i == j else 0
            for b in self.tiles_b[j][start:]:
                if a == b and not self.include_self:
                    continue
                if self.single and self.position[b] < self.position[a]:
                    rows.append((b, a, None))
                else:
                    rows.append((a, b, None))
        return rows

    def proteins_of(self, wanted: Callable[[int], bool]) -> list[str]:
        """The distinct proteins of the wanted chunks (a rank's share)."""
        seen: dict[str, None] = {}
        for chunk in range(self.num_chunks):
            if wanted(chunk):
                i, j = self.chunk_tiles[chunk]
                seen.update(dict.fromkeys([*self.tiles_a[i], *self.tiles_b[j]]))
        return list(seen)

    def chunks(self, wanted: Callable[[int], bool]) -> Iterator[tuple[int, list[Row]]]:
        for chunk in range(self.num_chunks):
            if wanted(chunk):
                yield chunk, self.pairs_of(chunk)


class PairFilePlan:
    """The rows of a pair file (read through `data.PairSource`) in chunks of `chunk_pairs`."""

    def __init__(self, source: PairSource, chunk_pairs: int = CHUNK_PAIRS) -> None:
        if chunk_pairs < 1:
            raise ValueError("chunk_pairs must be at least 1")
        self.source = source
        self.chunk_pairs = chunk_pairs
        self.total_pairs = source.validate().rows
        self.num_chunks = math.ceil(self.total_pairs / chunk_pairs)
        self.sequences: dict[str, str] = {}
        self.has_labels = False
        for row in source.pair_rows():  # one pass: the distinct proteins, and labels or not
            for protein, sequence in (
                (row.protein_a, row.sequence_a),
                (row.protein_b, row.sequence_b),
            ):
                known = self.sequences.setdefault(protein, sequence)
                if known != sequence:
                    raise ValueError(
                        f"{source}: identifier {protein!r} comes with two different sequences"
                    )
            self.has_labels = self.has_labels or row.label is not None

    def proteins_of(self, wanted: Callable[[int], bool]) -> list[str]:
        """The distinct proteins of the wanted chunks (a rank's share)."""
        seen: dict[str, None] = {}
        for _, rows in self.chunks(wanted):
            seen.update(dict.fromkeys(p for a, b, _ in rows for p in (a, b)))
        return list(seen)

    def chunks(self, wanted: Callable[[int], bool]) -> Iterator[tuple[int, list[Row]]]:
        chunk, rows = 0, []
        for row in self.source.pair_rows():
            rows.append((row.protein_a, row.protein_b, row.label))
            if len(rows) == self.chunk_pairs:
                if wanted(chunk):
                    yield chunk, rows
                chunk, rows = chunk + 1, []
        if rows and wanted(chunk):
            yield chunk, rows


# --------------------------------------------------------------------------- running


@dataclass
class PredictOptions:
    """What changes the output; part of the resume signature."""

    threshold: float
    top_k: int | None = None
    min_prob: float | None = None
    include_self: bool = False
    tile: int = 64
    chunk_pairs: int = CHUNK_PAIRS
    max_residues: int = ESM2_MAX_RESIDUES
    cache_dtype: str = "float16"


def _parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _part_paths(out: Path, rank: int, world_size: int) -> tuple[Path, Path]:
    stem = _parts_dir(out) / f"rank{rank}-of-{world_size}"
    return stem.with_suffix(".tsv"), stem.with_suffix(".json")


def _write_json_atomic(path: Path, value: dict) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(value) + "\n")
    partial.replace(path)


def _chunk_lines(
    chunk: int, rows: list[Row], probabilities: np.ndarray, options: PredictOptions
) -> list[str]:
    keep = np.arange(len(rows))
    if options.min_prob is not None:
        keep = keep[probabilities[keep] >= options.min_prob]
    if options.top_k is not None and keep.size > options.top_k:
        # A chunk's share of the global top k is within its own top k; ties: earlier row.
        best = np.argsort(-probabilities[keep], kind="stable")[: options.top_k]
        keep = np.sort(keep[best])
    lines = []
    for k in keep:
        a, b, label = rows[k]
        p = float(probabilities[k])
        label_text = "" if label is None else str(int(label))
        lines.append(f"{chunk}\t{a}\t{b}\t{p!r}\t{int(p >= options.threshold)}\t{label_text}\n")
    return lines


class ProgressMismatchError(UserError, RuntimeError):
    """The output's progress files belong to another run (inputs, model or options)."""


def check_threshold(model: torch.nn.Module, given: float | None) -> float:
    """The decision threshold: `given`, else the model's saved one; either must lie in [0, 1]."""
    where = getattr(model, "loaded_from", None) or "the model"
    if given is not None:
        if not (isinstance(given, int | float) and 0 <= given <= 1):
            raise UserError(f"--threshold must lie in [0, 1], got {given}")
        return float(given)
    saved = getattr(model.config, "decision_threshold", None)
    if saved is None:
        raise UserError(f"{where}: no decision_threshold saved; pass --threshold")
    if not (isinstance(saved, int | float) and 0 <= saved <= 1):
        raise UserError(
            f"{where}: saved decision_threshold {saved} is not in [0, 1] (damaged config?); "
            "fix it, or pass --threshold"
        )
    return float(saved)


def check_probabilities(model: torch.nn.Module, probabilities: np.ndarray, rows: list) -> None:
    """Stop on a NaN or infinite score: it means damaged weights, not a prediction."""
    bad = ~np.isfinite(np.asarray(probabilities, dtype=np.float64))
    if bad.any():
        a, b = rows[int(np.argmax(bad))][:2]
        where = getattr(model, "loaded_from", None) or "the model"
        raise UserError(
            f"{where}: scores are not finite ({int(bad.sum())} of {bad.size} pairs, first "
            f"{a} x {b}); the model's weights are damaged, or the run that made them diverged"
        )


def run_rank(
    model: torch.nn.Module,
    cache: EmbeddingCache,
    plan: AllPairsPlan | PairFilePlan,
    out: Path,
    options: PredictOptions,
    signature: str,
    *,
    rank: int = 0,
    world_size: int = 1,
    max_chunks: int | None = None,
    progress: bool = True,
    score_kwargs: dict | None = None,
) -> bool:
    """Score this rank's chunks (r, r+W, ...) into its part file; True when all are done.

    Resumes from the rank's progress file. `max_chunks` stops after that many chunks of this
    call (a time slice; also how tests interrupt a run).
    """
    from tqdm.auto import tqdm

    part, progress_path = _part_paths(out, rank, world_size)
    part.parent.mkdir(parents=True, exist_ok=True)
    state = {"signature": signature, "next_chunk": 0, "bytes": 0, "pairs": 0, "done": False}
    if progress_path.is_file():
        saved = json.loads(progress_path.read_text())
        if saved.get("signature") != signature:
            raise ProgressMismatchError(
                f"{progress_path} belongs to a run with other inputs, model or options; "
                "rerun with the same arguments, or pass --overwrite to start afresh"
            )
        state = saved
    if state["done"]:
        return True
    mine = [c for c in range(state["next_chunk"], plan.num_chunks) if c % world_size == rank]
    total = math.ceil(plan.total_pairs / world_size)
    bar = tqdm(
        total=total,
        initial=min(state["pairs"], total),
        unit="pair",
        unit_scale=True,
        desc=f"scoring (rank {rank})",
        disable=not progress,
        smoothing=0.1,
    )
    with open(part, "r+b" if part.exists() else "w+b") as handle:
        handle.truncate(state["bytes"])  # drop rows written after the last recorded chunk
        handle.seek(state["bytes"])
        start = state["next_chunk"]
        wanted = plan.chunks(lambda c: c >= start and c % world_size == rank)
        for done_now, (chunk, rows) in enumerate(wanted):
            if max_chunks is not None and done_now >= max_chunks:
                break
            probabilities = score_pairs(
                model, cache, [(a, b) for a, b, _ in rows], **(score_kwargs or {})
            )
            check_probabilities(model, probabilities, rows)
            handle.write("".join(_chunk_lines(chunk, rows, probabilities, options)).encode())
            handle.flush()
            state.update(
                next_chunk=chunk + 1, bytes=handle.tell(), pairs=state["pairs"] + len(rows)
            )
            state["done"] = chunk == mine[-1]
            _write_json_atomic(progress_path, state)
            bar.update(len(rows))
        if not mine and not state["done"]:
            state["done"] = True
            _write_json_atomic(progress_path, state)
    bar.close()
    return bool(state["done"])


def _read_part(path: Path) -> Iterator[tuple[int, list[str]]]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            yield int(fields[0]), fields[1:]


def finalize(out: Path, world_size: int, options: PredictOptions, has_labels: bool) -> int:
    """Merge the ranks' part files in chunk order (or keep the top k) into `out`; rows written."""
    parts = [_part_paths(out, r, world_size) for r in range(world_size)]
    for _, progress_path in parts:
        if not progress_path.is_file() or not json.loads(progress_path.read_text())["done"]:
            raise RuntimeError(f"{progress_path}: that rank has not finished")
    merged = heapq.merge(*(_read_part(part) for part, _ in parts), key=lambda item: item[0])
    rows: Iterator[list[str]] = (fields for _, fields in merged)
    if options.top_k is not None:
        # Highest probability first; ties keep enumeration order (the counter).
        best = heapq.nlargest(
            options.top_k,
            ((float(f[2]), -i, f) for i, f in enumerate(rows)),
            key=lambda item: (item[0], item[1]),
        )
        rows = (fields for _, _, fields in best)
    columns = ["protein_a", "protein_b", "probability", "predicted"]
    if has_labels:
        columns.append("label")
    temporary = out.with_name(out.name + ".writing")
    count = _write_table(temporary, rows, columns, OUTPUT_FORMATS[out.suffix.lower()])
    temporary.replace(out)
    shutil.rmtree(_parts_dir(out))
    return count


def _write_table(path: Path, rows: Iterator[list[str]], columns: list[str], fmt: str) -> int:
    """Stream rows (text fields as in the part files) to TSV or Parquet; returns the count."""
    count = 0
    width = len(columns)
    if fmt == "tsv":
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("\t".join(columns) + "\n")
            for fields in rows:
                handle.write("\t".join(fields[:width]) + "\n")
                count += 1
        return count
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        "protein_a": pa.string(),
        "protein_b": pa.string(),
        "probability": pa.float64(),
        "predicted": pa.int8(),
        "label": pa.int8(),
    }
    schema = pa.schema([(name, types[name]) for name in columns])
    converters = [str, str, float, int, int]
    with pq.ParquetWriter(path, schema) as writer:
        buffer: list[list[str]] = []

        def flush() -> None:
            values = list(zip(*buffer, strict=True))
            arrays = [
                pa.array([converters[c](v) for v in values[c]], type=schema.field(c).type)
                for c in range(width)
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            buffer.clear()

        for fields in rows:
            buffer.append(fields[:width])
            count += 1
            if len(buffer) == 65536:
                flush()
        if buffer:
            flush()
    return count


def run_signature(
    model: torch.nn.Module, inputs: list[str | None], options: PredictOptions, world_size: int
) -> str:
    """Identifies a run: model weights, input files (path, size, mtime), options, ranks."""
    files = []
    for name in inputs:
        if name is None:
            continue
        path = Path(name)
        stat = path.stat() if path.exists() else None
        files.append(
            [
                str(path.resolve()),
                stat.st_size if stat else None,
                stat.st_mtime_ns if stat else None,
            ]
        )
    identity = {
        "model": encoder_fingerprint(model),
        "inputs": files,
        "options": asdict(options),
        "world_size": world_size,
    }
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def predict(
    model: torch.nn.Module,
    out: str | Path,
    *,
    pairs: str | Path | None = None,
    fasta: str | Path | None = None,
    fasta_b: str | Path | None = None,
    threshold: float | None = None,
    top_k: int | None = None,
    min_prob: float | None = None,
    include_self: bool = False,
    tile: int = 64,
    chunk_pairs: int = CHUNK_PAIRS,
    cache_dir: str | Path | None = None,
    cache_dtype: str = "float16",
    max_residues: int = ESM2_MAX_RESIDUES,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    overwrite: bool = False,
    max_chunks: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
    progress: bool = True,
    score_kwargs: dict | None = None,
) -> dict:
    """Score pairs into `out`; see the module docstring. Returns a summary dict.

    `rank`/`world_size`/`barrier` come from Accelerate in `main`; called in-process with
    `world_size > 1`, each rank's call scores its slice and `finalize` merges.
    `summary["complete"]` is False when `max_chunks` stopped the run early.
    """
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise UserError(f"{out}: output must end in one of {sorted(OUTPUT_FORMATS)}")
    if top_k is not None and top_k < 1:
        raise UserError("top_k must be at least 1")
    if pairs is None and fasta is None:
        raise UserError("give --pairs FILE, or --fasta F (all-vs-all), or --fasta F --fasta_b G")
    if fasta_b is not None and (fasta is None or pairs is not None):
        raise UserError("--fasta_b needs --fasta (set A) and no --pairs")
    threshold = check_threshold(model, threshold)
    options = PredictOptions(
        threshold=threshold,
        top_k=top_k,
        min_prob=min_prob,
        include_self=include_self,
        tile=tile,
        chunk_pairs=chunk_pairs,
        max_residues=max_residues,
        cache_dtype=cache_dtype,
    )
    # One predict per output: a second one is refused (lock released on return or exit).
    lock = acquire_lock(out.with_name(out.name + ".lock"), what="predict") if rank == 0 else None
    try:
        return _predict_locked(
            model,
            out,
            pairs=pairs,
            fasta=fasta,
            fasta_b=fasta_b,
            options=options,
            cache_dir=cache_dir,
            memory_limit=memory_limit,
            overwrite=overwrite,
            max_chunks=max_chunks,
            rank=rank,
            world_size=world_size,
            barrier=barrier,
            progress=progress,
            score_kwargs=score_kwargs,
        )
    finally:
        if lock is not None:
            lock.release()


def _predict_locked(
    model,
    out: Path,
    *,
    pairs,
    fasta,
    fasta_b,
    options: PredictOptions,
    cache_dir,
    memory_limit,
    overwrite,
    max_chunks,
    rank,
    world_size,
    barrier,
    progress,
    score_kwargs,
) -> dict:
    max_residues, cache_dtype = options.max_residues, options.cache_dtype
    include_self, tile, chunk_pairs = options.include_self, options.tile, options.chunk_pairs
    parts = _parts_dir(out)
    if rank == 0 and overwrite:
        shutil.rmtree(parts, ignore_errors=True)
        out.unlink(missing_ok=True)
    if barrier is not None:
        barrier()
    if out.exists() and not parts.exists():
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")

    if pairs is not None:
        source = PairSource(pairs, fasta=fasta, max_residues=max_residues)
        plan: AllPairsPlan | PairFilePlan = PairFilePlan(source, chunk_pairs)
        sequences = plan.sequences
    else:
        set_a = read_fasta(fasta)
        set_b = read_fasta(fasta_b) if fasta_b is not None else None
        sequences = {**set_a, **(set_b or {})}
        if set_b is not None:
            clash = [p for p in set_a.keys() & set_b.keys() if set_a[p] != set_b[p]]
            if clash:
                raise UserError(f"{clash[0]!r} has different sequences in {fasta} and {fasta_b}")
        lengths = {p: min(len(s), max_residues) for p, s in sequences.items()}
        plan = AllPairsPlan(
            lengths,
            list(set_a),
            list(set_b) if set_b is not None else None,
            include_self=include_self,
            tile=tile,
        )
    if plan.total_pairs == 0:
        raise UserError("no pairs to score")

    signature = run_signature(model, [pairs, fasta, fasta_b], options, world_size)
    cache_options = {"dtype": cache_dtype, "max_residues": max_residues, "progress": progress}
    if cache_dir is not None:
        # One shared folder: rank 0 encodes every protein once, the others wait and read it
        # (several ranks writing one memory-mapped file at once would corrupt it).
        if rank == 0:
            cache = encode_proteins(model, sequences, directory=cache_dir, **cache_options)
        if barrier is not None:
            barrier()
        if rank != 0:
            cache = EmbeddingCache.open(cache_dir)
            if not cache.matches(model):
                raise RuntimeError(f"{cache_dir}: the cache is not from this model's encoder")
    else:
        # Each rank encodes only the proteins of its own chunks.
        mine = plan.proteins_of(lambda c: c % world_size == rank)
        cache = encode_proteins(
            model,
            {p: sequences[p] for p in mine},
            memory_limit=memory_limit,
            spill_dir=parts / f"embeddings-rank{rank}",
            **cache_options,
        )
    complete = run_rank(
        model,
        cache,
        plan,
        out,
        options,
        signature,
        rank=rank,
        world_size=world_size,
        max_chunks=max_chunks,
        progress=progress,
        score_kwargs=score_kwargs,
    )
    summary = {
        "output": str(out),
        "pairs": plan.total_pairs,
        "proteins": len(sequences),
        "chunks": plan.num_chunks,
        "complete": complete,
        "rows_written": None,
    }
    if barrier is not None:
        barrier()
    if rank == 0 and world_size == 1 and complete:
        summary["rows_written"] = finalize(out, 1, options, plan.has_labels)
    elif rank == 0 and barrier is not None:
        # Every rank passed the barrier, so all parts are final (or some rank stopped early).
        done = [
            json.loads(_part_paths(out, r, world_size)[1].read_text())["done"]
            for r in range(world_size)
        ]
        summary["complete"] = all(done)
        if all(done):
            summary["rows_written"] = finalize(out, world_size, options, plan.has_labels)
    return summary


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ppi_dist.predict",
        description="Score protein pairs with a saved SE-CAI model (each protein encoded once).",
    )
    parser.add_argument(
        "--model", required=True, help="saved SE-CAI folder, or a Hub repo id (downloaded)"
    )
    parser.add_argument("--revision", default=None, help="Hub revision of --model")
    parser.add_argument("--pairs", help="pair file (tsv/csv/jsonl/parquet; label optional)")
    parser.add_argument("--fasta", help="sequences; alone (no --pairs): score all-vs-all")
    parser.add_argument("--fasta_b", help="second set: score every pair of --fasta x --fasta_b")
    parser.add_argument("--out", required=True, help="output .tsv or .parquet")
    parser.add_argument("--include_self", action="store_true", help="also score (p, p)")
    parser.add_argument("--top_k", type=int, help="keep only the k highest probabilities")
    parser.add_argument("--min_prob", type=float, help="keep only pairs at least this likely")
    parser.add_argument(
        "--threshold", type=float, help="decision threshold (default: the model's saved one)"
    )
    parser.add_argument("--cache_dir", help="keep the per-residue states here (reused if valid)")
    parser.add_argument(
        "--cache_dtype", default="float16", choices=["float16", "bfloat16", "float32"]
    )
    parser.add_argument(
        "--memory_limit_gb",
        type=float,
        default=DEFAULT_MEMORY_LIMIT / 2**30,
        help="in-memory cache limit; above it the states go to disk",
    )
    parser.add_argument("--max_residues", type=int, default=ESM2_MAX_RESIDUES)
    parser.add_argument("--tile", type=int, default=64, help="proteins per all-vs-all tile")
    parser.add_argument(
        "--chunk_pairs", type=int, default=CHUNK_PAIRS, help="pair-file rows per chunk"
    )
    parser.add_argument(
        "--max_tokens",
        type=int,
        default=65536,
        help="pair batch budget: pairs x (longest A + longest B)",
    )
    parser.add_argument(
        "--max_chunks", type=int, help="stop after this many chunks (rerun to resume)"
    )
    parser.add_argument("--overwrite", action="store_true", help="discard output and progress")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--allow_encoder_mismatch",
        action="store_true",
        help="score though the encoder's weights changed",
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks for user errors too")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; user errors print one line and exit 2 (`--debug`: traceback)."""
    return run_tool(_main, argv)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from accelerate import PartialState

    from ppi_dist.hub import load_model

    # cpu=True without CUDA: otherwise `accelerate launch` on CPU starts independent
    # single-process runs instead of one gloo group (seen with accelerate 1.15).
    state = PartialState(cpu=not torch.cuda.is_available())
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != state.num_processes:  # untied processes would all write rank 0's part
        raise UserError(f"launched {launched} processes but got a group of {state.num_processes}")
    allow = args.allow_encoder_mismatch
    model = load_model(args.model, revision=args.revision, allow_encoder_mismatch=allow)
    model = model.to(state.device)
    summary = predict(
        model,
        args.out,
        pairs=args.pairs,
        fasta=args.fasta,
        fasta_b=args.fasta_b,
        threshold=args.threshold,
        top_k=args.top_k,
        min_prob=args.min_prob,
        include_self=args.include_self,
        tile=args.tile,
        chunk_pairs=args.chunk_pairs,
        cache_dir=args.cache_dir,
        cache_dtype=args.cache_dtype,
        max_residues=args.max_residues,
        memory_limit=int(args.memory_limit_gb * 2**30),
        overwrite=args.overwrite,
        max_chunks=args.max_chunks,
        rank=state.process_index,
        world_size=state.num_processes,
        barrier=state.wait_for_everyone if state.num_processes > 1 else None,
        progress=not args.no_progress and state.is_main_process,
        score_kwargs={"max_tokens": args.max_tokens},
    )
    if state.is_main_process:
        print(json.dumps(summary))
        if not summary["complete"]:
            print("stopped early; rerun the same command to resume", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
