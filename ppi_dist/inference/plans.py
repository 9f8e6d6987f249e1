"""Which pairs `predict` scores, in which order: all-vs-all (or set A x set B) and pair files.

A plan cuts its pairs into numbered chunks, the unit of work a rank takes and of resuming.
All-vs-all sorts the proteins by length and cuts them into tiles of `tile` proteins; a chunk
is one pair of tiles (I <= J), so the pairs of a chunk have similar lengths and pad little,
and each unordered pair is named once, protein_a being the one that comes first in the
FASTA file. A pair file is cut into chunks of `chunk_pairs` rows in file order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from ppi_dist.data.pairs import Pair, PairSource, sequences_of
from ppi_dist.inference.scoring import CHUNK_PAIRS


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

    def chunk_mask(self, chunk: int) -> np.ndarray:
        """Which entries of the chunk's (tile A x tile B) matrix are its pairs: (ta, tb) bool,
        True in the row-major order `pairs_of` lists them. A diagonal tile of one set takes
        each unordered pair once (b after a in the tile); a protein is paired with itself
        only with `include_self`."""
        i, j = self.chunk_tiles[chunk]
        tile_a, tile_b = self.tiles_a[i], self.tiles_b[j]
        mask = np.ones((len(tile_a), len(tile_b)), dtype=bool)
        if self.single and i == j:
            return np.triu(mask, k=0 if self.include_self else 1)
        if not self.single and not self.include_self:  # the two sets may share proteins
            mask &= np.array(tile_a)[:, None] != np.array(tile_b)[None, :]
        return mask

    def pairs_of(self, chunk: int) -> list[Pair]:
        i, j = self.chunk_tiles[chunk]
        tile_a, tile_b = self.tiles_a[i], self.tiles_b[j]
        rows, columns = np.nonzero(self.chunk_mask(chunk))
        pairs: list[Pair] = []
        for x, y in zip(rows.tolist(), columns.tolist(), strict=True):
            a, b = tile_a[x], tile_b[y]
            if self.single and self.position[b] < self.position[a]:
                pairs.append(Pair(b, a))
            else:
                pairs.append(Pair(a, b))
        return pairs

    def proteins_of(self, wanted: Callable[[int], bool]) -> list[str]:
        """The distinct proteins of the wanted chunks (a rank's share)."""
        seen: dict[str, None] = {}
        for chunk in range(self.num_chunks):
            if wanted(chunk):
                i, j = self.chunk_tiles[chunk]
                seen.update(dict.fromkeys([*self.tiles_a[i], *self.tiles_b[j]]))
        return list(seen)

    def chunks(self, wanted: Callable[[int], bool]) -> Iterator[tuple[int, list[Pair]]]:
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
        self.has_labels = False

        def noting_labels(pairs: Iterator[Pair]) -> Iterator[Pair]:
            for pair in pairs:
                self.has_labels = self.has_labels or pair.label is not None
                yield pair

        # One pass: the distinct proteins (an identifier with two sequences is refused) and
        # whether the file has labels.
        self.sequences = sequences_of(noting_labels(source.pair_rows()))

    def proteins_of(self, wanted: Callable[[int], bool]) -> list[str]:
        """The distinct proteins of the wanted chunks (a rank's share)."""
        seen: dict[str, None] = {}
        for _, pairs in self.chunks(wanted):
            seen.update(dict.fromkeys(p for pair in pairs for p in pair[:2]))
        return list(seen)

    def chunks(self, wanted: Callable[[int], bool]) -> Iterator[tuple[int, list[Pair]]]:
        chunk, pairs = 0, []
        for pair in self.source.pair_rows():
            pairs.append(pair)
            if len(pairs) == self.chunk_pairs:
                if wanted(chunk):
                    yield chunk, pairs
                chunk, pairs = chunk + 1, []
        if pairs and wanted(chunk):
            yield chunk, pairs
