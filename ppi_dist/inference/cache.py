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
    memory-mapped file in a folder: `states.bin` (raw array, C order) + `index.json` (ids,
    offsets, lengths, dtype, hidden size, a fingerprint of the encoder and of each
    sequence). No pickle anywhere. numpy has no bfloat16, so bf16 is stored as its 16 bits
    (uint16) and viewed back as `torch.bfloat16`.
"""

from __future__ import annotations

import json
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
from ppi_dist.models.encoder import encoder_fingerprint
from ppi_dist.models.secai import SECAI
from ppi_dist.models.windows import Window, Windowing

logger = logging.getLogger(__name__)

INDEX_NAME = "index.json"
STATES_NAME = "states.bin"
FORMAT_VERSION = 2  # 2: whole proteins through windows, the windowing recorded
# torch dtype of the states, and the numpy dtype they are stored as.
DTYPES = {
    "float16": (torch.float16, np.float16),
    "bfloat16": (torch.bfloat16, np.uint16),
    "float32": (torch.float32, np.float32),
}
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
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> EmbeddingCache:
        """Encode each protein once (through `windowing`'s windows) and keep its states.

        Args:
            model: a `SECAI` (its `encode`) or a bare encoder returning `last_hidden_state`.
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
            existing = cls._reusable(directory, ids, digests, fingerprint, dtype, windowing)
            if existing is not None:
                logger.info("reusing the embedding cache in %s", directory)
                return existing
            directory.mkdir(parents=True, exist_ok=True)
            (directory / INDEX_NAME).unlink(missing_ok=True)  # invalid until complete
            array = np.memmap(
                directory / STATES_NAME,
                dtype=numpy_dtype,
                mode="w+",
                shape=(int(lengths.sum()), hidden),
            )
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
        cache._fill(model, pieces, torch_dtype, max_tokens, device, progress)
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
        device: torch.device | str | None,
        progress: bool,
    ) -> None:
        """Encode the windows (`(protein row, window, residues)`) in length-sorted batches and
        copy the residues each window keeps into its protein's place."""
        was_training = model.training
        model.eval()
        # Encode where the weights are: a device given (the trainer's GPU) moves the model
        # there first, so token ids and weights never sit on different devices.
        if device is not None:
            model.to(device)
        device = next(model.parameters()).device
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
        }

    def _write_index(self, directory: Path) -> None:
        # Written last and atomically: a folder with an index holds a complete cache.
        partial = directory / (INDEX_NAME + ".partial")
        partial.write_text(json.dumps(self._index()) + "\n")
        partial.replace(directory / INDEX_NAME)

    def save(self, directory: str | Path) -> None:
        """Write this cache as a folder that `open` reads (memory-mapped)."""
        directory = Path(directory)
        if self.directory is not None and directory.resolve() == self.directory.resolve():
            return
        directory.mkdir(parents=True, exist_ok=True)
        (directory / INDEX_NAME).unlink(missing_ok=True)
        out = np.memmap(
            directory / STATES_NAME, dtype=self.array.dtype, mode="w+", shape=self.array.shape
        )
        out[:] = self.array
        out.flush()
        self._write_index(directory)

    @classmethod
    def open(cls, directory: str | Path) -> EmbeddingCache:
        """Reopen a saved cache; the states stay on disk (read-only memory map)."""
        directory = Path(directory)
        index_path = directory / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path}: no complete embedding cache here")
        index = json.loads(index_path.read_text())
        if index.get("format_version") != FORMAT_VERSION or index.get("dtype") not in DTYPES:
            raise ValueError(f"{index_path}: unsupported cache format")
        numpy_dtype = DTYPES[index["dtype"]][1]
        lengths = np.asarray(index["lengths"], dtype=np.int64)
        shape = (int(lengths.sum()), int(index["hidden"]))
        expected = shape[0] * shape[1] * np.dtype(numpy_dtype).itemsize
        actual = (directory / STATES_NAME).stat().st_size
        if actual != expected:
            raise ValueError(f"{directory / STATES_NAME}: {actual} bytes, expected {expected}")
        array = np.memmap(directory / STATES_NAME, dtype=numpy_dtype, mode="r", shape=shape)
        return cls(
            index["ids"],
            lengths,
            array,
            index["dtype"],
            digests=index["sequence_sha1"],
            fingerprint=index["encoder_fingerprint"],
            windowing=Windowing(index["max_residues"], index["window_overlap"], index["windows"]),
            directory=directory,
        )

    @classmethod
    def _reusable(cls, directory, ids, digests, fingerprint, dtype, windowing):
        try:
            cache = cls.open(directory)
        except (FileNotFoundError, ValueError):
            return None
        same = (
            cache.ids == ids
            and cache.digests == digests
            and cache.fingerprint == fingerprint
            and cache.dtype == dtype
            and cache.windowing == windowing
        )
        return cache if same else None

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

    def states_of(self, protein: str) -> torch.Tensor:
        """(L, hidden) residue states of one protein, in the cache dtype."""
        i = self.row[protein]
        start = self.offsets[i]
        block = np.asarray(self.array[start : start + self.lengths[i]])
        tensor = torch.from_numpy(block.copy())
        return tensor.view(torch.bfloat16) if self.dtype == "bfloat16" else tensor

    def keep_on(self, device: torch.device | str) -> None:
        """Copy every state to `device` once; `get` then gathers there without host work.

        Frozen-encoder training on a GPU: the whole Bernett set is 3.3 GiB of fp16 states
        with the 8M encoder, so a batch's states are an index into memory the GPU holds,
        not a host copy per protein per step.
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
        """`(states (U, L, hidden), mask (U, L) bool)` for `ids`, padded to their longest.

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
        """`get` by cache rows: `rows` an int64 CPU tensor (e.g. `CacheIndex.pair_rows`).

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


def _encode(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, windows: list[str]
) -> torch.Tensor:
    """Last-layer states of the tokenised `windows`; a model whose `trunk` (a trunk cache,
    `inference.trunk`) holds them runs only its top layers, from the cached states."""
    trunk = getattr(model, "trunk", None)
    if trunk is not None and trunk.covers(windows):
        trunk_states = trunk.window_states(windows, input_ids.device)
        return model.encode(input_ids, attention_mask, trunk_states=trunk_states)
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
    else None."""
    try:
        cache = EmbeddingCache.open(directory)
    except (FileNotFoundError, ValueError):
        return None
    if cache.windowing != windowing or not cache.matches(model):
        return None
    digest_of = dict(zip(cache.ids, cache.digests, strict=True))
    for protein, sequence in sequences.items():
        if digest_of.get(protein) != sequence_digest(sequence):
            return None
    return cache
