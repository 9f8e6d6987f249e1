"""Scoring pairs with a model: the one path from proteins to P(interact) outside training.

Training's evaluation, `predict`, `evaluate` and the benchmarks all score pairs here, so
the decision threshold chosen on validation is applied to scores computed exactly as it
was chosen on:

    distinct proteins -> `EmbeddingCache.build` (each encoded once, through the windows of
       `SECAIConfig.scoring_windows`: all of a long protein by default; fp16)
    -> pairs in chunks of `CHUNK_PAIRS`, in file order -> `score_cached` per chunk
       (length-sorted pair batches; `SECAI.pair_logits`, the only pair maths)
    -> probabilities in file order (gathered from every rank): `score_pairs`

Precision: `inference_autocast` runs the encoder in bf16 on a CUDA card that has it, in
fp32 elsewhere; the cache stores fp16; the cross-attention and head run in the weights'
precision (fp32 for a saved model). The trainer and `predict` on the same machine get
the same numbers; across machines (bf16 GPU vs fp32 CPU) probabilities differ by the
encoder's rounding (tests/inference/test_scoring.py states the bound).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ppi_dist.data.pairs import Pair, sequences_of
from ppi_dist.errors import CacheTooLargeError, ScoringInterrupted
from ppi_dist.inference.cache import DEFAULT_MEMORY_LIMIT, EmbeddingCache
from ppi_dist.models.windows import Windowing

CHUNK_PAIRS = 4096  # pairs scored together; also predict's unit of resuming


@dataclass(frozen=True)
class Ranks:
    """This process among the processes that share one scoring job, and their collectives.

    Rank r of `world_size` takes chunks r, r + world_size, ... The collectives are given by
    whoever formed the group (Accelerate, in the trainer and `predict`); None for one process.
    """

    rank: int = 0
    world_size: int = 1
    gather: Callable[[list], list] | None = None
    """Every rank's list of items, concatenated, on every rank."""
    barrier: Callable[[], None] | None = None
    """Returns when every rank has called it."""
    should_stop: Callable[[], bool] | None = None
    """Polled the same number of times on every rank (so it may be a collective)."""

    def takes(self, chunk: int) -> bool:
        return chunk % self.world_size == self.rank


ONE_PROCESS = Ranks()


def inference_autocast(device: torch.device | str) -> contextlib.AbstractContextManager:
    """bf16 autocast on a CUDA card with bf16, nothing elsewhere: the scoring precision."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def scoring_windowing(
    model: torch.nn.Module,
    max_residues: int | None = None,
    overlap: int | None = None,
    mode: str | None = None,
) -> Windowing:
    """How `model` reads long proteins when scoring: its own settings (saved with it, so
    the ones its threshold was chosen at), each replaced where a value is given. Without
    an `overlap`, a `max_residues` given brings its own default overlap (a quarter of it)
    unless the model's was set explicitly (`SECAIConfig.windowing`)."""
    own = model.config.windowing("scoring", max_residues)
    return Windowing(
        own.max_residues,
        own.overlap if overlap is None else overlap,
        own.mode if mode is None else mode,
    )


def encode_proteins(
    model: torch.nn.Module,
    sequences: Mapping[str, str],
    *,
    directory: str | Path | None = None,
    spill_dir: str | Path | None = None,
    dtype: str = "float16",
    windowing: Windowing | None = None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    progress: bool = False,
) -> EmbeddingCache:
    """Per-residue states of each protein, encoded once on the model's device, read as
    `windowing` says (None: the model's own `scoring_windowing`).

    In `directory` when given (reused if it already holds these proteins from this
    encoder); else in memory, or memory-mapped from `spill_dir` when over `memory_limit`.
    """
    windowing = windowing or scoring_windowing(model)
    common = {"dtype": dtype, "windowing": windowing, "progress": progress}
    with inference_autocast(model_device(model)):
        if directory is not None:
            return EmbeddingCache.build(model, sequences, directory=directory, **common)
        try:
            return EmbeddingCache.build(model, sequences, memory_limit=memory_limit, **common)
        except CacheTooLargeError:
            if spill_dir is None:
                raise
            return EmbeddingCache.build(model, sequences, directory=spill_dir, **common)


@dataclass
class ScoredPairs:
    """Pairs of a split in file order, with their probabilities (and labels), as columns."""

    protein_a: list[str]
    protein_b: list[str]
    scores: np.ndarray  # float64
    labels: np.ndarray | None  # int64, when every pair has one
    first_pass: np.ndarray | None = None  # the first pass's probabilities, when the model has one

    def write_tsv(self, path: str | Path, threshold: float, calibrated=None) -> None:
        """`calibrated` (the model's calibrated probabilities of `scores`): written as
        `probability`, the raw score kept as `raw_score`; `predicted` is always the raw
        score at `threshold`, the threshold being chosen on raw scores. The first pass's
        probability goes last, as `first_pass`, when there is one."""
        columns = ["protein_a", "protein_b", "probability"]
        columns += [] if calibrated is None else ["raw_score"]
        columns += ["predicted"] + ([] if self.labels is None else ["label"])
        columns += [] if self.first_pass is None else ["first_pass"]
        with open(path, "w") as handle:
            handle.write("\t".join(columns) + "\n")
            for i, (a, b, s) in enumerate(
                zip(self.protein_a, self.protein_b, self.scores, strict=True)
            ):
                shown = [f"{s:.6f}"] if calibrated is None else [f"{calibrated[i]:.6f}", f"{s:.6f}"]
                fields = [a, b, *shown, str(int(s >= threshold))]
                fields += [] if self.labels is None else [str(self.labels[i])]
                fields += [] if self.first_pass is None else [f"{self.first_pass[i]:.6f}"]
                handle.write("\t".join(fields) + "\n")


@torch.no_grad()
def score_cached(
    model: torch.nn.Module,
    cache: EmbeddingCache,
    pairs: Sequence[Pair],
    *,
    max_tokens: int = 65536,
    max_attention: int = 2**27,
    batch_pairs: int = 1024,
) -> np.ndarray:
    """P(interact) of each pair of cached proteins (by identifier); input order kept.

    Pairs are sorted by length and batched within `batch_pairs` pairs, `max_tokens`
    (pairs x (longest A + longest B)) and `max_attention` attention weights (pairs x heads x
    longest A x longest B; 2^27 fp32 = 512 MiB). With the symmetric model the shorter
    protein of each pair goes on side A (the score does not depend on the order). The two
    sides are padded separately, which spares a short protein the padding of a long partner.
    """
    device = model_device(model)
    was_training = model.training
    model.eval()
    symmetric = model.config.symmetric == "average"
    heads = model.cross_attention.heads if model.cross_attention is not None else 1
    sides = []
    for pair in pairs:
        a, b = pair.protein_a, pair.protein_b
        if symmetric and cache.length(b) < cache.length(a):
            a, b = b, a
        sides.append((a, b))
    lengths = [(cache.length(a), cache.length(b)) for a, b in sides]
    order = sorted(range(len(pairs)), key=lambda k: (lengths[k][1], lengths[k][0]))
    probabilities = np.empty(len(pairs), dtype=np.float64)

    def flush(batch: list[int]) -> None:
        rows_a: dict[str, int] = {}
        rows_b: dict[str, int] = {}
        for k in batch:
            rows_a.setdefault(sides[k][0], len(rows_a))
            rows_b.setdefault(sides[k][1], len(rows_b))
        index_a = torch.tensor([rows_a[sides[k][0]] for k in batch], device=device)
        index_b = torch.tensor([rows_b[sides[k][1]] for k in batch], device=device)
        side_a = cache.get(list(rows_a), device=device)
        side_b = cache.get(list(rows_b), device=device)
        logits = model.pair_logits(side_a, side_b, index_a, index_b)
        probabilities[batch] = torch.sigmoid(logits.float()).cpu().numpy()

    batch: list[int] = []
    longest_a = longest_b = 0
    for k in order:
        wide_a, wide_b = max(longest_a, lengths[k][0]), max(longest_b, lengths[k][1])
        n = len(batch) + 1
        if batch and (
            n > batch_pairs
            or n * (wide_a + wide_b) > max_tokens
            or n * heads * wide_a * wide_b > max_attention
        ):
            flush(batch)
            batch, (wide_a, wide_b) = [], lengths[k]
        batch.append(k)
        longest_a, longest_b = wide_a, wide_b
    if batch:
        flush(batch)
    model.train(was_training)
    return probabilities


@torch.no_grad()
def protein_vectors(
    model: torch.nn.Module, cache: EmbeddingCache, proteins: Sequence[str], batch: int = 64
) -> torch.Tensor:
    """Each protein's first-pass vector from its cached states (`SECAI.protein_vectors`):
    (N, k + 1) in `proteins` order, on the model's device, in its weights' precision."""
    device = model.first_pass.fc1.weight.device
    order = sorted(range(len(proteins)), key=lambda k: cache.length(proteins[k]))
    vectors = torch.empty(len(proteins), model.first_pass.fc2.out_features, device=device)
    for start in range(0, len(order), batch):
        rows = order[start : start + batch]
        states, mask = cache.get([proteins[k] for k in rows], device=device)
        vectors[torch.tensor(rows, device=device)] = model.protein_vectors(states, mask)
    return vectors


@torch.no_grad()
def first_pass_cached(
    model: torch.nn.Module, cache: EmbeddingCache, pairs: Sequence[Pair]
) -> np.ndarray | None:
    """The first pass's P(interact) of each pair of cached proteins, input order; None when
    the model has none. Each protein's vector is computed once."""
    if getattr(model, "first_pass", None) is None:
        return None
    was_training = model.training
    model.eval()
    proteins = list(dict.fromkeys(p for pair in pairs for p in (pair.protein_a, pair.protein_b)))
    vectors = protein_vectors(model, cache, proteins)
    row = {protein: k for k, protein in enumerate(proteins)}
    logits = first_pass_pair_logits(model, vectors, row, pairs)
    model.train(was_training)
    return torch.sigmoid(logits.float()).cpu().numpy().astype(np.float64)


def first_pass_pair_logits(
    model: torch.nn.Module, vectors: torch.Tensor, row: Mapping[str, int], pairs: Sequence[Pair]
) -> torch.Tensor:
    """The first pass's logits of `pairs`, pair by pair, from their proteins' `vectors`
    (`protein_vectors`; protein -> its row in `row`): (P,) on the vectors' device."""
    device = vectors.device
    index_a = torch.tensor([row[pair.protein_a] for pair in pairs], device=device)
    index_b = torch.tensor([row[pair.protein_b] for pair in pairs], device=device)
    return model.first_pass.pair_logits(
        vectors.index_select(0, index_a), vectors.index_select(0, index_b)
    )


def _chunk_items(
    model: torch.nn.Module, cache: EmbeddingCache, chunk: Sequence[Pair], first: int
) -> list[tuple[int, float, float | None]]:
    """(index in the split, probability, first-pass probability or None) of a chunk's pairs,
    the chunk's first pair at index `first`."""
    probabilities = score_cached(model, cache, chunk)
    first_pass = first_pass_cached(model, cache, chunk)
    if first_pass is None:
        return [(first + k, float(p), None) for k, p in enumerate(probabilities)]
    pairs = zip(probabilities, first_pass, strict=True)
    return [(first + k, float(p), float(f)) for k, (p, f) in enumerate(pairs)]


def score_pairs(
    model: torch.nn.Module,
    pairs: Sequence[Pair],
    *,
    cache: EmbeddingCache | None = None,
    ranks: Ranks = ONE_PROCESS,
    windowing: Windowing | None = None,
    spill_dir: str | Path | None = None,
    progress: str | None = None,
    chunk_pairs: int = CHUNK_PAIRS,
) -> ScoredPairs:
    """P(interact) of every pair, in chunks; rank r scores chunks r, r+W, ... (see `Ranks`).

    Without a `cache` (an encoder that trains), each rank encodes the proteins of its own
    chunks once (read as `windowing` says, None: the model's own settings; in memory, or
    memory-mapped under `spill_dir` when large). `ranks.gather` collects every rank's
    (pair, probability) items, so every rank gets the whole split back, in order.
    `ranks.should_stop` is polled before each chunk; when it says stop, `ScoringInterrupted`
    is raised. `progress` names the progress bars of this rank's encoding and scoring (none
    if None): a whole Bernett validation set is minutes of silence otherwise. Pairs are
    batched as `score_cached` batches them.
    """
    chunks = [pairs[i : i + chunk_pairs] for i in range(0, len(pairs), chunk_pairs)]
    mine = [(c, chunk) for c, chunk in enumerate(chunks) if ranks.takes(c)]
    rounds = -(-len(chunks) // ranks.world_size)
    with contextlib.ExitStack() as stack:
        if cache is None:
            wanted = sequences_of(pair for _, chunk in mine for pair in chunk)
            spill = spill_dir or stack.enter_context(tempfile.TemporaryDirectory())
            cache = (
                encode_proteins(
                    model,
                    wanted,
                    spill_dir=Path(spill) / f"rank{ranks.rank}",
                    windowing=windowing,
                    progress=progress is not None,
                )
                if wanted
                else None
            )
        total = sum(len(chunk) for _, chunk in mine)
        quiet = progress is None
        bar = stack.enter_context(
            tqdm(total=total, unit="pair", desc=progress, disable=quiet, dynamic_ncols=True)
        )
        items: list[tuple[int, float, float | None]] = []
        for round_ in range(rounds):
            if ranks.should_stop is not None and ranks.should_stop():
                raise ScoringInterrupted("stop requested during scoring")
            if round_ >= len(mine):
                continue
            c, chunk = mine[round_]
            items += _chunk_items(model, cache, chunk, first=c * chunk_pairs)
            bar.update(len(chunk))
    if ranks.gather is not None:
        items = ranks.gather(items)
    scores, first_pass = np.zeros(len(pairs)), np.zeros(len(pairs))
    scored = np.zeros(len(pairs), dtype=bool)
    for index, probability, first in items:
        scores[index], scored[index] = probability, True
        first_pass[index] = np.nan if first is None else first
    if not scored.all():  # every pair must come back from some rank
        raise RuntimeError(f"{int((~scored).sum())} of {len(pairs)} pairs were not scored")
    labels = [pair.label for pair in pairs]
    has_labels = bool(pairs) and all(label is not None for label in labels)
    return ScoredPairs(
        protein_a=[pair.protein_a for pair in pairs],
        protein_b=[pair.protein_b for pair in pairs],
        scores=scores,
        labels=np.asarray(labels, dtype=np.int64) if has_labels else None,
        first_pass=None if getattr(model, "first_pass", None) is None else first_pass,
    )
