"""Per-residue ESM-2 states of distinct proteins, computed once and reused.

Prediction over N proteins scores up to N^2 pairs, but the encoder (the expensive part) only
needs N passes: `EmbeddingCache.build` encodes each distinct protein once and keeps its
last-layer states; pairs are then scored from the cache with `SECAI.pair_logits` (only the
cross-attention and head run per pair). Head-only training (`freeze_encoder`) can read the
same cache.

Layout
    Residues only. Protein i owns rows `offsets[i] : offsets[i] + lengths[i]` of one flat
    `(total_residues, hidden)` array; `<cls>`, `<eos>` and padding are not stored.
    `get(ids)` pads the requested proteins to the longest and returns `(states, mask)` with
    the residues at positions 0..L-1 and `mask` True exactly there. That is NOT the
    `<cls> residues <eos> pad` layout of `encode`, and it need not be: `pair_logits` reads
    states only through `mask` (masked keys, masked pooling) and cross-attention has no
    positional term, so the shift changes nothing (tests check equality with `forward`).

Storage
    fp16 by default (half the memory of fp32; bf16 and fp32 on request). In memory, or a
    memory-mapped file in a folder (`inference.cache_folder`: `states.bin`, and
    `index.json` with a fingerprint of the encoder, a digest of each sequence and a
    checksum of each protein's states). No pickle anywhere. numpy has no bfloat16, so bf16
    is stored as its 16 bits (uint16) and viewed back as `torch.bfloat16`. A folder's cache
    is reused for the same proteins, encoder weights and windowing once verified
    (`find_damage`); one that fails is encoded again, saying why.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ppi_dist.data.batching import CacheIndex
from ppi_dist.data.sequences import sequence_digest, tokenize
from ppi_dist.errors import CacheTooLargeError
from ppi_dist.inference.cache_folder import (
    DTYPES,
    FORMAT_VERSION,
    INDEX_NAME,
    new_states,
    read_folder,
    states_digest,
    write_index,
)
from ppi_dist.models.encoder import encoder_fingerprint
from ppi_dist.models.secai import SECAI
from ppi_dist.models.windows import Window, Windowing

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = 4 * 2**30  # bytes an in-memory cache may take


class EmbeddingCache:
    """Last-layer per-residue states of proteins, keyed by identifier.

    Build with `EmbeddingCache.build(model, {id: sequence})`, reopen a saved one with
    `EmbeddingCache.open(folder)`, fetch padded states with `get(ids)`.
    """

    def __init__(
        self,
        ids: list[str],
        lengths: np.ndarray,
        array: np.ndarray,
        dtype: str,
        *,
        digests: list[str],
        fingerprint: str,
        windowing: Windowing,
        directory: Path | None = None,
    ) -> None:
        self.ids = list(ids)
        self.row = {protein: i for i, protein in enumerate(self.ids)}
        if len(self.row) != len(self.ids):
            raise ValueError("duplicate protein identifiers in the cache")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.array = array
        self.dtype = dtype
        self.digests = list(digests)
        self.fingerprint = fingerprint
        self.windowing = windowing
        self.directory = directory
        self.hidden = int(array.shape[1])
        self.index = CacheIndex(self.row, self.lengths)
        # Each protein's `states_digest` as written (`index.json`); None until saved.
        self.checksums: list[str] | None = None
        # (flat states, offsets, lengths) on a device; see `keep_on`
        self._resident: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # ---- building -----------------------------------------------------------------------

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        model: nn.Module,
        sequences: Mapping[str, str],
        *,
        directory: str | Path | None = None,
        dtype: str = "float16",
        windowing: Windowing | None = None,
        max_tokens: int = 16384,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        progress: bool = False,
    ) -> EmbeddingCache:
        """Encode each protein once (through `windowing`'s windows) and keep its states.

        Args:
            model: a `SECAI` (its `encode`) or a bare encoder returning `last_hidden_state`,
                on the device to encode on.
            sequences: identifier -> cleaned sequence.
            directory: write a memory-mapped cache there (reopen with `open`). A folder that
                already holds a cache of the same proteins and encoder is reused as it is.
                Without it the states stay in memory, up to `memory_limit` bytes.
            dtype: "float16" (default), "bfloat16" or "float32".
            windowing: how proteins longer than one window are read (`models.windows`):
                every window stitched (the default), or the centred crop.
            max_tokens: encoder batch budget, distinct sequences x (longest + 2); proteins
                are sorted by length so batches pad little.
        """
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if not sequences:
            raise ValueError("no proteins to encode")
        torch_dtype, numpy_dtype = DTYPES[dtype]
        encoder = _encoder_of(model)
        fingerprint = encoder_fingerprint(encoder)
        windowing = windowing or Windowing()
        ids = list(sequences)
        digests = [sequence_digest(sequences[p]) for p in ids]
        lengths = np.array([windowing.kept_length(len(sequences[p])) for p in ids], np.int64)
        hidden = _hidden_size(encoder)
        total_bytes = int(lengths.sum()) * hidden * np.dtype(numpy_dtype).itemsize

        if directory is not None:
            directory = Path(directory)
            existing = cls._reusable(directory, sequences, fingerprint, dtype, windowing)
            if existing is not None:
                logger.info("reusing the embedding cache in %s", directory)
                return existing
            array = new_states(directory, numpy_dtype, (int(lengths.sum()), hidden))
        elif total_bytes > memory_limit:
            raise CacheTooLargeError(
                f"the states of {len(ids):,} proteins take {total_bytes / 2**30:.2f} GiB, over "
                f"the in-memory limit of {memory_limit / 2**30:.2f} GiB; give a directory "
                "to memory-map them from disk, or raise the limit"
            )
        else:
            array = np.empty((int(lengths.sum()), hidden), dtype=numpy_dtype)

        cache = cls(
            ids,
            lengths,
            array,
            dtype,
            digests=digests,
            fingerprint=fingerprint,
            windowing=windowing,
            directory=directory,
        )
        windows = [windowing.windows(len(sequences[p])) for p in ids]
        pieces = [
            (i, w, sequences[p][w.start : w.stop]) for i, p in enumerate(ids) for w in windows[i]
        ]
        cache._fill(model, pieces, torch_dtype, max_tokens, progress)
        if directory is not None:
            array.flush()
            cache._write_index(directory)
        return cache

    def _fill(
        self,
        model: nn.Module,
        pieces: list[tuple[int, Window, str]],
        torch_dtype: torch.dtype,
        max_tokens: int,
        progress: bool,
    ) -> None:
        """Encode the windows (`(protein row, window, residues)`) in length-sorted batches and
        copy the residues each window keeps into its protein's place."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device  # token ids go where the weights are
        piece_lengths = np.array([len(residues) for _, _, residues in pieces], dtype=np.int64)
        order = sorted(range(len(pieces)), key=piece_lengths.__getitem__)
        # A protein's first kept residue: 0 with windows, the crop's start with a crop.
        first = {}
        for i, window, _ in pieces:
            first.setdefault(i, window.keep_start)
        bar = tqdm(total=len(order), unit="window", desc="encoding", disable=not progress)
        try:
            for batch in _length_batches(order, piece_lengths, max_tokens):
                residues = [pieces[k][2] for k in batch]
                input_ids, attention_mask = tokenize(residues)
                states = _encode(model, input_ids.to(device), attention_mask.to(device), residues)
                states = states.to(torch_dtype)
                for row, k in enumerate(batch):
                    i, window, _ = pieces[k]
                    # +1: past <cls>; the window's kept residues, in the window's coordinates
                    kept = slice(
                        1 + window.keep_start - window.start, 1 + window.keep_stop - window.start
                    )
                    residues = states[row, kept].cpu()
                    if torch_dtype == torch.bfloat16:
                        residues = residues.view(torch.int16)
                    start = self.offsets[i] + window.keep_start - first[i]
                    stop = start + window.keep_stop - window.keep_start
                    self.array[start:stop] = residues.numpy().view(self.array.dtype)
                bar.update(len(batch))
        finally:
            bar.close()
            model.train(was_training)

    # ---- saving and reopening -----------------------------------------------------------

    def _index(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "dtype": self.dtype,
            "hidden": self.hidden,
            "max_residues": self.windowing.max_residues,
            "window_overlap": self.windowing.overlap,
            "windows": self.windowing.mode,
            "encoder_fingerprint": self.fingerprint,
            "ids": self.ids,
            "lengths": self.lengths.tolist(),
            "sequence_sha1": self.digests,
            "states_sha1": self.checksums,
        }

    def _write_index(self, directory: Path) -> None:
        self.checksums = [states_digest(self._rows_of(i)) for i in range(len(self.ids))]
        write_index(directory, self._index())

    def save(self, directory: str | Path) -> None:
        """Write this cache as a folder that `open` reads (memory-mapped)."""
        directory = Path(directory)
        if self.directory is not None and directory.resolve() == self.directory.resolve():
            return
        out = new_states(directory, self.array.dtype, self.array.shape)
        out[:] = self.array
        out.flush()
        self._write_index(directory)

    @classmethod
    def open(cls, directory: str | Path) -> EmbeddingCache:
        """Reopen a saved cache; the states stay on disk (read-only memory map). Its index
        and the file's size are checked here, its states by `find_damage`."""
        directory = Path(directory)
        saved = read_folder(directory)
        checksums = saved.pop("checksums")
        cache = cls(**saved, directory=directory)
        cache.checksums = checksums
        return cache

    @classmethod
    def _reusable(cls, directory, sequences, fingerprint, dtype, windowing):
        cache = _opened(directory)
        if cache is None:
            return None
        same = (
            cache.ids == list(sequences)
            and cache.digests == [sequence_digest(s) for s in sequences.values()]
            and cache.fingerprint == fingerprint
            and cache.dtype == dtype
            and cache.windowing == windowing
        )
        return cache.verified(sequences) if same else None

    def find_damage(self, sequences: Mapping[str, str] | None = None) -> str | None:
        """Why the states of `sequences`' proteins (None: all) are not what this cache was
        written with, or None when they are: a stored length that is not the one the
        protein's sequence gives under the cache's windowing (no reading), then each
        protein's states against their checksum (one read of them, in file order; a
        cache never written has none)."""
        proteins = list(self.ids if sequences is None else sequences)
        for protein, sequence in (sequences or {}).items():
            stored, expected = self.length(protein), self.windowing.kept_length(len(sequence))
            if stored != expected:
                return f"{INDEX_NAME} gives {protein!r} {stored} residues, its sequence {expected}"
        if self.checksums is None:
            return None
        for i in sorted(self.row[protein] for protein in proteins):
            if states_digest(self._rows_of(i)) != self.checksums[i]:
                return f"the states of {self.ids[i]!r} differ from their checksum in {INDEX_NAME}"
        return None

    def verified(self, sequences: Mapping[str, str]) -> EmbeddingCache | None:
        """This cache when `find_damage` finds nothing for `sequences`; else None, saying
        why, and the folder's index removed so that it reads as an incomplete cache (the
        next build encodes it again without reading it twice)."""
        problem = self.find_damage(sequences)
        if problem is None:
            return self
        logger.warning("%s: %s (changed on disk?); encoding again", self.directory, problem)
        if self.directory is not None:
            with contextlib.suppress(OSError):  # read-only: the next build says so itself
                (self.directory / INDEX_NAME).unlink(missing_ok=True)
        return None

    def matches(self, model: nn.Module) -> bool:
        """Whether these states came from this model's encoder weights."""
        return self.fingerprint == encoder_fingerprint(_encoder_of(model))

    # ---- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, protein: object) -> bool:
        return protein in self.row

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    def length(self, protein: str) -> int:
        """Residues stored for `protein` (all of them with windows, the crop's otherwise)."""
        return int(self.lengths[self.row[protein]])

    def _rows_of(self, i: int) -> np.ndarray:
        """Protein `i`'s rows of the flat array (a view, or a slice of the memory map)."""
        return self.array[self.offsets[i] : self.offsets[i] + self.lengths[i]]

    def states_of(self, protein: str) -> torch.Tensor:
        """(L, d) residue states of one protein, in the cache dtype."""
        block = np.asarray(self._rows_of(self.row[protein]))
        tensor = torch.from_numpy(block.copy())
        return tensor.view(torch.bfloat16) if self.dtype == "bfloat16" else tensor

    def keep_on(self, device: torch.device | str) -> None:
        """Copy every state to `device` once; `get` then gathers there without host work.

        Frozen-encoder training on a GPU: a whole benchmark set's fp16 states fit in its
        memory with a small encoder (BENCHMARKS.md), so a batch's states are an index into
        memory the GPU holds, not a host copy per protein per step.
        """
        flat = torch.from_numpy(np.asarray(self.array))
        if self.dtype == "bfloat16":
            flat = flat.view(torch.bfloat16)
        self._resident = (
            flat.to(device),
            torch.from_numpy(self.offsets).to(device),
            torch.from_numpy(self.lengths).to(device),
        )

    def get(
        self,
        ids: Iterable[str],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(states (U, L, d), mask (U, L) bool)` for `ids`, padded to their longest.

        Residues sit at positions 0..length-1 (see the module docstring), zeros after.
        Feed them to `model.pair_logits((states, mask), (states, mask), index_a, index_b)`.
        """
        return self.gather(self.index.rows(ids), dtype, device)

    def gather(
        self,
        rows: torch.Tensor,
        dtype: torch.dtype | None = torch.float32,
        device: torch.device | str | None = None,
        starts: torch.Tensor | None = None,
        window: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`get` by cache rows: `rows` an int64 CPU tensor (e.g. `CacheIndex.place_pairs`).

        With `starts` (int64, one per row) and `window`, each row's states are its
        `window` residues from `starts` on (training crops of cached proteins).

        `dtype` None keeps the cache's dtype (the model computes in its weights' precision
        anyway, so a float32 copy would only cost memory). States kept on `device`
        (`keep_on`) are gathered there: only `rows` crosses to the device.
        """
        stored = self.lengths[rows.numpy()]  # host numbers: no device sync
        longest = int(stored.max() if window is None else min(stored.max(), window))
        if self._resident is not None and _same_device(device, self._resident[0].device):
            flat, offsets, lengths = self._resident
            rows = rows.to(flat.device, non_blocking=True)
        else:
            flat = None
            offsets, lengths = torch.from_numpy(self.offsets), torch.from_numpy(self.lengths)
        start, length = offsets[rows], lengths[rows]
        if starts is not None:
            start = start + starts.to(start.device)
            length = (length - starts.to(length.device)).clamp(max=window)
        index, mask = _padded_index(start, length, longest)
        if flat is not None:
            states = flat[index]
        else:
            states = torch.from_numpy(np.asarray(self.array[index.numpy()]))  # these rows only
            if self.dtype == "bfloat16":
                states = states.view(torch.bfloat16)
        states.masked_fill_(~mask[..., None], 0)  # padding pointed at some row: zero it
        if dtype is not None:
            states = states.to(dtype)
        return states.to(device), mask.to(device)


def _padded_index(
    start: torch.Tensor, length: torch.Tensor, longest: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat row of each (protein, position) up to `longest` (padding -> row 0), and the mask."""
    column = torch.arange(longest, device=start.device)
    mask = column[None, :] < length[:, None]
    return torch.where(mask, start[:, None] + column[None, :], 0), mask


def _same_device(wanted: torch.device | str | None, held: torch.device) -> bool:
    """`None` means wherever the states are; "cuda" means the current CUDA device."""
    if wanted is None:
        return True
    wanted = torch.device(wanted)
    if wanted.type != held.type:
        return False
    current = torch.cuda.current_device() if wanted.type == "cuda" else 0
    return (wanted.index if wanted.index is not None else current) == (held.index or 0)


def _encoder_of(model: nn.Module) -> nn.Module:
    """The ESM-2 encoder of an `SECAI`, or `model` itself when it is a bare encoder."""
    return model.encoder if isinstance(model, SECAI) else model


def _hidden_size(encoder: nn.Module) -> int:
    config = getattr(encoder, "config", None)
    if config is None or not hasattr(config, "hidden_size"):
        raise ValueError("the encoder has no config.hidden_size")
    return int(config.hidden_size)


def _encode(model: nn.Module, input_ids, attention_mask, windows: list[str]) -> torch.Tensor:
    """Last-layer states of the tokenised `windows`; from a model's `trunk` (a trunk cache,
    `inference.trunk`) when it holds them."""
    trunk = getattr(model, "trunk", None)
    if trunk is not None and trunk.covers(windows):
        states = trunk.window_states(windows, input_ids.device)
        return model.encode(input_ids, attention_mask, trunk_states=states)
    if hasattr(model, "encode"):
        return model.encode(input_ids, attention_mask)
    return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _length_batches(order: list[int], lengths: np.ndarray, max_tokens: int):
    """Consecutive runs of the length-sorted rows within `max_tokens` (rows x (longest + 2))."""
    batch: list[int] = []
    for i in order:
        width = int(lengths[i]) + 2  # sorted: this row is the longest so far
        if batch and (len(batch) + 1) * width > max_tokens:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def covering_cache(
    directory: Path, model: nn.Module, sequences: Mapping[str, str], windowing: Windowing
) -> EmbeddingCache | None:
    """The cache in `directory` when it holds every protein of `sequences` from this model's
    encoder weights and windowing (say one cache of a whole proteome for several splits),
    and their states are verified (`EmbeddingCache.verified`); else None."""
    cache = _opened(directory)
    if cache is None or cache.windowing != windowing or not cache.matches(model):
        return None
    digest_of = dict(zip(cache.ids, cache.digests, strict=True))
    for protein, sequence in sequences.items():
        if digest_of.get(protein) != sequence_digest(sequence):
            return None
    return cache.verified(sequences)


def _opened(directory: Path) -> EmbeddingCache | None:
    """The cache in `directory`; None when there is none (said when one is there but
    cannot be read: a damaged index or states file, or an older format)."""
    try:
        return EmbeddingCache.open(directory)
    except FileNotFoundError:
        return None
    except ValueError as error:
        logger.warning("%s; encoding again", error)
        return None
