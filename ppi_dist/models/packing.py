"""Packing: several sequences to one encoder row, so ESM-2 runs on little padding.

A batch's distinct sequences (each `<cls> residues <eos>`) differ widely in length; padded one
per row to the longest, a quarter of the encoder's tokens on Bernett would be padding. Packed
first-fit decreasing into rows of the batch's width instead, each sequence attends only to its
own tokens (a block-diagonal mask) and its position ids restart at 0, so ESM-2 computes what it
computes on the sequence alone: its positions are rotary (attention depends only on distances
within a sequence) and every other layer works token by token. Rows are never wider than the
padded layout's and never more numerous, so packing saves attention work as well as
token work.

`pack_rows` is plain Python on lengths: the data side uses it to fill a token budget with
exactly the rows the encoder will run, the model to lay the tokens out.

No host synchronisation on the device: `packing_layout` computes a batch's layout on the CPU
(`data.collate_pairs` does it in the loader's worker and ships it as the batch's `pack_*`
tensors), and `packed_inputs_from_layout` builds the packed tensors from it with indexing
only (no `.tolist()`, `.item()` or `nonzero`), so a CUDA stream never waits on the host.
`pack_batch` (layout from the attention mask, one sync) gives the same result for batches
without a layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def pack_rows(lengths: Sequence[int], width: int) -> tuple[list[int], list[int], int]:
    """First-fit decreasing of `lengths` into rows of `width` tokens.

    Returns `(row, start, n_rows)`: sequence i occupies `row[i]`, columns `start[i]` to
    `start[i] + lengths[i]`. Deterministic (ties keep input order), so the data side and
    the model agree on the layout of the same batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    row, start = [0] * len(lengths), [0] * len(lengths)
    free: list[int] = []  # free tokens left in each row
    for i in order:
        n = lengths[i]
        if n > width:
            raise ValueError(f"a {n}-token sequence does not fit rows of {width} tokens")
        r = next((r for r, space in enumerate(free) if space >= n), len(free))
        if r == len(free):
            free.append(width)
        row[i], start[i] = r, width - free[r]
        free[r] -= n
    return row, start, len(free)


def packed_tokens(lengths: Sequence[int]) -> int:
    """Tokens the encoder runs for sequences of these lengths: rows x the longest."""
    width = max(lengths)
    return pack_rows(lengths, width)[2] * width


def encoder_tokens(attention_mask: torch.Tensor) -> int:
    """Tokens `SECAI.encode` runs for a batch's (U, L) attention mask, packed: rows x width."""
    return packed_tokens(attention_mask.sum(dim=1).tolist())


@dataclass
class PackedBatch:
    """Token layout of one encoder call on packed rows (R rows of width W).

    `input_ids`, `position_ids`, `token_mask` (1 at real tokens), `sequence_ids` (the
    sequence at each packed token, -1 at padding): (R, W). `cu_seqlens` (int32): where each
    segment of the rows read as one stream starts (sequences and padding tails), then R x W;
    what variable-length attention takes. `sequence`, `column`: for every real token of the
    padded (U, L) batch, in row-major order, its sequence and column there; `row`,
    `packed_column`: where that token sits in the packed layout.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    token_mask: torch.Tensor
    sequence_ids: torch.Tensor
    cu_seqlens: torch.Tensor
    sequence: torch.Tensor
    column: torch.Tensor
    row: torch.Tensor
    packed_column: torch.Tensor

    @property
    def same_sequence(self) -> torch.Tensor:
        """(R, 1, W, W) bool, True where query and key belong to the same sequence (padding
        attends to padding, so no row of the mask is empty): SDPA's block-diagonal mask."""
        owner = self.sequence_ids
        return (owner[:, :, None] == owner[:, None, :]).unsqueeze(1)


# Batch fields of a precomputed layout (see `packing_layout`).
LAYOUT_FIELDS = (
    "pack_sequence_ids",
    "pack_position_ids",
    "pack_sequence",
    "pack_column",
    "pack_row",
    "pack_packed_column",
    "pack_cu_seqlens",
)


def packing_layout(lengths: Sequence[int]) -> dict[str, torch.Tensor]:
    """The packed layout of sequences of these token lengths, as CPU tensors.

    Right-padded sequences of a (U, L) batch go to R rows of width W = max(lengths):
    `pack_sequence_ids` (R, W): the sequence at each packed token, -1 at padding;
    `pack_position_ids` (R, W): its position within its sequence (0 at padding);
    for every real token of the (U, L) batch in row-major order, `pack_sequence` and
    `pack_column` (where it is there) and `pack_row`, `pack_packed_column` (where it goes);
    `pack_cu_seqlens`: the starts of the segments of the rows read as one stream (each
    sequence, each padding tail), then R x W, int32 as flash attention wants them. The rest
    are int64; R, W and the token count are in the shapes, so the device never asks.
    """
    lengths = [int(n) for n in lengths]
    width = max(lengths)
    row_of, start_of, n_rows = pack_rows(lengths, width)
    n = np.asarray(lengths, dtype=np.int64)
    sequence = np.repeat(np.arange(len(n), dtype=np.int64), n)
    column = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    row = np.asarray(row_of, dtype=np.int64)[sequence]
    packed_column = np.asarray(start_of, dtype=np.int64)[sequence] + column
    owner = np.full((n_rows, width), -1, dtype=np.int64)
    owner[row, packed_column] = sequence
    position = np.zeros((n_rows, width), dtype=np.int64)
    position[row, packed_column] = column
    flat = owner.reshape(-1)
    starts = np.flatnonzero((np.arange(flat.size) % width == 0) | (flat != np.roll(flat, 1)))
    cu_seqlens = np.append(starts, flat.size).astype(np.int32)
    arrays = (owner, position, sequence, column, row, packed_column, cu_seqlens)
    return {name: torch.from_numpy(a) for name, a in zip(LAYOUT_FIELDS, arrays, strict=True)}


def packed_inputs_from_layout(
    input_ids: torch.Tensor, layout: dict[str, torch.Tensor], pad_id: int
) -> PackedBatch:
    """`PackedBatch` of the (U, L) `input_ids` from a precomputed layout, without host sync.

    `layout` is any mapping holding `LAYOUT_FIELDS` (a batch from `data.collate_pairs`),
    on the device of `input_ids`; every step is indexing on that device.
    """
    owner = layout["pack_sequence_ids"]
    sequence, column = layout["pack_sequence"], layout["pack_column"]
    row, packed_column = layout["pack_row"], layout["pack_packed_column"]
    packed_ids = input_ids.new_full(owner.shape, pad_id)
    packed_ids[row, packed_column] = input_ids[sequence, column]
    return PackedBatch(
        input_ids=packed_ids,
        position_ids=layout["pack_position_ids"],
        token_mask=(owner >= 0).long(),
        sequence_ids=owner,
        cu_seqlens=layout["pack_cu_seqlens"],
        sequence=sequence,
        column=column,
        row=row,
        packed_column=packed_column,
    )


def pack_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int) -> PackedBatch:
    """Lay the (U, L) right-padded sequences of a batch out in packed rows of their longest.

    Reads the lengths to the host (one sync on a GPU); batches that carry a layout
    (`packing_layout`) go through `packed_inputs_from_layout` instead.
    """
    layout = packing_layout(attention_mask.sum(dim=1).tolist())
    layout = {name: t.to(input_ids.device) for name, t in layout.items()}
    return packed_inputs_from_layout(input_ids, layout, pad_id)


def unpack_states(
    packed_states: torch.Tensor, packed: PackedBatch, shape: torch.Size
) -> torch.Tensor:
    """(R, W, d) states of packed rows -> (U, L, d) with one sequence per row, zero at padding."""
    n_rows, width, dim = packed_states.shape
    # Flat index_select / index_copy rather than 2D indexing: the backward is then a gather
    # and an index_add, not an accumulating index_put (serial on the CPU).
    source = packed.row * width + packed.packed_column
    target = packed.sequence * shape[1] + packed.column
    real = packed_states.reshape(n_rows * width, dim).index_select(0, source)
    states = packed_states.new_zeros(shape[0] * shape[1], dim).index_copy(0, target, real)
    return states.view(*shape, dim)


def pack_states(token_states: torch.Tensor, packed: PackedBatch) -> torch.Tensor:
    """Per-token states of a batch's real tokens, flat (tokens, d) in the (U, L) batch's
    row-major order (sequence by sequence) -> (R, W, d) packed rows, zero at padding: how
    cached hidden states enter the packed encoder in place of token embeddings."""
    n_rows, width = packed.sequence_ids.shape
    target = packed.row * width + packed.packed_column
    rows = token_states.new_zeros(n_rows * width, token_states.shape[-1])
    return rows.index_copy(0, target, token_states).view(n_rows, width, -1)
