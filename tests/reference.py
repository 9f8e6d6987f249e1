"""A reference SE-CAI pair scorer written straight from the card, one pair at a time.

Independent of `SECAI.pair_logits` and of SDPA: each pair's residues are sliced to their real
length (no masks), the cross-attention is `softmax(Q K^T / sqrt(d_k)) V` per head by hand,
then max- and mean-pooling over the real residues and the model's own head weights. Tests
compare the model's batched, projected-once, masked computation with it.
"""

from __future__ import annotations

import math

import torch

from ppi_dist.models.secai import SECAI


def attend_by_hand(model: SECAI, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """(Lq, d) residues of one protein reading the (Lk, d) residues of its partner."""
    attention = model.cross_attention
    heads, dim = attention.heads, query.shape[-1]
    d_k = dim // heads

    def split(x: torch.Tensor) -> torch.Tensor:  # (L, d) -> (heads, L, d_k)
        return x.view(x.shape[0], heads, d_k).transpose(0, 1)

    q, k, v = split(attention.w_q(query)), split(attention.w_k(keys)), split(attention.w_v(keys))
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d_k), dim=-1)
    return (weights @ v).transpose(0, 1).reshape(query.shape[0], dim)


def pooled(states: torch.Tensor) -> torch.Tensor:
    """[max, mean] over the rows of (L, d) real residues -> (2d,)."""
    return torch.cat([states.max(dim=0).values, states.mean(dim=0)])


def reference_logits(
    model: SECAI,
    states: torch.Tensor,
    mask: torch.Tensor,
    index_a: torch.Tensor,
    index_b: torch.Tensor,
) -> torch.Tensor:
    """Logits of pairs (states[index_a[i]], states[index_b[i]]); `mask` (U, L) marks residues.

    The head runs in the model's mode (eval: BatchNorm's running statistics); with
    `symmetric: average` both orders go through it together and the logits are averaged.
    """
    v_a, v_b = [], []
    for a, b in zip(index_a.tolist(), index_b.tolist(), strict=True):
        residues_a, residues_b = states[a][mask[a]], states[b][mask[b]]
        v_a.append(pooled(attend_by_hand(model, residues_a, residues_b)))
        v_b.append(pooled(attend_by_hand(model, residues_b, residues_a)))
    v_a, v_b = torch.stack(v_a), torch.stack(v_b)
    if model.config.symmetric == "none":
        return model.head(v_a, v_b)
    forward, backward = model.head(torch.cat([v_a, v_b]), torch.cat([v_b, v_a])).chunk(2)
    return (forward + backward) / 2
