"""The encoder's attention kernels over packed rows (`ppi_dist.models.attention`): every kernel kept
computes what each sequence gives alone, and "flex"/"varlen" fall back to SDPA where they
cannot run. On the CPU, flash varlen does not exist: a per-segment SDPA stands in for it, so
what is checked is our side (the token stream, `cu_seqlens`, shapes, scale); the real kernels
run in tests/gpu."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
import torch.nn.functional as F

from ppi_dist.data.sequences import tokenize
from ppi_dist.models import attention
from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.packing import pack_batch, packing_layout
from tests.helpers import random_sequence, spy_on_kernel, states_alone, tiny_model


def segment_attention(q, k, v, cu_q, cu_k, max_q, max_k, scale=None):
    """Reference of `varlen_attn` on (T, H, D) streams: SDPA on each segment alone."""
    assert torch.equal(cu_q, cu_k) and cu_q.dtype == torch.int32
    bounds = cu_q.tolist()
    assert max(b - a for a, b in itertools.pairwise(bounds)) <= max_q == max_k
    pieces = []
    for start, end in itertools.pairwise(bounds):
        q_s, k_s, v_s = (x[start:end].transpose(0, 1) for x in (q, k, v))
        pieces.append(F.scaled_dot_product_attention(q_s, k_s, v_s, scale=scale).transpose(0, 1))
    return torch.cat(pieces)


def segment_attention_fixed_scale(q, k, v, cu_q, cu_k, max_q, max_k):
    """torch 2.10's signature: no `scale`, always 1/sqrt(D)."""
    return segment_attention(q, k, v, cu_q, cu_k, max_q, max_k)


@pytest.fixture
def everywhere(monkeypatch):
    """Let "flex" and "varlen" run on the CPU (varlen through the reference above)."""
    monkeypatch.setattr(attention, "runs_here", lambda choice, states: True)
    monkeypatch.setattr(attention, "varlen_attn", segment_attention)
    monkeypatch.setattr(attention, "_VARLEN_TAKES_SCALE", True)


def _sequences(seed: int = 1, n: int = 9) -> list[str]:
    rng = random.Random(seed)
    return [random_sequence(rng, 3, 50) for _ in range(n)]


def test_cu_seqlens_cut_the_rows_into_sequences_and_padding_tails():
    lengths = [7, 5, 3, 2, 6]
    layout = packing_layout(lengths)
    owner = layout["pack_sequence_ids"]
    cu = layout["pack_cu_seqlens"]
    assert cu.dtype == torch.int32 and cu[0] == 0 and cu[-1] == owner.numel()
    flat, width = owner.reshape(-1), owner.shape[1]
    seen = []
    for start, end in itertools.pairwise(cu.tolist()):
        segment = flat[start:end]
        assert end > start and torch.all(segment == segment[0])  # one sequence, or padding
        assert start // width == (end - 1) // width  # never across rows
        if segment[0] >= 0:
            seen.append((int(segment[0]), end - start))
    assert sorted(seen) == list(enumerate(lengths))  # every sequence exactly once, whole


@pytest.mark.parametrize("choice", ["varlen", "flex", "cudnn"])
def test_packed_encoding_equals_each_sequence_alone(monkeypatch, everywhere, choice):
    calls = spy_on_kernel(monkeypatch, choice)
    model = tiny_model(encoder_attention=choice).eval()
    sequences = _sequences()
    ids, mask = tokenize(sequences)
    with torch.no_grad():  # FlexAttention has no CPU backward
        states = model.encode(ids, mask)
        for row, alone in enumerate(states_alone(model, sequences)):
            n = len(sequences[row]) + 2
            torch.testing.assert_close(states[row, :n], alone, atol=1e-5, rtol=1e-4)
            assert torch.all(states[row, n:] == 0)
    assert len(calls) == model.encoder.config.num_hidden_layers  # packed: the chosen kernel


@pytest.mark.parametrize("takes_scale", [True, False])
def test_varlen_gives_sdpas_logits_and_gradients(monkeypatch, everywhere, takes_scale):
    if not takes_scale:
        monkeypatch.setattr(attention, "varlen_attn", segment_attention_fixed_scale)
        monkeypatch.setattr(attention, "_VARLEN_TAKES_SCALE", False)
    calls = []
    real = attention.varlen_attention
    monkeypatch.setattr(
        attention, "varlen_attention", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    ids, mask = tokenize(_sequences(seed=3))
    index = torch.arange(ids.shape[0])
    results = []
    for choice in ("sdpa", "varlen"):
        model = tiny_model(seed=4, encoder_attention=choice, lora_dropout=0.0)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # non-zero B: LoRA A gets a gradient on this first step
                torch.nn.init.normal_(
                    parameter, std=0.1, generator=torch.Generator().manual_seed(0)
                )
        logits = model(input_ids=ids, attention_mask=mask, index_a=index, index_b=index.flip(0))
        logits.sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        results.append((logits.detach(), grads))
    # The varlen model took the varlen path in every layer; the SDPA model never did.
    assert len(calls) == model.encoder.config.num_hidden_layers
    (sdpa_logits, sdpa_grads), (varlen_logits, varlen_grads) = results
    torch.testing.assert_close(varlen_logits, sdpa_logits, atol=1e-5, rtol=1e-4)
    assert any("lora_A" in n and g.abs().sum() > 0 for n, g in varlen_grads.items())
    for name, grad in sdpa_grads.items():
        torch.testing.assert_close(varlen_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_flex_hands_the_layers_a_document_block_mask(everywhere):
    packed = pack_batch(*tokenize(["MKV", "ACDEFGHIK", "WY"]), pad_id=1)
    embeddings = torch.zeros(*packed.input_ids.shape, 4)
    mask, extra = attention.packed_attention_inputs(
        packed, embeddings, "flex", attention.IMPLEMENTATION
    )
    assert isinstance(mask, attention.BlockMask) and extra == {}
    dense = mask.to_dense()  # (R, 1, blocks, blocks): which tiles run
    assert dense.shape[0] == packed.input_ids.shape[0]
    rows, width = packed.sequence_ids.shape
    q, kv = torch.meshgrid(torch.arange(width), torch.arange(width), indexing="ij")
    for row in range(rows):
        expected = packed.same_sequence[row, 0]
        assert torch.equal(mask.mask_mod(row, 0, q, kv), expected)


@pytest.mark.parametrize("choice", ["cudnn", "flex", "varlen"])
def test_cuda_kernels_fall_back_to_sdpa_on_the_cpu(choice):
    states = torch.zeros(2, 5, 8)
    assert attention.kernel_for(choice, states) == "sdpa"
    assert attention.kernel_for("sdpa", states) == "sdpa"
    sdpa = tiny_model(seed=2).eval()
    other = tiny_model(seed=2, encoder_attention=choice).eval()
    ids, mask = tokenize(_sequences(seed=5, n=4))
    with torch.no_grad():
        torch.testing.assert_close(other.encode(ids, mask), sdpa.encode(ids, mask))


def test_only_the_kept_kernels_are_accepted():
    with pytest.raises(ValueError, match="encoder_attention must be one of"):
        SECAIConfig(encoder=None, encoder_config={}, encoder_attention="flash")
    with pytest.raises(ValueError, match="encoder_attention must be one of"):
        attention.kernel_for("math", torch.zeros(1))


def test_sdpa_layers_share_one_additive_mask_that_equals_the_boolean_one():
    """The "sdpa" rows get the block-diagonal mask as logit offsets made once: every layer
    attends exactly as with the boolean mask, and the backward keeps one mask for all
    layers, not a converted copy per layer."""
    packed = pack_batch(*tokenize(_sequences(seed=6, n=7)), pad_id=1)
    embeddings = torch.zeros(*packed.input_ids.shape, 16)
    offsets, extra = attention.packed_attention_inputs(packed, embeddings, "sdpa", "sdpa")
    assert extra == {} and offsets.dtype == embeddings.dtype
    assert torch.equal(offsets == 0, packed.same_sequence)
    assert torch.all(offsets[~packed.same_sequence] == float("-inf"))
    q = torch.randn(packed.input_ids.shape[0], 4, packed.input_ids.shape[1], 8)
    boolean = F.scaled_dot_product_attention(q, q, q, attn_mask=packed.same_sequence)
    assert torch.equal(F.scaled_dot_product_attention(q, q, q, attn_mask=offsets), boolean)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attention.packed_attention_inputs(packed, embeddings, "sdpa", "sdpa")[0].dtype == (
            torch.bfloat16
        )

    model = tiny_model(seed=7)
    ids, mask = tokenize(_sequences(seed=6, n=7))
    saved = []

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dim() == 4 and tensor.shape[1] == 1 and tensor.shape[2] == tensor.shape[3]:
            saved.append(tensor.data_ptr())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        model.encode(ids, mask).sum()
    assert len(saved) >= model.encoder.config.num_hidden_layers and len(set(saved)) == 1
