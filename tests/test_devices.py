"""CPU guards for bugs that only a second device shows: tensors that must meet on one device.

`meta` stands in for the GPU: an operation that mixes a CPU tensor with a meta one fails just
as a CPU tensor meeting a CUDA one does.
"""

from __future__ import annotations

import torch

from ppi_dist import embeddings
from ppi_dist.data import swap_sides
from ppi_dist.embeddings import EmbeddingCache
from tests.conftest import tiny_model


def test_swap_mask_follows_the_indices_device():
    index = torch.arange(6, device="meta")
    swapped = swap_sides({"index_a": index, "index_b": index + 1}, torch.Generator())
    assert swapped["index_a"].device.type == "meta"


def test_swap_is_the_same_coin_on_any_device():
    a, b = torch.arange(8), torch.arange(8, 16)
    first = swap_sides({"index_a": a, "index_b": b}, torch.Generator().manual_seed(3))
    again = swap_sides({"index_a": a, "index_b": b}, torch.Generator().manual_seed(3))
    assert torch.equal(first["index_a"], again["index_a"])
    assert sorted(first["index_a"].tolist() + first["index_b"].tolist()) == list(range(16))


def test_cache_build_encodes_where_it_was_asked_with_the_model_there(monkeypatch):
    """The trainer builds the frozen-encoder cache on the accelerator's device: the model
    must be moved there first, so token ids and weights share a device."""
    seen = []

    def spy(model, input_ids, attention_mask):
        seen.append((input_ids.device, next(model.parameters()).device))
        return torch.zeros(*input_ids.shape, 32)

    monkeypatch.setattr(embeddings, "_encode", spy)
    model = tiny_model()  # on the CPU, as before `accelerator.prepare`
    EmbeddingCache.build(model, {"P1": "MKTAYIAK", "P2": "MLLV"}, device=torch.device("meta"))
    assert seen and all(ids == weights == torch.device("meta") for ids, weights in seen)
