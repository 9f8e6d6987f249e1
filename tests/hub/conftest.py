"""Hub-test fixtures."""

from __future__ import annotations

import pytest

from ppi_dist.models.secai import SECAI
from tests.hub.trained import trained_model


@pytest.fixture(scope="module")
def trained() -> SECAI:
    """A tiny model whose LoRA, cross-attention and head all moved, shared by a module."""
    return trained_model()
