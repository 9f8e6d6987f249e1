"""The trunk cache: the states entering the first LoRA layer, computed once per window.

With LoRA on the last N of the encoder's L layers (`lora_layers: N`), layers 0..L-N-1 hold
no trainable weight and never change: what they compute for a window of a protein is the
same at every step. `TrunkCache.build` runs them once over every window that training and
scoring read (planned by `models.windows`, as scoring plans them) and keeps the states of
each window's every token (`<cls>`, residues, `<eos>`): the input of layer L-N. A training
step then gathers its windows' rows and runs the top N layers only
(`SECAI.encode(trunk_states=...)`); validation and final scoring build their last-layer
embedding cache the same way (`EmbeddingCache.build` through a model whose `trunk` is set),
so the trunk is computed once per run.

Rows are keyed by the window's residues (`sequence_digest`): ESM-2 reads a window as a
sequence of its own (positions restart at 0), so equal windows have equal states whichever
protein they come from.

Storage: a folder with `states.bin` (flat `(T, d)`, C order, memory-mapped) and
`index.json` (format, `TrunkSettings`, keys, token counts, a checksum of each window's
rows, verified before a cache is reused); no pickle. float32 by default:
the top layers then start from exactly what the whole encoder computes, so the run's final
scores are `predict`'s (which runs the whole encoder); float16 or bfloat16 halve the file.
A build in progress writes `build.json` (settings, plan and windows done) whenever it
flushes, so a build stopped midway resumes where it was. A cache of the same settings that
lacks some windows (another split of the same proteins, new proteins) keeps its rows and
grows by the windows it lacks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ppi_dist.data.batching import TrunkIndex
from ppi_dist.data.sequences import sequence_digest, tokenize
from ppi_dist.errors import ConfigError, UserError
from ppi_dist.files import read_json, write_text_atomic
from ppi_dist.inference.cache_folder import DTYPES, states_digest
from ppi_dist.inference.scoring import inference_autocast, model_device
from ppi_dist.models.encoder import base_encoder_fingerprint
from ppi_dist.models.secai import SECAI
from ppi_dist.models.windows import Windowing

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
INDEX_NAME, STATES_NAME, BUILD_NAME = "index.json", "states.bin", "build.json"
FLUSH_EVERY_S = 60.0  # a stopped build loses at most this much encoding


@dataclass(frozen=True)
class TrunkSettings:
    """What a trunk cache's states depend on; a cache is reused only under equal ones."""

    encoder: str
    """Fingerprint of the base encoder's weights (LoRA excluded: the trunk has none)."""
    depth: int
    """Layers run: the states are the input of layer `depth`."""
    max_residues: int
    """Residues per window."""
    window_overlap: int
    """Residues neighbouring windows share."""
    dtype: str
    """Storage precision: "float32", "float16" or "bfloat16"."""

    def differences(self, wanted: TrunkSettings) -> list[str]:
        """'name: stored -> wanted' for each setting that differs."""
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(wanted)
        return [f"{k}: {mine[k]!r} there, {theirs[k]!r} here" for k in mine if mine[k] != theirs[k]]


def trunk_windows(sequences: Mapping[str, str], windowings: Sequence[Windowing]) -> dict[str, str]:
    """Key -> residues of every window the `windowings` read of `sequences`, each once,
    shortest first (batches of similar lengths pad little); the order is the file's."""
    windows = {}
    for sequence in sequences.values():
        for windowing in windowings:
            for window in windowing.windows(len(sequence)):
                residues = sequence[window.start : window.stop]
                windows.setdefault(sequence_digest(residues), residues)
    return dict(sorted(windows.items(), key=lambda item: (len(item[1]), item[0])))


class TrunkCache:
    """Token states entering layer `settings.depth`, one row of tokens per window.

    Build with `TrunkCache.build(model, {id: sequence}, directory, windowing)`, reopen with
    `TrunkCache.open(directory)`; `token_states(rows)` gathers a batch's windows (rows from
    `index`, made in the loader's workers), `window_states(windows)` the same by residues.
    """

    def __init__(
        self, keys: list[str], lengths: np.ndarray, array: np.ndarray, settings: TrunkSettings
    ) -> None:
        self.keys = keys
        self.index = TrunkIndex({key: row for row, key in enumerate(keys)})
        self.lengths = np.asarray(lengths, dtype=np.int64)  # tokens: residues + 2
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.array = array
        self.settings = settings
        self.checksums: list[str] = []  # per window, of its stored rows (`states_digest`)
        self._resident: torch.Tensor | None = None

    # ---- building -----------------------------------------------------------------------

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        model: SECAI,
        sequences: Mapping[str, str],
        directory: str | Path,
        windowing: Windowing,
        *,
        dtype: str = "float32",
        max_tokens: int = 16384,
        progress: bool = False,
    ) -> TrunkCache:
        """The trunk states of every window `windowing` (and its mode "all") reads of
        `sequences`, in `directory`: reused when a cache there holds them under the same
        settings, extended by the windows it lacks when it holds some, resumed when a build
        there was stopped, refused (naming what differs) when the folder holds a cache of
        other settings."""
        if dtype not in DTYPES:
            raise ConfigError(f"trunk_cache_dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
        directory = Path(directory)
        settings = TrunkSettings(
            base_encoder_fingerprint(model.encoder),
            model.trunk_depth,
            windowing.max_residues,
            windowing.overlap,
            dtype,
        )
        plans = [windowing, dataclasses.replace(windowing, mode="all")]
        windows = trunk_windows(sequences, plans)
        existing = cls._existing(directory, settings)
        if existing is not None and existing.covers(list(windows.values())):
            return existing
        return cls._encode(model, windows, directory, settings, max_tokens, progress, existing)

    @classmethod
    def _existing(cls, directory: Path, settings: TrunkSettings) -> TrunkCache | None:
        """The complete cache in `directory`, when there is one of these settings."""
        if not (directory / INDEX_NAME).is_file():
            return None
        try:
            cache = cls.open(directory)
        except (UserError, KeyError, TypeError):  # a damaged index: built anew
            return None
        differ = cache.settings.differences(settings)
        if differ:
            raise ConfigError(
                f"{directory}: a trunk cache of other settings ({'; '.join(differ)}); give "
                "--trunk_cache another folder, or remove this one to build it anew"
            )
        damage = cache.find_damage()
        if damage is not None:
            logger.warning("%s: %s (changed on disk?); encoding again", directory, damage)
            return None
        return cache

    @classmethod
    def _encode(
        cls,
        model: SECAI,
        windows: dict[str, str],
        directory: Path,
        settings: TrunkSettings,
        max_tokens: int,
        progress: bool,
        kept: TrunkCache | None = None,
    ) -> TrunkCache:
        """Encode `windows` into `directory`. With `kept` (a complete cache there, of these
        settings), its rows stay where they are and only the windows it lacks are encoded,
        after them."""
        kept_keys, kept_lengths = (kept.keys, kept.lengths) if kept is not None else ([], [])
        kept_rows = kept.index.row if kept is not None else {}
        added = {k: r for k, r in windows.items() if k not in kept_rows}
        keys = [*kept_keys, *added]
        residues = [""] * len(kept_keys) + list(added.values())  # kept rows are not encoded
        lengths = np.array([*kept_lengths, *(len(r) + 2 for r in added.values())], dtype=np.int64)
        plan = hashlib.sha1("\n".join(keys).encode()).hexdigest()
        build = {"settings": dataclasses.asdict(settings), "plan": plan}
        directory.mkdir(parents=True, exist_ok=True)
        shape = (int(lengths.sum()), int(model.encoder.config.hidden_size))
        numpy_dtype = DTYPES[settings.dtype][1]
        (directory / INDEX_NAME).unlink(missing_ok=True)  # invalid until complete
        if kept is not None:  # the file grows; the kept rows stay at their offsets
            write_text_atomic(directory / BUILD_NAME, json.dumps(build | {"done": len(kept)}))
            with open(directory / STATES_NAME, "r+b") as handle:
                handle.truncate(shape[0] * shape[1] * np.dtype(numpy_dtype).itemsize)
        done = _windows_done(directory / BUILD_NAME, build)
        mode = "r+" if done else "w+"
        array = np.memmap(directory / STATES_NAME, dtype=numpy_dtype, mode=mode, shape=shape)
        cache = cls(keys, lengths, array, settings)
        bar = tqdm(total=len(keys), initial=done, unit="window", desc="trunk", disable=not progress)
        was_training, flushed = model.training, time.monotonic()
        model.eval()
        try:
            with inference_autocast(model_device(model)):
                for start, stop in _batches(lengths, done, max_tokens):
                    cache._fill(model, residues[start:stop], start)
                    bar.update(stop - start)
                    if time.monotonic() - flushed > FLUSH_EVERY_S:
                        array.flush()
                        write_text_atomic(
                            directory / BUILD_NAME, json.dumps(build | {"done": stop})
                        )
                        flushed = time.monotonic()
        finally:
            bar.close()
            model.train(was_training)
        array.flush()
        cache._write_index(directory)
        (directory / BUILD_NAME).unlink(missing_ok=True)
        return cache

    def _fill(self, model: SECAI, residues: list[str], first_row: int) -> None:
        """Encode consecutive windows through the trunk and store their tokens' states."""
        input_ids, attention_mask = tokenize(residues)
        device = model_device(model)
        states = model.encode_trunk(input_ids.to(device), attention_mask.to(device))
        # Real tokens in row-major order: window after window, as the rows lie in the file.
        tokens = states[attention_mask.to(device).bool()].float().cpu()
        torch_dtype = DTYPES[self.settings.dtype][0]
        tokens = tokens.to(torch_dtype)
        if torch_dtype == torch.bfloat16:
            tokens = tokens.view(torch.int16)
        start = self.offsets[first_row]
        self.array[start : start + tokens.shape[0]] = tokens.numpy().view(self.array.dtype)

    def _write_index(self, directory: Path) -> None:
        self.checksums = [states_digest(self._rows(row)) for row in range(len(self.keys))]
        index = {
            "format_version": FORMAT_VERSION,
            "settings": dataclasses.asdict(self.settings),
            "hidden": int(self.array.shape[1]),
            "keys": self.keys,
            "lengths": self.lengths.tolist(),
            "checksums": self.checksums,
        }
        write_text_atomic(directory / INDEX_NAME, json.dumps(index) + "\n")

    def _rows(self, row: int) -> np.ndarray:
        start = self.offsets[row]
        return self.array[start : start + self.lengths[row]]

    def find_damage(self) -> str | None:
        """Why the stored states cannot be trusted (a window's rows differ from the checksum
        written when they were computed), or None."""
        for row, expected in enumerate(self.checksums):
            if states_digest(self._rows(row)) != expected:
                return f"the states of window {self.keys[row]} differ from their checksum"
        return None

    # ---- reopening and reading ----------------------------------------------------------

    @classmethod
    def open(cls, directory: str | Path) -> TrunkCache:
        """Reopen a complete trunk cache (read-only memory map)."""
        directory = Path(directory)
        index = read_json(directory / INDEX_NAME)
        if index.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"{directory / INDEX_NAME}: not a trunk cache this version reads")
        settings = TrunkSettings(**index["settings"])
        lengths = np.asarray(index["lengths"], dtype=np.int64)
        shape = (int(lengths.sum()), int(index["hidden"]))
        numpy_dtype = DTYPES[settings.dtype][1]
        expected = shape[0] * shape[1] * np.dtype(numpy_dtype).itemsize
        path = directory / STATES_NAME
        if not path.is_file() or path.stat().st_size != expected:
            raise ConfigError(
                f"{path}: not the {expected:,} bytes its index describes; remove {directory} "
                "to build the trunk cache anew"
            )
        array = np.memmap(path, dtype=numpy_dtype, mode="r", shape=shape)
        cache = cls(list(index["keys"]), lengths, array, settings)
        cache.checksums = list(index["checksums"])
        return cache

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    def covers(self, windows: Sequence[str]) -> bool:
        """Whether every window (residues) has a row here."""
        return all(sequence_digest(window) in self.index.row for window in windows)

    def keep_on(self, device: torch.device | str) -> None:
        """Copy every state to `device` once; gathers then run there."""
        flat = torch.from_numpy(np.asarray(self.array))
        if self.settings.dtype == "bfloat16":
            flat = flat.view(torch.bfloat16)
        self._resident = flat.to(device)

    def token_states(self, rows: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        """(T, d) states of the windows at `rows` (int64, CPU), window after window,
        every token of each: the `trunk_states` `SECAI.encode` takes. In the stored dtype."""
        counts = torch.from_numpy(self.lengths)[rows]
        starts = torch.from_numpy(self.offsets)[rows]
        # Each window's run of rows: its start, then +1 per token.
        within = torch.arange(int(counts.sum())) - torch.repeat_interleave(
            counts.cumsum(0) - counts, counts
        )
        index = torch.repeat_interleave(starts, counts) + within
        if self._resident is not None:
            return self._resident[index.to(self._resident.device)].to(device)
        states = torch.from_numpy(np.asarray(self.array[index.numpy()]))
        if self.settings.dtype == "bfloat16":
            states = states.view(torch.bfloat16)
        return states.to(device)

    def window_states(self, windows: Sequence[str], device: torch.device | str) -> torch.Tensor:
        """`token_states` of windows given by their residues."""
        return self.token_states(self.index.rows(windows), device)


def _windows_done(path: Path, build: dict) -> int:
    """Windows a stopped build of the same settings and plan finished (0: start afresh)."""
    if not path.is_file():
        return 0
    try:
        saved = read_json(path)
    except UserError:
        return 0
    same = {k: saved.get(k) for k in build} == build
    return int(saved.get("done", 0)) if same else 0


def _batches(lengths: np.ndarray, start: int, max_tokens: int):
    """(start, stop) runs of the length-sorted windows from `start`, each within `max_tokens`
    (windows x longest)."""
    first = start
    for stop in range(start + 1, len(lengths) + 1):
        if (stop - first) * int(lengths[stop - 1]) > max_tokens and stop - 1 > first:
            yield first, stop - 1
            first = stop - 1
    if first < len(lengths):
        yield first, len(lengths)
