"""The naive baseline of throughput.py: fixed-size random batches, A and B each padded to
their own longest and encoded in two encoder calls (no dedup, no packing) with a transformers
attention, then the model's own pair maths, loss, backward and AdamW step."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ppi_dist.data.batching import batch_to_device
from ppi_dist.data.pairs import Pair
from ppi_dist.data.sequences import esm2_tokenizer, tokenize
from ppi_dist.models.encoder import base_encoder
from ppi_dist.models.secai import SECAI, residue_mask
from ppi_dist.training.config import OptimizationConfig
from ppi_dist.training.loss import focal_loss


def pairs_of(batches: list[dict]) -> list[Pair]:
    """The pairs of our batches with the (cropped) sequences the data layer chose."""
    letters = {i: token for token, i in esm2_tokenizer().get_vocab().items() if len(token) == 1}
    pairs = []
    for batch in batches:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        sequences = []
        for row, length in zip(ids, mask.sum(dim=1).tolist(), strict=True):
            sequences.append("".join(letters[int(i)] for i in row[1 : length - 1]))
        sides = zip(batch["index_a"].tolist(), batch["index_b"].tolist(), strict=True)
        names = zip(batch["protein_a"], batch["protein_b"], strict=True)
        for (a, b), (name_a, name_b), label in zip(sides, names, batch["labels"], strict=True):
            pairs.append(Pair(name_a, name_b, sequences[a], sequences[b], float(label)))
    return pairs


def baseline_batches(pairs: list[Pair], batch_size: int, seed: int | None) -> list[dict]:
    """Fixed-size random batches, A and B tokenised and padded apart (`seed=None`: in order)."""
    pairs = list(pairs)
    if seed is not None:
        random.Random(seed).shuffle(pairs)
    batches = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        ids_a, mask_a = tokenize([p.sequence_a for p in chunk])
        ids_b, mask_b = tokenize([p.sequence_b for p in chunk])
        labels = torch.tensor([p.label for p in chunk], dtype=torch.float32)
        names = ("input_ids_a", "attention_mask_a", "input_ids_b", "attention_mask_b", "labels")
        batches.append(dict(zip(names, (ids_a, mask_a, ids_b, mask_b, labels), strict=True)))
    return batches


def naive_forward(model: SECAI, batch: dict) -> torch.Tensor:
    """The A batch, then the B batch through the encoder as padded, then the model's pair
    maths, pair i being row i of both sides."""
    states_a = model.encoder(
        input_ids=batch["input_ids_a"], attention_mask=batch["attention_mask_a"]
    ).last_hidden_state
    states_b = model.encoder(
        input_ids=batch["input_ids_b"], attention_mask=batch["attention_mask_b"]
    ).last_hidden_state
    side_a = (states_a, residue_mask(batch["attention_mask_a"]))
    side_b = (states_b, residue_mask(batch["attention_mask_b"]))
    rows = torch.arange(states_a.shape[0], device=states_a.device)
    return model.pair_logits(side_a, side_b, rows, rows)


@contextlib.contextmanager
def transformers_attention(model: SECAI, implementation: str) -> Iterator[None]:
    """ESM-2's attention switched in place to a transformers implementation, then back."""
    base = base_encoder(model.encoder)
    built = base.config._attn_implementation
    base.set_attn_implementation(implementation)
    try:
        yield
    finally:
        base.set_attn_implementation(built)


@dataclass
class BaselineStep:
    model: SECAI
    optimizer: torch.optim.Optimizer
    optimization: OptimizationConfig
    device: torch.device
    bf16: bool

    def __call__(self, batch: dict) -> None:
        batch = batch_to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        bf16 = torch.autocast(self.device.type, dtype=torch.bfloat16)
        with bf16 if self.bf16 else contextlib.nullcontext():
            logits = naive_forward(self.model, batch)
        gamma, alpha = self.optimization.focal_gamma, self.optimization.focal_alpha
        focal_loss(logits, batch["labels"], gamma, alpha).backward()
        self.optimizer.step()
