"""Token-budget batches: the budget, the crops, the ranks, padding batches, resuming; and
the swap augmentation."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ppi_dist.data.batching import CacheIndex, CacheRowBatches, TokenBatches, swap_sides
from ppi_dist.data.pairs import PairSource
from ppi_dist.data.planner import BatchOptions
from ppi_dist.data.sequences import random_residues, tokenize
from ppi_dist.models.packing import encoder_tokens
from ppi_dist.models.windows import Windowing
from tests.data.pair_files import seen_pairs, write_tsv
from tests.helpers import SHARED


def bernett_like_source(tmp_path: Path, n: int = 300) -> PairSource:
    """Proteins of 5 to 120 residues (cropped to 64) so that crops and budgets matter."""
    rng = random.Random(3)
    sequences = {f"P{i:03d}": random_residues(rng, rng.randint(5, 120)) for i in range(60)}
    fasta = tmp_path / "s.fasta"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in sequences.items()))
    rows = [(f"P{rng.randrange(60):03d}", f"P{rng.randrange(60):03d}", i % 2) for i in range(n)]
    return PairSource(write_tsv(tmp_path / "pairs.tsv", rows), fasta, max_residues=64)


def test_token_budget_batches_respect_the_budget_and_cover_the_file(tmp_path):
    source = bernett_like_source(tmp_path)
    batches = list(TokenBatches(source, BatchOptions(max_tokens=600, max_pairs=8, sort_buffer=64)))
    for batch in batches:
        assert encoder_tokens(batch["attention_mask"]) <= 600
        assert len(batch["protein_a"]) <= 8
        assert batch["input_ids"].shape[1] <= 64 + 2
        assert len(set(map(tuple, batch["input_ids"].tolist()))) == batch["input_ids"].shape[0]
        assert torch.equal(batch["weight"], torch.ones(len(batch["protein_a"])))
    rows = [(r.protein_a, r.protein_b, r.label) for r in source.pair_rows()]
    assert sorted(seen_pairs(batches)) == sorted(rows)
    fixed = list(TokenBatches(source, BatchOptions(batch_size=32)))
    assert [len(b["protein_a"]) for b in fixed] == [32] * 9 + [12]
    real = sum(b["attention_mask"].sum().item() for b in batches)
    packed = sum(encoder_tokens(b["attention_mask"]) for b in batches)
    padded = sum(b["input_ids"].numel() for b in batches)
    assert packed / real < 1.2 and packed < padded


def test_crops_random_in_training_centred_in_evaluation(tmp_path):
    source = bernett_like_source(tmp_path)
    source.validate()
    full = source.sequences
    for training in (True, False):
        for batch in TokenBatches(source, BatchOptions(training=training, max_tokens=2000)):
            for row, protein in enumerate(batch["protein_a"]):
                ids = batch["input_ids"][batch["index_a"][row]]
                n = int(batch["attention_mask"][batch["index_a"][row]].sum()) - 2
                sequence = full[protein]
                assert n == min(len(sequence), 64)
                if not training and len(sequence) > 64:
                    start = (len(sequence) - 64) // 2
                    assert torch.equal(
                        ids[1 : n + 1], tokenize([sequence[start:][:64]])[0][0, 1:-1]
                    )


def test_two_ranks_cover_the_file_once_and_shuffle_per_epoch(tmp_path):
    source = bernett_like_source(tmp_path, n=301)
    rows = sorted((r.protein_a, r.protein_b, r.label) for r in source.pair_rows())
    for kwargs in ({"max_tokens": 600}, {"batch_size": 7}):
        options = BatchOptions(seed=5, **kwargs)
        ranks = [TokenBatches(source, options, rank=r, world_size=2) for r in (0, 1)]
        epoch_1 = [list(ranks[r]) for r in (0, 1)]
        assert len(epoch_1[0]) == len(epoch_1[1])  # same number of steps on both ranks
        union = seen_pairs(epoch_1[0]) + seen_pairs(epoch_1[1])
        assert sorted(union) == rows  # every pair exactly once; padding has weight 0
        epoch_2 = [list(ranks[r]) for r in (0, 1)]  # moved on to epoch 1 by itself
        assert sorted(seen_pairs(epoch_2[0]) + seen_pairs(epoch_2[1])) == rows
        assert seen_pairs(epoch_2[0]) != seen_pairs(epoch_1[0])
        again = TokenBatches(source, options, rank=0, world_size=2)
        again.set_epoch(1)
        assert seen_pairs(again) == seen_pairs(epoch_2[0])  # repeats across runs


def test_padding_batch_when_batches_do_not_divide(tmp_path):
    source = bernett_like_source(tmp_path, n=21)
    ranks = [
        list(TokenBatches(source, BatchOptions(batch_size=7), rank=r, world_size=2)) for r in (0, 1)
    ]
    assert [len(r) for r in ranks] == [2, 2]  # 3 batches of 7: rank 1 gets one padding batch
    assert ranks[1][1]["weight"].sum() == 0 and ranks[0][1]["weight"].sum() == 7


def test_resume_continues_with_the_exact_next_batch(tmp_path):
    source = bernett_like_source(tmp_path)
    options = BatchOptions(seed=11, max_tokens=600, sort_buffer=50)
    uninterrupted = TokenBatches(source, options, rank=1, world_size=2)
    uninterrupted.set_epoch(3)
    expected = list(uninterrupted)

    interrupted = TokenBatches(source, options, rank=1, world_size=2)
    interrupted.set_epoch(3)
    iterator = iter(interrupted)
    for _ in range(4):
        next(iterator)
    state = interrupted.state_dict()
    resumed = TokenBatches(source, options, rank=1, world_size=2)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(expected) - 4
    for got, want in zip(rest, expected[4:], strict=True):
        for key in ("input_ids", "attention_mask", "index_a", "index_b", "labels", "weight"):
            assert torch.equal(got[key], want[key]), key
        assert got["protein_a"] == want["protein_a"]
    assert resumed.state_dict() == {"epoch": 4, "batches_done": 0, "seed": 11}


@pytest.mark.real_data
def test_bernett_train_validates_and_batches(tmp_path):
    bernett = SHARED / "data" / "bernett-gold"
    if not bernett.exists():
        pytest.skip(f"shared data not found at {bernett}")
    source = PairSource(bernett / "valid.tsv", bernett / "sequences.fasta")
    assert source.validate().rows == 59_260
    batch = next(iter(TokenBatches(source, BatchOptions(max_tokens=8192))))
    assert encoder_tokens(batch["attention_mask"]) <= 8192 and batch["input_ids"].shape[1] <= 1024


def test_swap_mask_follows_the_indices_device():
    """`meta` stands in for a GPU: a CPU coin meeting a meta index fails as it would on CUDA."""
    index = torch.arange(6, device="meta")
    swapped = swap_sides({"index_a": index, "index_b": index + 1}, torch.Generator())
    assert swapped["index_a"].device.type == "meta"


def test_swap_is_the_same_coin_on_any_device():
    a, b = torch.arange(8), torch.arange(8, 16)
    first = swap_sides({"index_a": a, "index_b": b}, torch.Generator().manual_seed(3))
    again = swap_sides({"index_a": a, "index_b": b}, torch.Generator().manual_seed(3))
    assert torch.equal(first["index_a"], again["index_a"])
    assert sorted(first["index_a"].tolist() + first["index_b"].tolist()) == list(range(16))


def test_window_batches_encode_every_residue_within_the_budget(tmp_path):
    source = bernett_like_source(tmp_path)
    windowing = Windowing(40, 10, "all")
    options = BatchOptions(max_tokens=600, sort_buffer=64)
    batches = list(TokenBatches(source, options, windowing=windowing))
    stitched = 0
    for batch in batches:
        assert batch["input_ids"].shape[1] <= 40 + 2  # no encoder row is over one window
        if len(batch["protein_a"]) > 1:
            assert encoder_tokens(batch["attention_mask"]) <= 600
        if "stitch_mask" in batch:
            stitched += 1
            lengths = batch["stitch_mask"].sum(1).tolist()
            assert max(lengths) > 40  # whole proteins, longer than a window
    assert stitched > 0
    rows = [(r.protein_a, r.protein_b, r.label) for r in source.pair_rows()]
    assert sorted(seen_pairs(batches)) == sorted(rows)


def test_frozen_training_crops_read_a_random_window_of_the_cached_states(tmp_path):
    source = bernett_like_source(tmp_path)
    source.validate()
    ids = list(source.sequences)
    index = CacheIndex(
        {p: i for i, p in enumerate(ids)}, np.array([len(source.sequences[p]) for p in ids])
    )
    windowing = Windowing(30, 0, "crop")
    batches = CacheRowBatches(source, index, BatchOptions(max_tokens=2000), windowing=windowing)
    seen_starts = set()
    for batch in batches:
        stored = index.lengths[batch["cache_rows"].numpy()]
        starts = batch["cache_starts"].numpy()
        assert batch["cache_window"] == 30
        assert np.all(starts >= 0) and np.all(starts <= np.maximum(stored - 30, 0))
        seen_starts.update(starts[stored > 30].tolist())
    assert len(seen_starts) > 3
    # Scoring batches (training=False) read whole cached proteins.
    scoring = next(iter(CacheRowBatches(source, index, BatchOptions(training=False))))
    assert "cache_starts" not in scoring
