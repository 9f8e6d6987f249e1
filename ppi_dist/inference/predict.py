"""Score protein pairs with a saved SE-CAI model into a file: a pair file, all-vs-all, or A x B.

    summary = predict(model, PredictFiles("scores.tsv", fasta="proteome.fasta"))  # all-vs-all
    summary = predict(model, PredictFiles("p.parquet", pairs="test.tsv", fasta="seqs.fasta"),
                      PredictOptions(top_k=1000), PredictRun(cache_dir="states"))

Cost: every distinct protein goes through the encoder once (`inference.cache`); each pair
then costs only cross-attention + head, so all-vs-all over N proteins is N encoder passes +
N(N-1)/2 cheap pair scores.

Order and resuming: pairs are enumerated in a fixed order, cut into chunks (`plans`). Rank r
of W takes chunks r, r+W, ...
and appends its rows to `OUT.partial/rankR-of-W.tsv`; after each chunk a small JSON file
beside it records the next chunk and the byte size of the part file. A rerun with the same
arguments truncates the part file to that size and goes on from there. When every rank is
done, rank 0 merges the parts in chunk order (or keeps the top k) into OUT (.tsv or
.parquet) and removes OUT.partial. Nothing holds the N^2 table in memory.

Output columns (`prediction_file`): protein_a, protein_b, probability (calibrated when the
model ships a calibration, with the raw sigmoid beside it as raw_score), predicted (0/1: the
raw score at the model's saved `decision_threshold`, or `PredictOptions.threshold`), and
label when the pair file has labels. All-vs-all names each pair once, protein_a being the
one that comes first in the FASTA file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ppi_dist.checks import check_probability, check_saved_threshold
from ppi_dist.data.fasta import read_fasta
from ppi_dist.data.pairs import Pair, PairSource
from ppi_dist.errors import ProgressMismatchError, UserError
from ppi_dist.files import acquire_lock, write_text_atomic
from ppi_dist.inference.cache import DEFAULT_MEMORY_LIMIT, EmbeddingCache
from ppi_dist.inference.plans import AllPairsPlan, PairFilePlan
from ppi_dist.inference.prediction_file import (
    OUTPUT_FORMATS,
    RowSelection,
    chunk_lines,
    finalize,
    output_columns,
    part_paths,
    parts_dir,
)
from ppi_dist.inference.scoring import (
    CHUNK_PAIRS,
    ONE_PROCESS,
    Ranks,
    encode_proteins,
    score_cached,
    scoring_windowing,
)
from ppi_dist.inference.screen import FirstPassScreen, check_first_pass
from ppi_dist.models.calibration import calibrated
from ppi_dist.models.encoder import encoder_fingerprint
from ppi_dist.models.windows import Windowing

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class PredictOptions:
    """What changes the output; part of the resume signature (so a rerun with other options
    is refused rather than merged)."""

    threshold: float | None = None
    """Decision threshold on the raw score (the scale the model's own was chosen on);
    None: the model's saved one."""
    top_k: int | None = None
    """Keep only the k highest probabilities."""
    min_prob: float | None = None
    """Keep only pairs at least this likely (the `probability` column: calibrated when the
    model ships a calibration)."""
    include_self: bool = False
    """All-vs-all: also score each protein with itself."""
    tile: int = 64
    """All-vs-all: proteins per tile (a chunk is a pair of tiles)."""
    chunk_pairs: int = CHUNK_PAIRS
    """Pair files: rows per chunk."""
    max_residues: int | None = None
    """Residues per encoder window; None: the model's own (`SECAIConfig.max_residues`)."""
    window_overlap: int | None = None
    """Residues neighbouring windows share; None: the model's own."""
    windows: str | None = None
    """"all" windows of a long protein, stitched, or its centred "crop"; None: the model's
    own `scoring_windows`."""
    cache_dtype: str = "float16"
    """Precision of the stored per-residue states."""
    prior: float | None = None
    """The share of interacting pairs the probabilities should hold at (say 0.01 for a
    proteome screen); None: the calibration's own (`models/calibration.py`)."""
    screen: float | None = None
    """Score by cross-attention only the pairs in the first pass's best `screen` share (in
    (0, 1]; `inference.screen`); the others keep their first-pass score. None: every pair."""


@dataclass(frozen=True)
class PredictFiles:
    """What to score, and where: `pairs` (a pair file), every pair of `fasta`, or `fasta` x
    `fasta_b`, into `out` (.tsv or .parquet)."""

    out: str | Path
    pairs: str | Path | None = None
    fasta: str | Path | None = None
    fasta_b: str | Path | None = None


@dataclass(frozen=True)
class PredictRun:
    """How a predict runs, which does not change its output.

    `ranks` come from Accelerate in `cli.predict`: each rank scores its slice, and rank 0
    merges when all are done. `cache_dir` keeps the per-residue states (rank 0 encodes, the
    others read; reused when valid); without it they are in memory, on disk beside the output
    above `memory_limit` bytes. `overwrite` discards an earlier output and its progress.
    `max_chunks` stops this rank after that many chunks (a time slice; rerun to resume).
    `max_tokens` budgets the pair batches (pairs x (longest A + longest B)).
    """

    ranks: Ranks = ONE_PROCESS
    cache_dir: str | Path | None = None
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    overwrite: bool = False
    max_chunks: int | None = None
    progress: bool = True
    max_tokens: int = 65536


def check_threshold(model: torch.nn.Module, given: float | None) -> float:
    """The decision threshold: `given`, else the model's saved one; either must lie in [0, 1]
    (`checks.check_probability`, the check `report` makes too)."""
    where = getattr(model, "loaded_from", None) or "the model"
    if given is not None:
        return check_probability("--threshold", given)
    return check_saved_threshold(where, getattr(model.config, "decision_threshold", None))


def check_prior(model: torch.nn.Module, prior: float | None) -> None:
    """A prior to move the probabilities to needs a calibration that records its own."""
    if prior is None:
        return
    where = getattr(model, "loaded_from", None) or "the model"
    calibration = getattr(model, "calibration", None)
    if not 0 < prior < 1:
        raise UserError(f"--prior must lie strictly between 0 and 1, got {prior}")
    if calibration is None or calibration.prior is None:
        missing = (
            "no calibration.json" if calibration is None else "a calibration without its prior"
        )
        raise UserError(f"{where}: --prior needs the model's calibration, and it has {missing}")


def check_probabilities(
    model: torch.nn.Module, probabilities: np.ndarray, pairs: list[Pair]
) -> None:
    """Stop on a NaN or infinite score: it means damaged weights, not a prediction."""
    bad = ~np.isfinite(np.asarray(probabilities, dtype=np.float64))
    if bad.any():
        a, b = pairs[int(np.argmax(bad))][:2]
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
    run: PredictRun = PredictRun(),
    screen: FirstPassScreen | None = None,
) -> bool:
    """Score this rank's chunks (r, r+W, ...) into its part file; True when all are done.

    Resumes from the rank's progress file. `run.max_chunks` stops after that many chunks of
    this call (a time slice; also how tests interrupt a run). With a `screen`, only the pairs
    its first pass keeps are scored by cross-attention.
    """
    ranks, max_chunks = run.ranks, run.max_chunks
    part, progress_path = part_paths(out, ranks.rank, ranks.world_size)
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
    mine = [c for c in range(state["next_chunk"], plan.num_chunks) if ranks.takes(c)]
    total = math.ceil(plan.total_pairs / ranks.world_size)
    bar = tqdm(
        total=total,
        initial=min(state["pairs"], total),
        unit="pair",
        unit_scale=True,
        desc=f"scoring (rank {ranks.rank})",
        disable=not run.progress,
        smoothing=0.1,
    )
    with open(part, "r+b" if part.exists() else "w+b") as handle:
        handle.truncate(state["bytes"])  # drop rows written after the last recorded chunk
        handle.seek(state["bytes"])
        start = state["next_chunk"]
        wanted = plan.chunks(lambda c: c >= start and ranks.takes(c))
        for done_now, (chunk, pairs) in enumerate(wanted):
            if max_chunks is not None and done_now >= max_chunks:
                break
            lines = _scored_lines(model, cache, (chunk, pairs), options, run, screen)
            handle.write("".join(lines).encode())
            handle.flush()
            state.update(
                next_chunk=chunk + 1, bytes=handle.tell(), pairs=state["pairs"] + len(pairs)
            )
            state["done"] = chunk == mine[-1]
            write_text_atomic(progress_path, json.dumps(state) + "\n")
            bar.update(len(pairs))
        if not mine and not state["done"]:
            state["done"] = True
            write_text_atomic(progress_path, json.dumps(state) + "\n")
    bar.close()
    return bool(state["done"])


def _scored_lines(
    model: torch.nn.Module,
    cache: EmbeddingCache,
    chunk_pairs: tuple[int, list[Pair]],
    options: PredictOptions,
    run: PredictRun,
    screen: FirstPassScreen | None,
) -> list[str]:
    """One chunk's part-file lines: every pair through cross-attention, or with a `screen`
    the pairs its first pass keeps (the others: raw score NaN, their first-pass score)."""
    chunk, pairs = chunk_pairs
    first_pass = None
    if screen is None:
        raw = score_cached(model, cache, pairs, max_tokens=run.max_tokens)
        kept = np.arange(len(pairs))
    else:
        first_pass = screen.logits(chunk, pairs)
        kept = np.flatnonzero(screen.kept(first_pass))
        raw = np.full(len(pairs), np.nan)
        if kept.size:
            raw[kept] = score_cached(
                model, cache, [pairs[k] for k in kept], max_tokens=run.max_tokens
            )
        first_pass = 1.0 / (1.0 + np.exp(-first_pass.astype(np.float64)))
    check_probabilities(model, raw[kept], [pairs[k] for k in kept])
    probabilities = calibrated(model, raw, options.prior)
    probabilities = raw if probabilities is None else probabilities
    selection = RowSelection(options.threshold, options.top_k, options.min_prob)
    return chunk_lines(chunk, pairs, (raw, probabilities, first_pass), selection)


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
        "model": encoder_fingerprint(model.encoder),
        "inputs": files,
        "options": asdict(options),
        "calibration": getattr(model, "calibration", None) and asdict(model.calibration),
        "world_size": world_size,
    }
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def predict(
    model: torch.nn.Module,
    files: PredictFiles,
    options: PredictOptions = PredictOptions(),
    run: PredictRun = PredictRun(),
) -> dict:
    """Score the pairs `files` name into `files.out`; see the module docstring. Returns a
    summary dict; `summary["complete"]` is False when `run.max_chunks` stopped it early."""
    out = Path(files.out)
    _check_files(files, options)
    if options.screen is not None:
        check_first_pass(model)
    windowing = scoring_windowing(
        model, options.max_residues, options.window_overlap, options.windows
    )
    check_prior(model, options.prior)
    options = replace(
        options,
        threshold=check_threshold(model, options.threshold),
        max_residues=windowing.max_residues,
        window_overlap=windowing.overlap,
        windows=windowing.mode,
    )
    ranks = run.ranks
    # One predict per output: a second one is refused (lock released on return or exit).
    lock = (
        acquire_lock(out.with_name(out.name + ".lock"), what="predict", holds=out)
        if ranks.rank == 0
        else None
    )
    try:
        parts = parts_dir(out)
        if ranks.rank == 0 and run.overwrite:
            shutil.rmtree(parts, ignore_errors=True)
            out.unlink(missing_ok=True)
        if ranks.barrier is not None:
            ranks.barrier()
        if out.exists() and not parts.exists():
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
        plan, sequences = _plan(files, options)
        inputs = [files.pairs, files.fasta, files.fasta_b]
        signature = run_signature(model, inputs, options, ranks.world_size)
        cache = _encoded(model, plan, sequences, windowing, options, run, parts)
        screen = None
        if options.screen is not None:
            screen = FirstPassScreen(model, cache, plan, options.screen, progress=run.progress)
        complete = run_rank(model, cache, plan, out, options, signature, run, screen)
        summary = {
            "output": str(out),
            "pairs": plan.total_pairs,
            "proteins": len(sequences),
            "chunks": plan.num_chunks,
            "complete": complete,
            "rows_written": None,
            "encoding": windowing.describe(),
            **_probability_summary(model, options),
        }
        if screen is not None:
            summary["screen"] = screen.describe()
        calibration = getattr(model, "calibration", None)
        columns = output_columns(calibration is not None, plan.has_labels, screen is not None)
        return _merge(summary, out, options.top_k, columns, ranks)
    finally:
        if lock is not None:
            lock.release()


def _check_files(files: PredictFiles, options: PredictOptions) -> None:
    if Path(files.out).suffix.lower() not in OUTPUT_FORMATS:
        raise UserError(f"{files.out}: output must end in one of {sorted(OUTPUT_FORMATS)}")
    if options.top_k is not None and options.top_k < 1:
        raise UserError("top_k must be at least 1")
    if options.screen is not None and not 0 < options.screen <= 1:
        raise UserError(f"screen must lie in (0, 1], got {options.screen}")
    if files.pairs is None and files.fasta is None:
        raise UserError("give --pairs FILE, or --fasta F (all-vs-all), or --fasta F --fasta_b G")
    if files.fasta_b is not None and (files.fasta is None or files.pairs is not None):
        raise UserError("--fasta_b needs --fasta (set A) and no --pairs")


def _encoded(
    model: torch.nn.Module,
    plan: AllPairsPlan | PairFilePlan,
    sequences: dict[str, str],
    windowing: Windowing,
    options: PredictOptions,
    run: PredictRun,
    parts: Path,
) -> EmbeddingCache:
    """The per-residue states this rank scores from: a shared `run.cache_dir`, or only the
    proteins of this rank's own chunks, in memory or spilled beside the output."""
    ranks = run.ranks
    encoding = {"dtype": options.cache_dtype, "windowing": windowing, "progress": run.progress}
    if run.cache_dir is not None:
        return _shared_cache(model, sequences, run.cache_dir, encoding, ranks)
    # A screen ranks every pair of the plan, so it needs every protein's vector.
    wanted = ranks.takes if options.screen is None else lambda chunk: True
    mine = {p: sequences[p] for p in plan.proteins_of(wanted)}
    spill = parts / f"embeddings-rank{ranks.rank}"
    return encode_proteins(model, mine, memory_limit=run.memory_limit, spill_dir=spill, **encoding)


def _probability_summary(model: torch.nn.Module, options: PredictOptions) -> dict:
    """What the probability column is, and the threshold (on the calibrated scale too)."""
    calibration = getattr(model, "calibration", None)
    summary = {
        "probability": "raw score" if calibration is None else calibration.describe(options.prior),
        "threshold": options.threshold,
    }
    if calibration is not None:  # the same cut on the calibrated scale
        cut = calibration.apply([options.threshold], options.prior)
        summary["threshold_calibrated"] = float(cut[0])
    return summary


def _plan(
    files: PredictFiles, options: PredictOptions
) -> tuple[AllPairsPlan | PairFilePlan, dict[str, str]]:
    """The plan of the pairs to score and the sequences of their proteins."""
    pairs, fasta, fasta_b = files.pairs, files.fasta, files.fasta_b
    if pairs is not None:
        # Labels are carried through, not learnt from: a pair labelled both ways is scored.
        source = PairSource(
            pairs, fasta=fasta, max_residues=options.max_residues, allow_contradictory_labels=True
        )
        plan: AllPairsPlan | PairFilePlan = PairFilePlan(source, options.chunk_pairs)
        sequences = plan.sequences
    else:
        set_a = read_fasta(fasta)
        set_b = read_fasta(fasta_b) if fasta_b is not None else None
        sequences = {**set_a, **(set_b or {})}
        if set_b is not None:
            clash = [p for p in set_a.keys() & set_b.keys() if set_a[p] != set_b[p]]
            if clash:
                raise UserError(f"{clash[0]!r} has different sequences in {fasta} and {fasta_b}")
        windowing = Windowing(options.max_residues, options.window_overlap, options.windows)
        lengths = {p: windowing.kept_length(len(s)) for p, s in sequences.items()}
        ids_b = list(set_b) if set_b is not None else None
        plan = AllPairsPlan(
            lengths, list(set_a), ids_b, include_self=options.include_self, tile=options.tile
        )
    if plan.total_pairs == 0:
        raise UserError(f"no pairs to score in {pairs if pairs is not None else fasta}")
    return plan, sequences


def _shared_cache(
    model: torch.nn.Module,
    sequences: dict[str, str],
    cache_dir: str | Path,
    encoding: dict,
    ranks: Ranks,
) -> EmbeddingCache:
    """One cache folder for every rank: rank 0 encodes every protein once, the others wait
    and read it (several ranks writing one memory-mapped file at once would corrupt it).
    `encoding`: `encode_proteins`' dtype, windowing and progress."""
    if ranks.rank == 0:
        cache = encode_proteins(model, sequences, directory=cache_dir, **encoding)
    if ranks.barrier is not None:
        ranks.barrier()
    if ranks.rank != 0:
        cache = EmbeddingCache.open(cache_dir)
        if not cache.matches(model):
            raise RuntimeError(f"{cache_dir}: the cache is not from this model's encoder")
    return cache


def _merge(summary: dict, out: Path, top_k: int | None, columns: list[str], ranks: Ranks) -> dict:
    """Rank 0 merges the parts into `out` once every rank is done (the rows it wrote go in
    `summary["rows_written"]`); called on every rank (it waits for all of them)."""
    if ranks.barrier is not None:
        ranks.barrier()
    if ranks.rank == 0 and ranks.world_size == 1 and summary["complete"]:
        summary["rows_written"] = finalize(out, 1, top_k, columns)
    elif ranks.rank == 0 and ranks.barrier is not None:
        # Every rank passed the barrier, so all parts are final (or some rank stopped early).
        done = [
            json.loads(part_paths(out, r, ranks.world_size)[1].read_text())["done"]
            for r in range(ranks.world_size)
        ]
        summary["complete"] = all(done)
        if all(done):
            summary["rows_written"] = finalize(out, ranks.world_size, top_k, columns)
    return summary
