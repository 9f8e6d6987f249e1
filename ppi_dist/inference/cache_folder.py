"""The embedding cache's folder: `states.bin` and `index.json`, written and read back.

`states.bin` is `inference.cache.EmbeddingCache`'s flat (residues, hidden) array, C order.
`index.json`, written last and atomically, says how to cut it (dtype, hidden size, each
protein's id and length, in order) and what it holds: the encoder's fingerprint, the
windowing, a digest of each protein's sequence and a checksum of each protein's states
(`states_digest`). Reading checks the index's shape and the file's size; the states are
checked against their checksums by `EmbeddingCache.find_damage`, before a cache is reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ppi_dist.models.windows import Windowing

INDEX_NAME = "index.json"
STATES_NAME = "states.bin"
FORMAT_VERSION = 3  # 2: whole proteins through windows; 3: each protein's states' checksum
# torch dtype of the states, and the numpy dtype they are stored as.
DTYPES = {
    "float16": (torch.float16, np.float16),
    "bfloat16": (torch.bfloat16, np.uint16),
    "float32": (torch.float32, np.float32),
}


def states_digest(block: np.ndarray) -> str:
    """The checksum of one protein's stored states (its rows of the flat array)."""
    return hashlib.sha1(np.ascontiguousarray(block)).hexdigest()[:16]


def new_states(directory: Path, dtype: np.dtype, shape: tuple[int, int]) -> np.memmap:
    """A states file to fill; the folder's index is removed first: invalid until complete."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / INDEX_NAME).unlink(missing_ok=True)
    return np.memmap(directory / STATES_NAME, dtype=dtype, mode="w+", shape=shape)


def write_index(directory: Path, index: dict) -> None:
    # Written last and atomically: a folder with an index holds a complete cache.
    partial = directory / (INDEX_NAME + ".partial")
    partial.write_text(json.dumps(index) + "\n")
    partial.replace(directory / INDEX_NAME)


def read_folder(directory: Path) -> dict:
    """What `EmbeddingCache` is built from (`ids`, `lengths`, `array`: a read-only memory
    map, `dtype`, `digests`, `fingerprint`, `windowing`), and the `checksums`. No index is
    a FileNotFoundError; an index of another format, a damaged one, or a states file of
    another size than it gives, a ValueError naming the file."""
    index_path = directory / INDEX_NAME
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path}: no complete embedding cache here")
    index = json.loads(index_path.read_text())
    version = index.get("format_version") if isinstance(index, dict) else None
    if version != FORMAT_VERSION or index.get("dtype") not in DTYPES:
        raise ValueError(f"{index_path}: unsupported cache format (version {version!r})")
    try:
        lengths = np.asarray(index["lengths"], dtype=np.int64)
        shape = (int(lengths.sum()), int(index["hidden"]))
        windowing = Windowing(index["max_residues"], index["window_overlap"], index["windows"])
        ids, digests, checksums = index["ids"], index["sequence_sha1"], index["states_sha1"]
    except (KeyError, TypeError) as error:
        raise ValueError(f"{index_path}: damaged index ({error!r})") from None
    if not len(ids) == len(digests) == len(checksums) == len(lengths) or (lengths < 0).any():
        raise ValueError(f"{index_path}: damaged index (its lists disagree)")
    numpy_dtype = DTYPES[index["dtype"]][1]
    expected = shape[0] * shape[1] * np.dtype(numpy_dtype).itemsize
    actual = (directory / STATES_NAME).stat().st_size
    if actual != expected:
        raise ValueError(f"{directory / STATES_NAME}: {actual} bytes, expected {expected}")
    return {
        "ids": ids,
        "lengths": lengths,
        "array": np.memmap(directory / STATES_NAME, dtype=numpy_dtype, mode="r", shape=shape),
        "dtype": index["dtype"],
        "digests": digests,
        "fingerprint": index["encoder_fingerprint"],
        "windowing": windowing,
        "checksums": list(checksums),
    }
