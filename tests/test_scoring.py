"""The one scoring path: pair maths in the model, chunked scoring, precision of pooling."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
import torch

from benchmarks.throughput import naive_pair_logits
from ppi_dist.embeddings import EmbeddingCache
from ppi_dist.model import masked_max_mean
from ppi_dist.scoring import ScoringInterrupted, score_pairs, score_rows
from tests.conftest import random_sequence, tiny_model


def _reference_logits(model, states, mask, index_a, index_b):
    """The card's formula per pair (the benchmark's naive baseline), on the same states."""
    return naive_pair_logits(model, states[index_a], mask[index_a], states[index_b], mask[index_b])


@pytest.mark.parametrize("symmetric", ["average", "none"])
def test_pair_logits_projects_once_and_equals_the_formula(symmetric):
    model = tiny_model(seed=2, symmetric=symmetric).eval()
    model.head.norm.running_mean.normal_()
    torch.manual_seed(1)
    states = torch.randn(5, 9, 32)
    mask = torch.arange(9)[None, :] < torch.tensor([9, 3, 7, 1, 5])[:, None]
    index_a, index_b = torch.tensor([0, 1, 2, 4, 3, 1]), torch.tensor([1, 0, 4, 4, 2, 3])
    with torch.no_grad():
        expected = _reference_logits(model, states, mask, index_a, index_b)
        same = model.pair_logits((states, mask), (states, mask), index_a, index_b)
        # Two sides padded separately (side B: rows 2..4 trimmed to their longest, 7).
        split = model.pair_logits(
            (states, mask), (states[2:, :7], mask[2:, :7]), index_a[2:], index_b[2:] - 2
        )
    assert torch.allclose(same, expected, atol=1e-6)
    assert torch.allclose(split, expected[2:], atol=1e-6)


def test_masked_mean_is_exact_to_rounding_in_bf16():
    # 1,022 residues: a bf16 count reads 1,024, and a bf16 sum loses its low digits.
    torch.manual_seed(0)
    states = (torch.rand(1, 1100, 256) + 1.0).to(torch.bfloat16)
    mask = torch.arange(1100)[None, :] < 1022
    truth = states[0, :1022].double().mean(0)
    pooled = masked_max_mean(states, mask)[0, 256:]
    assert pooled.dtype == torch.bfloat16
    # Within half a bf16 step (2^-8 relative) of the exact mean, on every channel.
    assert ((pooled.double() - truth).abs() / truth <= 2**-8).all()
    # The old way (count cast to bf16) is off by more on some channel: this test can fail.
    count = mask.unsqueeze(-1).sum(1).to(torch.bfloat16)
    old = (states.masked_fill(~mask.unsqueeze(-1), 0).sum(1) / count)[0]
    assert ((old.double() - truth).abs() / truth > 2**-8).any()


def test_pooled_baseline_keeps_max_and_mean_and_the_same_head():
    cross = tiny_model(seed=0)
    pooled = tiny_model(seed=0, interaction="pooled")
    assert pooled.cross_attention is None  # nothing unused for DDP to reject
    assert pooled.head.fc1.in_features == cross.head.fc1.in_features == 4 * 2 * 32
    assert tiny_model(interaction="mean_pool").config.interaction == "pooled"  # old name
    states = torch.randn(3, 6, 32)
    mask = torch.ones(3, 6, dtype=torch.bool)
    side = (states, mask)
    with torch.no_grad():
        logits = pooled.eval().pair_logits(side, side, torch.tensor([0, 1]), torch.tensor([2, 0]))
    assert logits.shape == (2,) and torch.isfinite(logits).all()


def test_cached_half_states_meet_bf16_weights():
    model = tiny_model(seed=1).to(torch.bfloat16).eval()
    states = torch.randn(2, 5, 32, dtype=torch.float16)
    mask = torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        logits = model.pair_logits(
            (states, mask), (states, mask), torch.tensor([0]), torch.tensor([1])
        )
    assert logits.dtype == torch.bfloat16


def _rows(n_proteins=10, n_pairs=37, seed=0):
    rng = random.Random(seed)
    proteins = {f"P{i}": random_sequence(rng, 6, 40) for i in range(n_proteins)}
    ids = list(proteins)
    rows = [(rng.choice(ids), rng.choice(ids), float(rng.random() < 0.5)) for _ in range(n_pairs)]
    return rows, proteins


def test_score_rows_over_ranks_equals_one_process():
    model = tiny_model(seed=3).eval()
    rows, proteins = _rows()
    whole = score_rows(model, rows, proteins, chunk_pairs=8)
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

        results[rank] = score_rows(
            model, rows, proteins, rank=rank, world_size=world, chunk_pairs=8, gather=gather
        )

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(items) for items in posted.values()) == [8, 13, 16]  # chunks 2 | 1,4 | 0,3
    for rank in range(world):
        assert np.allclose(results[rank].scores, whole.scores, atol=1e-6)
    assert whole.labels.tolist() == [int(label) for _, _, label in rows]
    assert whole.protein_a == [a for a, _, _ in rows]


def test_score_rows_equals_score_pairs_from_one_cache():
    model = tiny_model(seed=5).eval()
    rows, proteins = _rows(seed=1)
    cache = EmbeddingCache.build(model, proteins)
    direct = score_pairs(model, cache, [(a, b) for a, b, _ in rows])
    chunked = score_rows(model, rows, proteins, cache=cache, chunk_pairs=10)
    assert np.array_equal(direct[:10], chunked.scores[:10])
    assert np.allclose(direct, chunked.scores, atol=1e-6)


def test_stop_is_polled_the_same_number_of_times_on_every_rank():
    model = tiny_model(seed=5).eval()
    rows, proteins = _rows(n_pairs=20, seed=2)  # 3 chunks of 8 over 2 ranks: 2 rounds each

    def gather(items: list) -> list:  # stands in for the other rank's items
        mine = {i for i, _ in items}
        return items + [(i, 0.0) for i in range(20) if i not in mine]

    for rank in (0, 1):
        polls = []
        score_rows(
            model,
            rows,
            proteins,
            rank=rank,
            world_size=2,
            chunk_pairs=8,
            should_stop=lambda polls=polls: polls.append(1) and False,
            gather=gather,
        )
        assert len(polls) == 2
    with pytest.raises(ScoringInterrupted):
        score_rows(model, rows, proteins, chunk_pairs=8, should_stop=lambda: True)


def test_score_rows_shows_progress_only_when_named(capsys):
    """A named scoring shows its encoding and its pairs (the trainer's whole-split scoring
    would otherwise be minutes of silence); unnamed, as on ranks other than the main one,
    it prints nothing."""
    model = tiny_model(seed=2).eval()
    rows, proteins = _rows(seed=4)
    quiet = score_rows(model, rows, proteins, chunk_pairs=8)
    assert capsys.readouterr().err == ""
    shown = score_rows(model, rows, proteins, chunk_pairs=8, progress="validation")
    err = capsys.readouterr().err
    assert "encoding" in err and "validation: 100%" in err and f"{len(rows)}/{len(rows)}" in err
    assert np.array_equal(quiet.scores, shown.scores)
