"""A tiny model that really trained, and the validation pairs the hub tests score it on."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ppi_dist.data.batching import collate_pairs
from ppi_dist.evaluation.threshold import search_threshold
from ppi_dist.models.secai import SECAI
from tests.helpers import random_pairs, tiny_model


def trained_model(steps: int = 6) -> SECAI:
    """A tiny model after a few real optimiser steps (LoRA, cross-attention, head all move)."""
    model = tiny_model(seed=3)
    model.train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    batch = collate_pairs(random_pairs(16, seed=4, proteins=12))
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(model(**batch), batch["labels"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    lora_b = [p for n, p in model.encoder.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # the adapter really changed the encoder
    return model


VALIDATION = random_pairs(10, seed=9, proteins=8)


def validation_metrics(model: SECAI) -> dict:
    """The model's validation metrics at a searched threshold, as a card records them."""
    batch = collate_pairs(VALIDATION)
    scores = model.predict_proba(batch).numpy()
    labels = batch["labels"].numpy()
    return {"validation": search_threshold(scores, labels).summary()}
