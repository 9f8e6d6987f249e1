"""Frozen-encoder training batches: cache rows made by the loader or ids indexed in the loop
give the same states, on the step's device, in the cache's precision."""

from __future__ import annotations

import pytest
import torch

from ppi_dist.data.batching import collate_pairs
from ppi_dist.data.pairs import sequences_of
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.training.frozen import with_cached_states
from tests.helpers import random_pairs, tiny_model


def test_cached_batches_from_tokens_or_from_cache_rows_agree():
    model = tiny_model().eval()
    pairs = random_pairs(10, seed=4, proteins=6)  # proteins repeat within the batch
    proteins = sequences_of(pairs)
    cache = EmbeddingCache.build(model, proteins, dtype="float16")
    tokens = collate_pairs(pairs)
    a, b = tokens["protein_a"], tokens["protein_b"]
    rows = {"protein_a": a, "protein_b": b, "labels": tokens["labels"]}
    rows.update(cache.index.place_pairs(a, b))  # what a loader worker ships
    assert rows["cache_rows"].tolist() == [cache.row[p] for p in dict.fromkeys(a + b)]
    from_tokens = with_cached_states(tokens, cache, torch.device("cpu"))
    from_rows = with_cached_states(rows, cache, torch.device("cpu"))
    assert "input_ids" not in from_tokens and "cache_rows" not in from_rows
    for key in ("states", "states_mask", "index_a", "index_b", "labels"):
        assert torch.equal(from_tokens[key], from_rows[key]), key
    assert from_rows["states"].dtype == torch.float16  # the cache's; the model converts
    with torch.no_grad():
        got = torch.sigmoid(model(**from_rows))
    assert torch.allclose(got, model.predict_proba(tokens), atol=2e-3)  # fp16 states
    with pytest.raises(KeyError, match="not in the embedding cache"):
        cache.index.place_pairs(["nope"], a[:1])


def test_the_training_cache_scores_a_split_as_a_fresh_encoding(tmp_path):
    """The cache a frozen run trains from (every split's proteins, encoded together) scores
    the test split as encoding the test proteins alone does: the final scoring reads it.
    Bound: 1e-6, the rounding `scoring` states for two encodings on one machine (the
    states are the same fp16 numbers unless padding moved a last bit; here they are equal)."""
    from accelerate import Accelerator

    from ppi_dist.training.frozen import open_training_cache
    from ppi_dist.training.validation import score_split

    model = tiny_model().eval()
    pairs = random_pairs(120, seed=1, proteins=90)
    train, test = pairs[:80], pairs[80:]
    accelerator = Accelerator(cpu=True)
    windowing = model.config.windowing("scoring")
    cache = open_training_cache(model, [train, test], tmp_path / "cache", accelerator, windowing)
    assert len(cache) > len(sequences_of(test))  # a superset, built from every split
    cached = score_split(model, test, accelerator, cache=cache)
    fresh = score_split(model, test, accelerator)
    assert cached.protein_a == fresh.protein_a and cached.protein_b == fresh.protein_b
    assert float(abs(cached.scores - fresh.scores).max()) <= 1e-6
    assert torch.equal(torch.from_numpy(cached.labels), torch.from_numpy(fresh.labels))
