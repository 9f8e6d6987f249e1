"""Shared test helpers: tiny ESM-2 SE-CAI models and random protein pairs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from ppi_dist.data import Pair, collate_pairs
from ppi_dist.model import SECAI, SECAIConfig, tiny_esm2_config
from ppi_dist.sequences import tokenize

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
STANDARD = "ACDEFGHIKLMNPQRSTVWY"


def random_sequence(rng: random.Random, low: int = 8, high: int = 40) -> str:
    return "".join(rng.choice(STANDARD) for _ in range(rng.randint(low, high)))


def random_pairs(n: int, seed: int = 0, proteins: int | None = None) -> list[Pair]:
    """`n` labelled pairs over `proteins` distinct random proteins (default: 2n)."""
    rng = random.Random(seed)
    pool = [random_sequence(rng) for _ in range(proteins or 2 * n)]
    pairs = []
    for _ in range(n):
        i, j = rng.randrange(len(pool)), rng.randrange(len(pool))
        pairs.append(Pair(f"P{i}", f"P{j}", pool[i], pool[j], float(rng.random() < 0.5)))
    return pairs


def tiny_model(seed: int = 0, **overrides) -> SECAI:
    torch.manual_seed(seed)
    settings = {
        "encoder": None,
        "encoder_config": tiny_esm2_config(),
        "cross_attention_heads": 4,
        "head_hidden": 16,
        "head_dropout": 0.0,
        "lora_r": 4,
    }
    return SECAI(SECAIConfig(**{**settings, **overrides}))


def states_alone(model: SECAI, sequences: list[str]) -> list[torch.Tensor]:
    """Each sequence through the encoder on its own, no padding at all."""
    alone = []
    for sequence in sequences:
        ids, mask = tokenize([sequence])
        alone.append(model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state[0])
    return alone


@pytest.fixture
def model() -> SECAI:
    return tiny_model()


@pytest.fixture
def batch() -> dict:
    return collate_pairs(random_pairs(6))
