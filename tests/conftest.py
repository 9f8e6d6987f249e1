"""Fixtures: a tiny SE-CAI model and a batch of random pairs (helpers in tests/helpers.py)."""

from __future__ import annotations

import pytest

from ppi_dist.data.batching import collate_pairs
from ppi_dist.models.secai import SECAI
from tests.helpers import random_pairs, tiny_model


@pytest.fixture
def model() -> SECAI:
    return tiny_model()


@pytest.fixture
def batch() -> dict:
    return collate_pairs(random_pairs(6))
