"""The one scoring path outside training: chunks over ranks, one cache, stops, progress."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from ppi_dist.data.pairs import Pair
from ppi_dist.errors import ScoringInterrupted
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.scoring import Ranks, score_cached, score_pairs
from tests.helpers import random_sequence, tiny_model


def _pairs(n_proteins=10, n_pairs=37, seed=0) -> tuple[list[Pair], dict[str, str]]:
    """Labelled pairs of random proteins, the sequences on the pairs as a PairSource gives them."""
    rng = random.Random(seed)
    proteins = {f"P{i}": random_sequence(rng, 6, 40) for i in range(n_proteins)}
    ids = list(proteins)
    pairs = []
    for _ in range(n_pairs):
        a, b = rng.choice(ids), rng.choice(ids)
        pairs.append(Pair(a, b, proteins[a], proteins[b], float(rng.random() < 0.5)))
    return pairs, proteins


def test_pairs_scored_over_ranks_equal_one_process():
    model = tiny_model(seed=3).eval()
    pairs, _ = _pairs()
    whole = score_pairs(model, pairs, chunk_pairs=8)
    # Three "ranks" as threads; gather = every rank's items, once all have arrived.
    world = 3
    barrier = threading.Barrier(world)
    posted: dict[int, list] = {}
    results: dict[int, object] = {}

    def run(rank: int) -> None:
        def gather(items: list) -> list:
            posted[rank] = items
            barrier.wait()
            return [item for r in range(world) for item in posted[r]]

        ranks = Ranks(rank, world, gather=gather)
        results[rank] = score_pairs(model, pairs, ranks=ranks, chunk_pairs=8)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(items) for items in posted.values()) == [8, 13, 16]  # chunks 2 | 1,4 | 0,3
    for rank in range(world):
        assert np.allclose(results[rank].scores, whole.scores, atol=1e-6)
    assert whole.labels.tolist() == [int(pair.label) for pair in pairs]
    assert whole.protein_a == [pair.protein_a for pair in pairs]


def test_chunked_scores_equal_the_scores_of_one_cache():
    model = tiny_model(seed=5).eval()
    pairs, proteins = _pairs(seed=1)
    cache = EmbeddingCache.build(model, proteins)
    direct = score_cached(model, cache, pairs)
    chunked = score_pairs(model, pairs, cache=cache, chunk_pairs=10)
    assert np.array_equal(direct[:10], chunked.scores[:10])
    assert np.allclose(direct, chunked.scores, atol=1e-6)
    # Without a cache each call encodes the proteins itself: the same scores.
    encoded = score_pairs(model, pairs, chunk_pairs=10)
    assert np.allclose(encoded.scores, chunked.scores, atol=1e-6)


def test_stop_is_polled_the_same_number_of_times_on_every_rank():
    model = tiny_model(seed=5).eval()
    pairs, _ = _pairs(n_pairs=20, seed=2)  # 3 chunks of 8 over 2 ranks: 2 rounds each

    def gather(items: list) -> list:  # stands in for the other rank's items
        mine = {i for i, *_ in items}
        return items + [(i, 0.0, 0.0) for i in range(20) if i not in mine]

    for rank in (0, 1):
        polls = []
        ranks = Ranks(rank, 2, gather=gather, should_stop=lambda polls=polls: bool(polls.append(1)))
        score_pairs(model, pairs, ranks=ranks, chunk_pairs=8)
        assert len(polls) == 2
    with pytest.raises(ScoringInterrupted):
        score_pairs(model, pairs, ranks=Ranks(should_stop=lambda: True), chunk_pairs=8)


def test_an_identifier_with_two_sequences_is_refused():
    pairs, proteins = _pairs(n_pairs=3)
    other = Pair(pairs[0].protein_a, "P1", "MKTAYIAK", proteins["P1"], 1.0)
    with pytest.raises(ValueError, match="two different sequences"):
        score_pairs(tiny_model().eval(), [*pairs, other])


def test_scoring_shows_progress_only_when_named(capsys):
    """A named scoring shows its encoding and its pairs (the trainer's whole-split scoring
    would otherwise be minutes of silence); unnamed, as on ranks other than the main one,
    it prints nothing."""
    model = tiny_model(seed=2).eval()
    pairs, _ = _pairs(seed=4)
    quiet = score_pairs(model, pairs, chunk_pairs=8)
    assert capsys.readouterr().err == ""
    shown = score_pairs(model, pairs, chunk_pairs=8, progress="validation")
    err = capsys.readouterr().err
    assert "encoding" in err and "validation: 100%" in err and f"{len(pairs)}/{len(pairs)}" in err
    assert np.array_equal(quiet.scores, shown.scores)
