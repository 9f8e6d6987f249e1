"""Pair data: from pair files and sequences to batches the model reads.

A batch holds each distinct sequence once (`input_ids`, `attention_mask`) and, per pair,
the rows of its two proteins (`index_a`, `index_b`): the encoder runs once on the distinct
sequences and the pairs pick their states from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ppi_dist.sequences import tokenize


@dataclass(frozen=True)
class Pair:
    """One protein pair with cleaned (and, if needed, cropped) sequences."""

    protein_a: str
    protein_b: str
    sequence_a: str
    sequence_b: str
    label: float | None = None


def collate_pairs(pairs: list[Pair]) -> dict:
    """Tokenise the distinct sequences of `pairs` once and index them per pair.

    Returns a dict with tensors `input_ids` and `attention_mask` (distinct sequences x
    tokens), `index_a` and `index_b` (pairs), `labels` (pairs, float; only when every pair
    has one) and the lists `protein_a`, `protein_b` of identifiers.
    """
    row_of: dict[str, int] = {}
    for pair in pairs:
        row_of.setdefault(pair.sequence_a, len(row_of))
        row_of.setdefault(pair.sequence_b, len(row_of))
    input_ids, attention_mask = tokenize(list(row_of))
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "index_a": torch.tensor([row_of[p.sequence_a] for p in pairs], dtype=torch.long),
        "index_b": torch.tensor([row_of[p.sequence_b] for p in pairs], dtype=torch.long),
        "protein_a": [p.protein_a for p in pairs],
        "protein_b": [p.protein_b for p in pairs],
    }
    if all(p.label is not None for p in pairs):
        batch["labels"] = torch.tensor([p.label for p in pairs], dtype=torch.float32)
    return batch
