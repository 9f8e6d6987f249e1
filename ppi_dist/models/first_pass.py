"""The first pass: a cheap symmetric pair score from each protein's own pooled states.

SE-CAI's cross-attention costs L_A x L_B x d per pair, so an all-vs-all screen of a proteome
is mostly cross-attention. The first pass scores a pair from two per-protein vectors, the
way a bi-encoder retrieves candidates before a cross-encoder reranks them:

    states (U, L, d) -> [max, mean] over residues (U, 2d) -> LayerNorm -> Linear -> GELU
      -> Linear -> u (U, k) and c (U,)
    score(A, B) = sum_k w_k u_A,k u_B,k + c_A + c_B + b

`w` is a learnt vector, not a positive scale: a pair can score high because the two
proteins differ (a kinase and its substrate), not only because they are alike. `c` is a
protein's own propensity to interact. The score is symmetric, and over two sets of proteins
it is one matrix product (`tile_logits`), so a screen scores N^2 pairs at the cost of a
GEMM. `SECAI` trains it beside the pair head on the same states (`first_pass_width`); the
trainer weighs its loss by `first_pass_loss_weight`.
"""

from __future__ import annotations

import torch
from torch import nn


class FirstPass(nn.Module):
    """Protein vectors from pooled states, and the pair score over two of them."""

    def __init__(self, pooled_dim: int, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(pooled_dim)
        self.fc1 = nn.Linear(pooled_dim, width)
        self.fc2 = nn.Linear(width, width + 1)  # u and the propensity c
        self.weight = nn.Parameter(torch.full((width,), width**-0.5))
        self.bias = nn.Parameter(torch.zeros(1))  # not 0-d: DeepSpeed flattens parameters

    def vectors(self, pooled: torch.Tensor) -> torch.Tensor:
        """(U, 2d) pooled states -> (U, k + 1): u, then c in the last column."""
        return self.fc2(nn.functional.gelu(self.fc1(self.norm(pooled))))

    def pair_logits(self, vectors_a: torch.Tensor, vectors_b: torch.Tensor) -> torch.Tensor:
        """Row i of A with row i of B: (P, k + 1) x2 -> (P,). Exactly symmetric: u_A * u_B
        and c_A + c_B commute, and the rest is the same arithmetic either way."""
        u_a, c_a = vectors_a[:, :-1], vectors_a[:, -1]
        u_b, c_b = vectors_b[:, :-1], vectors_b[:, -1]
        return ((u_a * u_b) * self.weight).sum(-1) + (c_a + c_b) + self.bias

    def tile_logits(self, vectors_a: torch.Tensor, vectors_b: torch.Tensor) -> torch.Tensor:
        """Every row of A with every row of B: (Na, k + 1), (Nb, k + 1) -> (Na, Nb), one
        matrix product (equal to `pair_logits` up to the rounding of its sums)."""
        u_a, c_a = vectors_a[:, :-1], vectors_a[:, -1]
        u_b, c_b = vectors_b[:, :-1], vectors_b[:, -1]
        return (u_a * self.weight) @ u_b.T + (c_a[:, None] + c_b[None, :]) + self.bias
