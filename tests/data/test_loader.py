"""BatchLoader: batches prepared in worker processes, the same as in-process, resumable."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from ppi_dist.data.batching import CacheIndex, CacheRowBatches, TokenBatches
from ppi_dist.data.loader import BatchLoader
from ppi_dist.data.pairs import PairSource
from ppi_dist.data.planner import BatchOptions
from ppi_dist.data.sequences import random_residues
from ppi_dist.models.packing import LAYOUT_FIELDS, pack_batch, packed_inputs_from_layout


def make_source(tmp_path: Path, n: int = 301) -> PairSource:
    rng = random.Random(3)
    sequences = {f"P{i:03d}": random_residues(rng, rng.randint(5, 120)) for i in range(60)}
    fasta = tmp_path / "s.fasta"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in sequences.items()))
    rows = [(f"P{rng.randrange(60):03d}", f"P{rng.randrange(60):03d}", i % 2) for i in range(n)]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(
        "protein_a\tprotein_b\tlabel\n" + "".join(f"{a}\t{b}\t{y}\n" for a, b, y in rows)
    )
    return PairSource(pairs, fasta, max_residues=64)


OPTIONS = BatchOptions(seed=7, max_tokens=600, sort_buffer=50)


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if torch.is_tensor(a[key]):
                assert torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key


@pytest.mark.parametrize("rank", [0, 1])
def test_workers_give_the_same_batches_as_in_process(tmp_path, rank):
    source = make_source(tmp_path)
    reference = TokenBatches(source, OPTIONS, rank=rank, world_size=2)
    want = [list(reference) for _ in range(2)]  # epochs 0 and 1
    for workers in (0, 1, 2):
        loader = BatchLoader(
            TokenBatches(source, OPTIONS, rank=rank, world_size=2), num_workers=workers
        )
        for epoch in range(2):
            loader.set_epoch(epoch)
            assert_same(list(loader), want[epoch])
            assert loader.state_dict() == {"epoch": epoch + 1, "batches_done": 0, "seed": 7}
        loader.close()
    # Equal steps per rank: the other rank's count, with its padding batch if any.
    other = TokenBatches(source, OPTIONS, rank=1 - rank, world_size=2)
    assert len(list(other)) == len(want[0])


def test_state_counts_consumed_batches_not_prefetched_ones(tmp_path):
    source = make_source(tmp_path)
    reference = TokenBatches(source, OPTIONS, rank=1, world_size=2)
    reference.set_epoch(2)
    expected, states = [], []
    for batch in reference:
        expected.append(batch)
        states.append(reference.state_dict())

    loader = BatchLoader(
        TokenBatches(source, OPTIONS, rank=1, world_size=2), num_workers=2, prefetch_factor=4
    )
    loader.set_epoch(2)
    iterator = iter(loader)
    for k in range(5):
        next(iterator)
        assert loader.state_dict() == states[k]  # workers are ahead; the state is not
    state = loader.state_dict()
    del iterator
    loader.close()

    resumed = BatchLoader(TokenBatches(source, OPTIONS, rank=1, world_size=2), num_workers=1)
    resumed.load_state_dict(state)
    assert_same(list(resumed), expected[5:])
    assert resumed.state_dict() == {"epoch": 3, "batches_done": 0, "seed": 7}
    resumed.set_epoch(3)  # persistent workers pick up the new epoch
    again = TokenBatches(source, OPTIONS, rank=1, world_size=2)
    again.set_epoch(3)
    assert_same(list(resumed), list(again))
    resumed.close()


def test_batches_carry_the_packed_layout(tmp_path):
    source = make_source(tmp_path, n=60)
    for batch in BatchLoader(TokenBatches(source, BatchOptions(max_tokens=600)), num_workers=1):
        assert set(LAYOUT_FIELDS) <= batch.keys()
        from_layout = packed_inputs_from_layout(batch["input_ids"], batch, pad_id=1)
        from_mask = pack_batch(batch["input_ids"], batch["attention_mask"], pad_id=1)
        assert torch.equal(from_layout.input_ids, from_mask.input_ids)
        assert torch.equal(from_layout.same_sequence, from_mask.same_sequence)
        assert from_layout.input_ids.numel() <= 600  # the token budget, as the encoder runs it


def test_bad_data_is_reported_in_the_calling_process(tmp_path):
    source = make_source(tmp_path, n=10)
    with open(source.files[0], "a") as f:
        f.write("P001\tP002\tyes\n")
    loader = BatchLoader(TokenBatches(source, BatchOptions(max_tokens=600)), num_workers=1)
    with pytest.raises(ValueError, match=r"pairs.tsv:12: field 'label': expected 0 or 1"):
        next(iter(loader))


# ---- frozen-encoder batches: embedding-cache rows, a pair-token budget


def cache_index_of(source: PairSource) -> CacheIndex:
    """The index an embedding cache of the source's proteins has (centred crops), no states."""
    source.validate()
    ids = list(source.sequences)
    lengths = [min(len(source.sequences[p]), source.max_residues) for p in ids]
    return CacheIndex({p: i for i, p in enumerate(ids)}, np.array(lengths, dtype=np.int64))


FROZEN = dataclasses.replace(
    OPTIONS, max_tokens=1500
)  # 11 pairs with a 64-residue protein, ~100 short ones


def test_frozen_batches_keep_the_budget_and_cover_every_pair_once(tmp_path):
    source = make_source(tmp_path)
    index = cache_index_of(source)
    ids = list(index.row)
    real, steps, short = Counter(), [], 0
    for rank in (0, 1):
        batches = CacheRowBatches(source, index, FROZEN, rank=rank, world_size=2)
        expected_steps = batches.count_batches()
        got = list(batches)
        steps.append(len(got))
        assert len(got) == expected_steps
        for batch in got:
            assert {"input_ids", "attention_mask", "pack_rows"}.isdisjoint(batch)
            rows = batch["cache_rows"]
            assert rows.dtype == batch["index_a"].dtype == torch.long
            assert [ids[r] for r in rows[batch["index_a"]]] == batch["protein_a"]
            assert [ids[r] for r in rows[batch["index_b"]]] == batch["protein_b"]
            longest = int(index.lengths[rows.numpy()].max())
            pairs, room = len(batch["protein_a"]), FROZEN.max_tokens // (2 * longest)
            assert pairs <= room  # pairs x 2 x longest within the budget
            if batch["weight"][0] == 1:
                short += pairs < room
                labels = batch["labels"].tolist()
                real.update(zip(batch["protein_a"], batch["protein_b"], labels, strict=True))
            else:
                assert torch.all(batch["weight"] == 0)
    want = Counter((r.protein_a, r.protein_b, r.label) for r in source.pair_rows())
    assert real == want  # nothing dropped, nothing twice
    assert steps[0] == steps[1]  # equal steps per rank (a weightless copy where short)
    # Batches are full but for the last of each sort buffer.
    assert short <= -(-sum(want.values()) // FROZEN.sort_buffer)


def test_frozen_batches_respect_max_pairs(tmp_path):
    source = make_source(tmp_path)
    batches = CacheRowBatches(
        source, cache_index_of(source), BatchOptions(max_tokens=4096, max_pairs=5)
    )
    assert max(len(batch["protein_a"]) for batch in batches) == 5  # the budget allows 32


def test_frozen_workers_give_the_same_batches_and_resume_mid_epoch(tmp_path):
    source = make_source(tmp_path)
    index = cache_index_of(source)
    reference = CacheRowBatches(source, index, FROZEN, rank=1, world_size=2)
    reference.set_epoch(1)
    want, states = [], []
    for batch in reference:
        want.append(batch)
        states.append(reference.state_dict())
    for workers in (0, 2):
        loader = BatchLoader(
            CacheRowBatches(source, index, FROZEN, rank=1, world_size=2), num_workers=workers
        )
        loader.set_epoch(1)
        assert_same(list(loader), want)
        loader.close()
    resumed = BatchLoader(
        CacheRowBatches(source, index, FROZEN, rank=1, world_size=2), num_workers=2
    )
    resumed.load_state_dict(states[3])
    assert_same(list(resumed), want[4:])
    resumed.close()


def test_frozen_batches_name_a_protein_missing_from_the_cache(tmp_path):
    source = make_source(tmp_path)
    index = cache_index_of(source)
    missing = next(source.pair_rows()).protein_a
    partial = CacheIndex({p: i for p, i in index.row.items() if p != missing}, index.lengths)
    with pytest.raises(KeyError, match=f"not in the embedding cache: '{missing}'"):
        CacheRowBatches(source, partial, FROZEN, world_size=2).count_batches()
