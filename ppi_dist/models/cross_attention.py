"""The pairs' cross-attention over packed streams: A->B and B->A without padding.

`SECAIConfig.cross_attention_kernel` says how `SECAI.pair_logits` attends and pools:

- "sdpa" (default): each pair's residues padded to the batch's longest partner, a boolean
  key mask to `scaled_dot_product_attention` (`secai.CrossAttention.attend`), then a
  masked max and mean over padded rows. With a mask, a GPU's SDPA runs the
  memory-efficient kernel, never flash, and computes every padded position.
- "varlen": the A residues of every pair as one stream of queries and the B residues as
  one stream of keys, cut at cumulative lengths per pair, through flash attention
  (`torch.nn.attention.varlen.varlen_attn`): no padding, no mask, in both directions. The
  max and mean pooling are segment reductions over the same streams. CUDA only, in
  bf16/fp16 (flash's precisions); elsewhere it falls back to "sdpa" (`pairs_kernel`), so a
  model trained with it loads and scores anywhere.

Both compute the same function (tests/models/test_cross_attention.py, against a per-pair
reference on the CPU; tests/gpu for the flash kernel itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

try:  # torch >= 2.10
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # pragma: no cover - older torch: "varlen" falls back to "sdpa"
    varlen_attn = None

CROSS_ATTENTION_KERNELS = ("sdpa", "varlen")


def pairs_kernel(choice: str, states: torch.Tensor) -> str:
    """The kernel `choice` runs as for the projections `states` (their device, precision)."""
    if choice not in CROSS_ATTENTION_KERNELS:
        raise ValueError(
            f"cross_attention_kernel must be one of {CROSS_ATTENTION_KERNELS}, got {choice!r}"
        )
    return choice if runs_here(choice, states) else "sdpa"


def runs_here(choice: str, states: torch.Tensor) -> bool:
    """Whether `choice` can run on `states`: flash varlen needs CUDA and half precision."""
    if choice == "sdpa":
        return True
    device = states.device.type
    if device != "cuda" or varlen_attn is None:
        return False
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else states.dtype
    return dtype in (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class PairStream:
    """One side's residues of every pair, pair after pair, as rows of the flat projections."""

    rows: torch.Tensor
    """(T,) row in the flattened (U * L) projections of each token of the stream."""
    cu_seqlens: torch.Tensor
    """(P + 1,) int32: pair i owns tokens cu_seqlens[i] : cu_seqlens[i + 1]."""
    lengths: torch.Tensor
    """(P,) residues of each pair's protein on this side."""
    segment: torch.Tensor
    """(T,) the pair of each token."""
    longest: int


def pair_stream(mask: torch.Tensor, index: torch.Tensor) -> PairStream:
    """The stream of protein `index[i]`'s residues (`mask` (U, L) True there) for each pair i.

    Residues need not start at position 0 (`encode` puts `<cls>` first, a cache does not):
    they are found through the mask, in position order.
    """
    device = mask.device
    residues = mask.reshape(-1).nonzero().squeeze(1)  # flat positions, protein after protein
    per_protein = mask.sum(dim=1)
    first = torch.cumsum(per_protein, 0) - per_protein  # protein u's first entry in `residues`
    lengths = per_protein[index]
    total, longest = torch.stack([lengths.sum(), lengths.max()]).tolist()  # one host sync
    pairs = torch.arange(index.numel(), device=device)
    segment = torch.repeat_interleave(pairs, lengths, output_size=total)
    ends = torch.cumsum(lengths, 0)
    within = torch.arange(total, device=device) - (ends - lengths)[segment]
    rows = residues[first[index][segment] + within]
    cu_seqlens = F.pad(ends, (1, 0)).to(torch.int32)
    return PairStream(rows, cu_seqlens, lengths, segment, int(longest))


def _tokens(x: torch.Tensor, stream: PairStream, heads: int, dtype: torch.dtype) -> torch.Tensor:
    """(U, L, d) projections -> (T, heads, d_k) stream tokens."""
    # index_select, not x[rows]: its backward is one index_add, not an accumulating index_put.
    tokens = x.flatten(0, 1).index_select(0, stream.rows)
    return tokens.unflatten(1, (heads, -1)).to(dtype)


def segment_max_mean(tokens: torch.Tensor, stream: PairStream) -> torch.Tensor:
    """[max, mean] over each pair's tokens: (T, d) -> (P, 2d), `masked_max_mean`'s values.

    The mean is summed and divided in fp32, as `masked_max_mean` does (bf16 sums and counts
    lose digits)."""
    pairs, dim = stream.lengths.numel(), tokens.shape[1]
    where = stream.segment[:, None].expand(-1, dim)
    lowest = torch.finfo(tokens.dtype).min
    start = tokens.new_full((pairs, dim), lowest)
    maxed = start.scatter_reduce(0, where, tokens, "amax", include_self=True)
    summed = tokens.new_zeros((pairs, dim), dtype=torch.float32)
    summed = summed.index_add(0, stream.segment, tokens.float())
    mean = summed / stream.lengths[:, None].float()
    return torch.cat([maxed, mean.to(tokens.dtype)], dim=-1)


def packed_cross_pooling(
    side_a: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    side_b: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    index_a: torch.Tensor,
    index_b: torch.Tensor,
    heads: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled A->B and B->A vectors, (P, 2d) each, through flash varlen on packed streams.

    Each side is `(q, k, v, mask)` of its distinct proteins: projections (U, L, d) from
    `CrossAttention.project` and the residue mask (U, L); pair i is (side_a row
    index_a[i], side_b row index_b[i]); `heads` of d / heads channels each. The default
    1/sqrt(d_k) scale is SDPA's too.
    """
    (q_a, k_a, v_a, mask_a), (q_b, k_b, v_b, mask_b) = side_a, side_b
    stream_a, stream_b = pair_stream(mask_a, index_a), pair_stream(mask_b, index_b)
    device = q_a.device.type
    # Flash attention takes bf16/fp16 only: run in autocast's precision.
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else q_a.dtype

    def attend(q, k, v, queries: PairStream, keys: PairStream) -> torch.Tensor:
        out = varlen_attn(
            _tokens(q, queries, heads, dtype),
            _tokens(k, keys, heads, dtype),
            _tokens(v, keys, heads, dtype),
            queries.cu_seqlens,
            keys.cu_seqlens,
            queries.longest,
            keys.longest,
        )
        return out.flatten(1)  # (T, heads * d_k)

    a_to_b = attend(q_a, k_b, v_b, stream_a, stream_b)  # A's residues read B
    b_to_a = attend(q_b, k_a, v_a, stream_b, stream_a)  # and B's read A
    return segment_max_mean(a_to_b, stream_a), segment_max_mean(b_to_a, stream_b)
