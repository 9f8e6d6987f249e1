"""Long proteins as overlapping windows: where the windows sit and which residues each keeps.

ESM-2 reads at most 1,022 residues at a time. A longer protein is either cropped to one
window (`mode="crop"`: a random one in training, the centred one when scoring) or encoded
as overlapping windows (`mode="all"`), each window a sequence of its own to the packed
encoder, and its per-residue states stitched back into one (L, d) tensor, so that
cross-attention and pooling run over the whole protein.

Stitching takes each residue from the window where it is most central: the overlap of two
neighbouring windows is cut at its midpoint, so every kept residue saw at least
`overlap / 2` residues of context on each side (except at the protein's own ends), and a
protein that fits one window gets exactly the states of one encoder pass. Averaging the
overlaps instead would give states no encoder pass produced, and would mix the
better-placed window with the one whose context is cut off at its edge.

    windowing = Windowing(max_residues=1022, overlap=256, mode="all")
    windowing.windows(2500)   # 3 Windows, each 1,022 residues, overlapping >= 256
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import numpy as np
import torch

WINDOW_MODES = ("all", "crop")


@dataclass(frozen=True)
class Window:
    """One encoder input of a protein, in the protein's residue coordinates (0-based,
    stop exclusive): residues `start:stop` are encoded, `keep_start:keep_stop` are kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


@dataclass(frozen=True)
class Windowing:
    """How a protein longer than `max_residues` is read: windows or one crop."""

    max_residues: int = 1022
    """Residues the encoder reads in one window."""
    overlap: int = 256
    """Residues shared by neighbouring windows (mode "all"), at least this many."""
    mode: str = "all"
    """"all": every window, stitched; "crop": one window (random with an rng, else centred)."""

    def __post_init__(self) -> None:
        if self.mode not in WINDOW_MODES:
            raise ValueError(f"window mode {self.mode!r} is not one of {WINDOW_MODES}")
        if self.max_residues < 1:
            raise ValueError(f"max_residues must be at least 1, not {self.max_residues}")
        if not 0 <= self.overlap < self.max_residues:
            raise ValueError(
                f"window overlap {self.overlap} must be in [0, max_residues={self.max_residues})"
            )

    def windows(self, length: int, rng: random.Random | None = None) -> list[Window]:
        """The windows of a protein of `length` residues, in order along the chain."""
        width = self.max_residues
        if length <= width:
            return [Window(0, length, 0, length)]
        if self.mode == "crop":
            excess = length - width
            start = rng.randint(0, excess) if rng is not None else excess // 2
            return [Window(start, start + width, start, start + width)]
        # Fewest full-width windows whose neighbours share >= overlap residues, spread
        # evenly: steps of floor/ceil((L - W) / (n - 1)) <= W - overlap.
        step = width - self.overlap
        count = -(-(length - self.overlap) // step)
        starts = [k * (length - width) // (count - 1) for k in range(count)]
        cuts = [(nxt + start + width) // 2 for start, nxt in itertools.pairwise(starts)]
        bounds = [0, *cuts, length]
        return [
            Window(start, start + width, bounds[k], bounds[k + 1]) for k, start in enumerate(starts)
        ]

    def planned_window(self, length: int, rng: random.Random) -> Window:
        """One of the windows mode "all" reads, at random, kept whole: the training crop of a
        protein whose windows were encoded once (the trunk cache holds those windows, not
        every offset)."""
        plan = Windowing(self.max_residues, self.overlap, "all").windows(length)
        window = plan[rng.randrange(len(plan))]
        return Window(window.start, window.stop, window.start, window.stop)

    def kept_length(self, length: int) -> int:
        """Residues of a protein of `length` that reach cross-attention."""
        return length if self.mode == "all" else min(length, self.max_residues)

    def encoded_residues(self, length: int) -> int:
        """Residues the encoder reads for a protein of `length` (overlaps counted twice)."""
        return sum(w.stop - w.start for w in self.windows(length))

    def describe(self, training: bool = False) -> str:
        if self.mode == "crop":
            where = "a random" if training else "the centred"
            return f"proteins over {self.max_residues} residues cropped to {where} window"
        return (
            f"proteins over {self.max_residues} residues read as windows of {self.max_residues}"
            f" overlapping >= {self.overlap}, stitched"
        )


def stitch_layout(
    windows: list[list[Window]], token_width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each protein's kept residues sit in the encoder's window states.

    `windows[u]` are protein u's windows; they are encoder rows in order (protein 0's
    windows first), each row `<cls> residues <eos> pad` of `token_width` tokens. Returns
    `index` (U, L) int64, the flat position (row x token_width + token) of protein u's
    residue i in the window states, and `mask` (U, L) bool, True at real residues; L is the
    longest stitched protein. Padding points at position 0 and is masked.
    """
    longest = max(ws[-1].keep_stop - ws[0].keep_start for ws in windows)
    index = np.zeros((len(windows), longest), dtype=np.int64)
    mask = np.zeros((len(windows), longest), dtype=bool)
    row = 0
    for u, protein_windows in enumerate(windows):
        first = protein_windows[0].keep_start
        for w in protein_windows:
            kept = np.arange(w.keep_start, w.keep_stop)
            # +1: the window's residues follow its <cls> token.
            index[u, kept - first] = row * token_width + 1 + kept - w.start
            mask[u, kept - first] = True
            row += 1
    return torch.from_numpy(index), torch.from_numpy(mask)


def stitch_states(
    window_states: torch.Tensor, index: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """(rows, tokens, d) window states -> (U, L, d) proteins, zero where `mask` is False."""
    flat = window_states.reshape(-1, window_states.shape[-1])
    # index_select (backward: one index_add), not flat[index] (an accumulating index_put).
    stitched = flat.index_select(0, index.reshape(-1)).view(*index.shape, flat.shape[-1])
    return stitched.masked_fill(~mask.unsqueeze(-1), 0.0)
