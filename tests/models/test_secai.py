"""SE-CAI: masking, cross-attention, pooling, dedup, symmetry, BatchNorm, what trains, LoRA
and activation checkpointing."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import EsmModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.esm import modeling_esm

from ppi_dist.data.batching import collate_pairs
from ppi_dist.data.pairs import Pair
from ppi_dist.data.sequences import esm2_tokenizer, tokenize
from ppi_dist.models.encoder import (
    ErfGeluIntermediate,
    base_encoder,
    base_weights,
    encoder_layers,
)
from ppi_dist.models.secai import (
    CrossAttention,
    masked_max_mean,
    residue_mask,
)
from ppi_dist.models.shapes import tiny_esm2_config
from tests.helpers import random_pairs, sgd_step, tiny_model


def _pad_more(batch: dict, extra: int) -> dict:
    """The same batch with `extra` more padding columns."""
    padded = dict(batch)
    pad_ids = torch.full((batch["input_ids"].shape[0], extra), 1, dtype=torch.long)
    padded["input_ids"] = torch.cat([batch["input_ids"], pad_ids], dim=1)
    padded["attention_mask"] = torch.cat([batch["attention_mask"], torch.zeros_like(pad_ids)], 1)
    return padded


def test_residue_mask_drops_cls_eos_and_padding():
    _, attention_mask = tokenize(["ACD", "A"])
    assert residue_mask(attention_mask).tolist() == [
        [False, True, True, True, False],
        [False, True, False, False, False],
    ]


def test_padding_does_not_change_probabilities(model, batch):
    probabilities = model.predict_proba(batch)
    assert torch.allclose(model.predict_proba(_pad_more(batch, 37)), probabilities, atol=1e-5)
    # A longer partner in the batch pads every other sequence further.
    longer = [*random_pairs(6), Pair("long", "P1", "M" * 90, "ACDEFGHIK", 1.0)]
    longer_probabilities = model.predict_proba(collate_pairs(longer))[:6]
    assert (longer_probabilities - probabilities).abs().max() <= 1e-5


def _reference_attention(q_states, k_states, key_mask, module: CrossAttention):
    """softmax(Q K^T / sqrt(d_k)) V, written out, with -inf at masked keys."""
    heads = module.heads
    p, lq, d = q_states.shape
    dk = d // heads
    q = module.w_q(q_states).view(p, lq, heads, dk).transpose(1, 2)
    k = module.w_k(k_states).view(p, -1, heads, dk).transpose(1, 2)
    v = module.w_v(k_states).view(p, -1, heads, dk).transpose(1, 2)
    logits = q @ k.transpose(-1, -2) / math.sqrt(dk)
    logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    weights = torch.softmax(logits, dim=-1)
    return (weights @ v).transpose(1, 2).reshape(p, lq, d), weights


def test_cross_attention_matches_reference_and_ignores_masked_keys():
    torch.manual_seed(0)
    module = CrossAttention(dim=32, heads=4)
    q_states, k_states = torch.randn(3, 7, 32), torch.randn(3, 11, 32)
    key_mask = torch.ones(3, 11, dtype=torch.bool)
    key_mask[0, 5:] = False
    key_mask[2, :2] = False
    out = module(q_states, k_states, key_mask)
    reference, weights = _reference_attention(q_states, k_states, key_mask, module)
    assert torch.allclose(out, reference, atol=1e-5)
    assert torch.all(weights[~key_mask[:, None, None, :].expand_as(weights)] == 0)
    # Changing a masked key changes nothing.
    k_changed = k_states.clone()
    k_changed[0, 5:] = 1e4
    assert torch.allclose(module(q_states, k_changed, key_mask), out, atol=1e-6)


def test_pooling_ignores_padding():
    torch.manual_seed(0)
    states = torch.randn(2, 6, 4)
    mask = torch.tensor([[0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0]], dtype=torch.bool)
    pooled = masked_max_mean(states, mask)
    poisoned = states.clone()
    poisoned[~mask] = 1e9
    assert torch.equal(masked_max_mean(poisoned, mask), pooled)
    real = states[0, 1:4]
    assert torch.allclose(pooled[0], torch.cat([real.amax(0), real.mean(0)]))


def test_repeated_protein_is_encoded_once(model):
    hub = "MKTAYIAKQRQISFVKSHFSRQ"
    pairs = [Pair("hub", f"P{i}", hub, s, 1.0) for i, s in enumerate(["ACDE", "WWYY", "KLMN"])]
    pairs.append(Pair("P0", "hub", "ACDE", hub, 0.0))
    batch = collate_pairs(pairs)
    encoder_calls, token_ids = [], []
    base = model.encoder.get_base_model()
    hooks = [
        model.encoder.register_forward_pre_hook(lambda *_: encoder_calls.append(1)),
        base.embeddings.word_embeddings.register_forward_pre_hook(
            lambda _m, args: token_ids.append(args[0])
        ),
    ]
    deduplicated = model.predict_proba(batch)
    for hook in hooks:
        hook.remove()
    assert len(encoder_calls) == 1 and len(token_ids) == 1
    # hub, ACDE, WWYY, KLMN: four distinct sequences for eight slots, each tokenised once
    # (packed several to a row), so four <cls> tokens and exactly their tokens.
    (ids,) = token_ids
    assert int((ids == esm2_tokenizer().cls_token_id).sum()) == 4
    assert int((ids != base.config.pad_token_id).sum()) == sum(
        len(s) + 2 for s in ["MKTAYIAKQRQISFVKSHFSRQ", "ACDE", "WWYY", "KLMN"]
    )

    # Reference: every occurrence encoded separately, one row per slot.
    sequences = [s for p in pairs for s in (p.sequence_a, p.sequence_b)]
    input_ids, attention_mask = tokenize(sequences)
    every_occurrence = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "index_a": torch.arange(0, 8, 2),
        "index_b": torch.arange(1, 8, 2),
    }
    assert torch.allclose(model.predict_proba(every_occurrence), deduplicated, atol=1e-6)


@pytest.mark.parametrize("training", [False, True])
def test_symmetric_option_scores_both_orders_equally(training):
    model = tiny_model(head_dropout=0.0)
    model.train(training)
    pairs = random_pairs(8, seed=3)
    swapped = [Pair(p.protein_b, p.protein_a, p.sequence_b, p.sequence_a, p.label) for p in pairs]
    with torch.no_grad():
        forward, backward = model(**collate_pairs(pairs)), model(**collate_pairs(swapped))
    assert (forward - backward).abs().max() <= 1e-6


def test_order_dependent_head_is_not_symmetric():
    model = tiny_model(symmetric="none").eval()
    pairs = random_pairs(8, seed=3)
    swapped = [Pair(p.protein_b, p.protein_a, p.sequence_b, p.sequence_a, p.label) for p in pairs]
    with torch.no_grad():
        difference = model(**collate_pairs(pairs)) - model(**collate_pairs(swapped))
    assert difference.abs().max() > 1e-4


def test_batchnorm_with_a_single_pair_in_training():
    model = tiny_model(symmetric="none").train()
    running_mean = model.head.norm.running_mean.clone()
    logits = model(**collate_pairs(random_pairs(1)))
    assert logits.shape == (1,) and torch.isfinite(logits).all()
    assert torch.equal(model.head.norm.running_mean, running_mean)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_one_step_changes_only_lora_cross_attention_head_and_first_pass(checkpointing, batch):
    model = tiny_model(activation_checkpointing=checkpointing).train()
    assert model.encoder.get_base_model().encoder.gradient_checkpointing == checkpointing
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    sgd_step(model, batch)
    # LoRA B starts at zero, so A's gradient is zero on the first step; B's must not be.
    lora_b = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b.values())
    model.zero_grad()
    sgd_step(model, batch)  # now B != 0, so A learns too
    lora_a = {n: p for n, p in model.named_parameters() if "lora_A" in n}
    assert lora_a and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_a.values())

    for name, param in model.named_parameters():
        trainable = "lora_" in name or name.startswith(("cross_attention.", "head.", "first_pass."))
        assert param.requires_grad == trainable, name
        if trainable and param.grad is not None:
            assert not torch.equal(param, before[name]), f"{name} did not change"
        if not trainable:
            assert torch.equal(param, before[name]), f"frozen {name} changed"


def test_encoder_layers_are_the_same_with_and_without_lora():
    """One listing of ESM-2's layers serves checkpointing, compile and kernel switches, so it
    must see through peft's wrapper and refuse a module without transformer layers."""
    lora, frozen = tiny_model(seed=0), tiny_model(seed=0, freeze_encoder=True)
    assert base_encoder(lora.encoder) is lora.encoder.get_base_model()
    assert base_encoder(frozen.encoder) is frozen.encoder
    for model in (lora, frozen):
        walked = [m for m in model.encoder.modules() if isinstance(m, GradientCheckpointingLayer)]
        assert encoder_layers(model.encoder) == walked
        assert len(walked) == model.encoder.config.num_hidden_layers
    with pytest.raises(ValueError, match="no transformer layers"):
        encoder_layers(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("freeze_encoder", [False, True])
def test_encoder_gelu_is_transformers_gelu_with_the_same_weights(freeze_encoder):
    """Every layer's GELU runs as one `F.gelu`; it must compute transformers' ESM GELU (the
    erf form, not tanh), forward and backward, and leave the weights' names alone (saved
    encoders, LoRA targets and fingerprints read them)."""
    model = tiny_model(seed=0, freeze_encoder=freeze_encoder)
    layers = encoder_layers(model.encoder)
    assert all(isinstance(layer.intermediate, ErfGeluIntermediate) for layer in layers)
    plain = EsmModel(model.encoder.config, add_pooling_layer=False)
    assert set(base_weights(base_encoder(model.encoder))) == set(plain.state_dict())

    intermediate = layers[0].intermediate
    hidden = 3 * torch.randn(5, 7, intermediate.dense.in_features, dtype=torch.float64)
    hidden.requires_grad_(True)
    intermediate.double()
    ours = intermediate(hidden)
    theirs = modeling_esm.gelu(intermediate.dense(hidden))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    grad_ours = torch.autograd.grad(ours.sum(), hidden)[0]
    grad_theirs = torch.autograd.grad(theirs.sum(), hidden)[0]
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=0, atol=1e-12)
    tanh = torch.nn.functional.gelu(intermediate.dense(hidden), approximate="tanh")
    assert (tanh - theirs).abs().max() > 1e-6  # the bound above tells the two forms apart


def test_checkpointing_every_second_layer_recomputes_half_and_changes_no_gradient(batch):
    """`activation_checkpointing_every: 2` checkpoints layers 0, 2 of 4; gradients are those
    of the model without checkpointing (recompute gives the same numbers)."""
    encoder_config = tiny_esm2_config(layers=4)
    grads, recomputed = {}, {}
    for every in (None, 1, 2):
        settings = {
            "activation_checkpointing": every is not None,
            "activation_checkpointing_every": every or 1,
        }
        model = tiny_model(seed=3, encoder_config=encoder_config, lora_dropout=0.0, **settings)
        layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        flags = [layer.gradient_checkpointing for layer in layers]
        calls = []
        for layer in layers:  # count the layers run twice (forward, then recomputed)
            layer.attention.register_forward_pre_hook(lambda m, args, calls=calls: calls.append(m))
        model.train()
        logits = model(**batch)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"]).backward()
        recomputed[every] = (flags, len(calls) - len(layers))
        grads[every] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert recomputed[None] == ([False] * 4, 0)
    assert recomputed[1] == ([True] * 4, 4)
    assert recomputed[2] == ([True, False, True, False], 2)
    for every in (1, 2):
        assert grads[every].keys() == grads[None].keys()
        for name, grad in grads[None].items():
            torch.testing.assert_close(grads[every][name], grad, msg=name)
    with pytest.raises(ValueError, match="activation_checkpointing_every must be at least 1"):
        tiny_model(activation_checkpointing_every=0)
