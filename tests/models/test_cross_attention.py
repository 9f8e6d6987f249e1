"""Cross-attention over packed pairs (`ppi_dist.models.cross_attention`): "varlen" gives
"sdpa"'s pooled vectors, logits and gradients. On the CPU flash varlen does not exist: a
per-pair SDPA stands in for it (as tests/models/test_attention.py does for the encoder), so
what is checked is our side (the streams, cumulative lengths, segment pooling); the flash
kernel runs in tests/gpu. Tolerance: 1e-5 absolute / 1e-4 relative in fp32 (the same sums
in another order)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from ppi_dist.data.batching import collate_pairs
from ppi_dist.data.pairs import sequences_of
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.models import cross_attention
from ppi_dist.models.secai import masked_max_mean
from tests.helpers import random_pairs, tiny_model

CLOSE = {"atol": 1e-5, "rtol": 1e-4}


def pairwise_attention(q, k, v, cu_q, cu_k, max_q, max_k):
    """Reference of `varlen_attn` on (T, H, D) streams: SDPA on each (query, key) segment."""
    assert cu_q.dtype == cu_k.dtype == torch.int32 and cu_q.shape == cu_k.shape
    pieces = []
    for (qs, qe), (ks, ke) in zip(
        itertools.pairwise(cu_q.tolist()), itertools.pairwise(cu_k.tolist()), strict=True
    ):
        assert 0 < qe - qs <= max_q and 0 < ke - ks <= max_k
        q_s, k_s, v_s = q[qs:qe].transpose(0, 1), k[ks:ke].transpose(0, 1), v[ks:ke].transpose(0, 1)
        pieces.append(F.scaled_dot_product_attention(q_s, k_s, v_s).transpose(0, 1))
    return torch.cat(pieces)


@pytest.fixture
def flash_stand_in(monkeypatch):
    """Let "varlen" run on the CPU through the reference above; count its calls."""
    calls = []

    def counted(*args):
        calls.append(1)
        return pairwise_attention(*args)

    monkeypatch.setattr(cross_attention, "runs_here", lambda choice, states: True)
    monkeypatch.setattr(cross_attention, "varlen_attn", counted)
    return calls


def test_streams_hold_each_pairs_residues_in_order():
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 1, 0, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    stream = cross_attention.pair_stream(mask, torch.tensor([2, 0, 0, 1]))
    width = mask.shape[1]
    assert stream.cu_seqlens.tolist() == [0, 4, 7, 10, 11] and stream.longest == 4
    assert stream.rows.tolist() == [
        *(2 * width + p for p in (1, 2, 3, 4)),
        *(1, 2, 3),
        *(1, 2, 3),
        width + 1,
    ]
    assert stream.segment.tolist() == [0] * 4 + [1] * 3 + [2] * 3 + [3]


def test_packed_pooling_equals_padded_attention_and_masked_pooling(flash_stand_in):
    generator = torch.Generator().manual_seed(0)
    units_a, units_b, length, heads, dim = 5, 4, 9, 2, 6
    lengths_a, lengths_b = [9, 3, 1, 6, 4], [2, 8, 5, 9]

    def side(units, lengths):  # projections as `CrossAttention.project` gives them: (U, L, d)
        q, k, v = (torch.randn(units, length, heads * dim, generator=generator) for _ in "qkv")
        mask = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
        return q, k, v, mask

    side_a, side_b = side(units_a, lengths_a), side(units_b, lengths_b)
    index_a, index_b = torch.tensor([0, 1, 2, 3, 4, 0, 2]), torch.tensor([1, 0, 3, 2, 2, 3, 0])
    pooled_a, pooled_b = cross_attention.packed_cross_pooling(
        side_a, side_b, index_a, index_b, heads
    )
    (q_a, k_a, v_a, mask_a), (q_b, k_b, v_b, mask_b) = side_a, side_b

    def padded(q, k, v, key_mask):  # `CrossAttention.attend`, heads split by hand
        q, k, v = (x.unflatten(2, (heads, dim)).transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)

    a_to_b = padded(q_a[index_a], k_b[index_b], v_b[index_b], mask_b[index_b])
    b_to_a = padded(q_b[index_b], k_a[index_a], v_a[index_a], mask_a[index_a])
    torch.testing.assert_close(pooled_a, masked_max_mean(a_to_b, mask_a[index_a]), **CLOSE)
    torch.testing.assert_close(pooled_b, masked_max_mean(b_to_a, mask_b[index_b]), **CLOSE)
    assert len(flash_stand_in) == 2  # one call per direction


def _logits_and_grads(kernel: str, batch: dict) -> tuple[torch.Tensor, dict]:
    model = tiny_model(seed=2, cross_attention_kernel=kernel, head_dropout=0.0, lora_dropout=0.0)
    logits = model(**batch)
    logits.sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach(), grads


def test_varlen_training_step_gives_sdpas_logits_and_gradients(flash_stand_in):
    batch = collate_pairs(random_pairs(12, seed=5, proteins=9))  # proteins repeat
    sdpa_logits, sdpa_grads = _logits_and_grads("sdpa", batch)
    assert not flash_stand_in
    varlen_logits, varlen_grads = _logits_and_grads("varlen", batch)
    assert len(flash_stand_in) == 2
    torch.testing.assert_close(varlen_logits, sdpa_logits, **CLOSE)
    assert any(n.startswith("cross_attention.") for n in varlen_grads)
    for name, grad in sdpa_grads.items():
        torch.testing.assert_close(varlen_grads[name], grad, **CLOSE, msg=name)


def test_varlen_scores_cached_sides_as_sdpa(flash_stand_in):
    """Two sides of different proteins from a cache (residues from position 0), as scoring
    reads them."""
    pairs = random_pairs(10, seed=6, proteins=12)
    sdpa, varlen = (tiny_model(seed=3, cross_attention_kernel=k).eval() for k in ("sdpa", "varlen"))
    cache = EmbeddingCache.build(sdpa, sequences_of(pairs), dtype="float32")
    rows_a = list(dict.fromkeys(p.protein_a for p in pairs))
    rows_b = list(dict.fromkeys(p.protein_b for p in pairs))
    index_a = torch.tensor([rows_a.index(p.protein_a) for p in pairs])
    index_b = torch.tensor([rows_b.index(p.protein_b) for p in pairs])
    side_a, side_b = cache.get(rows_a), cache.get(rows_b)
    with torch.no_grad():
        expected = sdpa.pair_logits(side_a, side_b, index_a, index_b)
        got = varlen.pair_logits(side_a, side_b, index_a, index_b)
    torch.testing.assert_close(got, expected, **CLOSE)


def test_varlen_falls_back_to_sdpa_where_flash_cannot_run():
    batch = collate_pairs(random_pairs(6, seed=7))
    assert cross_attention.pairs_kernel("varlen", torch.zeros(1)) == "sdpa"  # CPU, fp32
    sdpa_logits, _ = _logits_and_grads("sdpa", batch)
    varlen_logits, _ = _logits_and_grads("varlen", batch)
    assert torch.equal(varlen_logits, sdpa_logits)  # the same path, not just close
    with pytest.raises(ValueError, match="cross_attention_kernel"):
        cross_attention.pairs_kernel("flash", torch.zeros(1))
