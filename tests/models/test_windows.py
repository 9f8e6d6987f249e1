"""Long proteins as windows: the plan, the stitching, and scores over every residue."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
import torch.nn.functional as F

from ppi_dist.data.batching import collate_pairs
from ppi_dist.data.pairs import Pair
from ppi_dist.data.sequences import tokenize
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.scoring import score_pairs
from ppi_dist.models import secai as secai_module
from ppi_dist.models.windows import Windowing, stitch_layout, stitch_states
from tests.helpers import random_sequence, tiny_model


@pytest.mark.parametrize("length", [1, 40, 41, 77, 200, 1000])
@pytest.mark.parametrize("window,overlap", [(40, 10), (40, 0), (40, 39), (64, 16)])
def test_windows_cover_every_residue_once_each_from_its_most_central_window(
    length, window, overlap
):
    windows = Windowing(window, overlap, "all").windows(length)
    kept = [i for w in windows for i in range(w.keep_start, w.keep_stop)]
    assert kept == list(range(length))  # every residue kept once, in order
    for w in windows:
        assert 0 <= w.start <= w.keep_start <= w.keep_stop <= w.stop <= length
        assert w.stop - w.start == min(window, length)
    for left, right in itertools.pairwise(windows):
        assert left.stop - right.start >= overlap
        # The cut sits mid-overlap: a kept residue is never nearer the edge of its own
        # window than it would be in the neighbour's (off by one at most, from the rounding).
        for i in (left.keep_stop - 1, right.keep_start):
            own = left if i < left.keep_stop else right
            other = right if own is left else left
            if other.start <= i < other.stop:
                margin = min(i - own.start, own.stop - 1 - i)
                assert margin + 1 >= min(i - other.start, other.stop - 1 - i)


def test_crop_is_the_centred_window_or_a_seeded_random_one():
    crop = Windowing(10, 0, "crop")
    (centred,) = crop.windows(50)
    assert (centred.start, centred.stop) == (20, 30)
    starts = {crop.windows(50, random.Random(seed))[0].start for seed in range(30)}
    assert len(starts) > 5 and all(0 <= s <= 40 for s in starts)
    assert crop.windows(50, random.Random(7)) == crop.windows(50, random.Random(7))
    assert crop.windows(8) == Windowing(10, 3, "all").windows(8)


def test_bad_windowing_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        Windowing(10, 10, "all")
    with pytest.raises(ValueError, match="mode"):
        Windowing(10, 0, "some")


def test_stitching_puts_each_residue_back_from_its_window():
    windowing = Windowing(6, 2, "all")
    windows = [windowing.windows(13), windowing.windows(4)]
    width = 8  # <cls> + 6 + <eos>
    # Window states whose value is (row, token): the stitched value says where it came from.
    rows = sum(len(w) for w in windows)
    states = torch.stack(
        [
            torch.stack([torch.tensor([float(r), float(t)]) for t in range(width)])
            for r in range(rows)
        ]
    )
    index, mask = stitch_layout(windows, width)
    stitched = stitch_states(states, index, mask)
    assert mask.sum(1).tolist() == [13, 4]
    row = 0
    for u, protein_windows in enumerate(windows):
        for w in protein_windows:
            for i in range(w.keep_start, w.keep_stop):
                assert stitched[u, i].tolist() == [row, 1 + i - w.start]
            row += 1
    assert torch.all(stitched[1, 4:] == 0)


def _pair(sequence_a: str, sequence_b: str) -> Pair:
    return Pair("A", "B", sequence_a, sequence_b, 1.0)


def test_a_protein_that_fits_one_window_scores_exactly_as_before():
    model = tiny_model().eval()
    rng = random.Random(0)
    pairs = [_pair(random_sequence(rng, 20, 40), random_sequence(rng, 20, 40)) for _ in range(3)]
    plain = collate_pairs(pairs)
    windowed = collate_pairs(pairs, windowing=Windowing(40, 10, "all"))
    assert "stitch_index" not in windowed
    assert torch.equal(model.predict_proba(plain), model.predict_proba(windowed))
    # And the stitched states of a one-window protein are its encoder states, exactly.
    sequence = pairs[0].sequence_a
    input_ids, attention_mask = tokenize([sequence])
    with torch.no_grad():
        states = model.encode(input_ids, attention_mask)
    index, mask = stitch_layout(
        [Windowing(40, 10, "all").windows(len(sequence))], len(sequence) + 2
    )
    assert torch.equal(stitch_states(states, index, mask)[0], states[0, 1 : len(sequence) + 1])


def test_residues_beyond_the_first_window_change_the_score_with_windows_only():
    model = tiny_model().eval()
    rng = random.Random(3)
    partner = random_sequence(rng, 30, 30)
    long = random_sequence(rng, 100, 100)
    # Differ only in residues 90-99: outside the first window (0-39) and the centred crop (30-69).
    changed = long[:90] + "".join("W" if c != "W" else "Y" for c in long[90:])
    for mode, differs in (("all", True), ("crop", False)):
        windowing = Windowing(40, 10, mode)
        scores = [
            score_pairs(model, [_pair(seq, partner)], windowing=windowing).scores[0]
            for seq in (long, changed)
        ]
        assert (scores[0] != scores[1]) == differs, mode


def test_cache_and_training_batches_stitch_the_same_states():
    model = tiny_model().eval()
    rng = random.Random(4)
    pairs = [_pair(random_sequence(rng, 90, 130), random_sequence(rng, 10, 50)) for _ in range(2)]
    windowing = Windowing(40, 12, "all")
    batch = collate_pairs(pairs, windowing=windowing)
    assert batch["input_ids"].shape[0] > 4  # the long proteins became several rows
    expected = model.predict_proba(batch)
    proteins = {
        f"{k}{i}": getattr(p, f"sequence_{k.lower()}") for i, p in enumerate(pairs) for k in "AB"
    }
    cache = EmbeddingCache.build(model, proteins, dtype="float32", windowing=windowing)
    assert [cache.length(p) for p in proteins] == [len(s) for s in proteins.values()]
    cached_pairs = [
        Pair(f"A{i}", f"B{i}", p.sequence_a, p.sequence_b, 1.0) for i, p in enumerate(pairs)
    ]
    got = score_pairs(model, cached_pairs, cache=cache).scores
    assert torch.allclose(torch.tensor(got, dtype=torch.float32), expected, atol=1e-5)


def test_a_34350_residue_protein_scores_with_bounded_attention(monkeypatch):
    model = tiny_model().eval()
    rng = random.Random(5)
    longest = random_sequence(rng, 34_350, 34_350)  # Bernett's longest protein
    partner = random_sequence(rng, 3_000, 3_000)
    formed = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, **kwargs):
        if attn_mask is not None and attn_mask.shape[1:3] == (1, 1):  # cross-attention's mask
            formed.append(q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2])
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    windowing = Windowing(64, 16, "all")
    pair = Pair("long", "partner", longest, partner, None)
    (score,) = score_pairs(model, [pair], windowing=windowing).scores
    assert 0.0 < score < 1.0
    # 4 heads x 34,350 x 3,000 weights at once would be 1.5 GiB of fp32 per direction:
    # every call stayed within the chunk.
    assert formed and max(formed) <= secai_module.ATTENTION_CHUNK
    assert sum(formed) >= 2 * 4 * 34_350 * 3_000  # and together they covered both directions
