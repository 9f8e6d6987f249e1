"""The FLOP model: its closed forms and its count of the 650M's weights."""

from __future__ import annotations

import torch
from torch import nn

from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.secai import SECAI
from ppi_dist.models.shapes import encoder_config_of
from ppi_dist.training.flops import (
    EncoderShape,
    ModelShape,
    batch_stats,
    encoder_flops,
    pair_flops,
    secai_step_flops,
    trunk_build_flops,
)


def test_matmul_params_match_the_650m_encoders_linear_weights():
    config = SECAIConfig(encoder=None, encoder_config=encoder_config_of("650M"))
    with torch.device("meta"):
        model = SECAI(config)
    layers = model.encoder.get_base_model().encoder.layer
    linear = sum(
        m.weight.numel()
        for name, m in layers.named_modules()
        if isinstance(m, nn.Linear) and "lora_" not in name  # LoRA's A and B are nn.Linear too
    )
    assert EncoderShape.from_config(encoder_config_of("650M")).matmul_params == linear
    assert EncoderShape.from_config(model.encoder.config).matmul_params == linear


def test_flop_model_closed_forms():
    shape = EncoderShape(hidden=4, layers=2, intermediate=16)  # 4d^2 + 2df = 192 per layer
    step = encoder_flops(ModelShape(shape, lora_r=1, checkpointing=True), [3])
    linear, attention, lora = 2 * 384 * 3, 4 * 2 * 9 * 4, 2 * 2 * (2 * 2 * 1 * 4) * 3
    assert step.encoder_forward == linear + attention
    assert step.encoder_backward == linear + 2 * attention  # frozen weights: dX only
    assert step.recompute == linear + attention + lora
    assert step.trainable_forward == lora and step.trainable_backward == 2 * lora
    assert step.model == 2 * linear + 3 * attention + 3 * lora
    assert step.executed == step.model + step.recompute
    cross = pair_flops(ModelShape(shape, head_hidden=2, symmetric=False), [(3, 5)])
    assert cross.trainable_forward == 2 * 16 * 3 * 8 + 8 * 15 * 4 + 2 * 1 * (8 * 4 * 2 + 2)
    both = pair_flops(ModelShape(shape, head_hidden=2), [(3, 5)])  # symmetric: 2 head rows
    assert both.trainable_forward - cross.trainable_forward == 2 * 1 * (8 * 4 * 2 + 2)
    # Dedup: one call on distinct sequences costs less than two calls on the pairs' sides.
    model = ModelShape(shape)
    once = secai_step_flops(model, [[10, 10, 10]], [(10, 10)] * 3)
    twice = secai_step_flops(model, [[10] * 3, [10] * 3], [(10, 10)] * 3)
    assert once.model < twice.model


def test_a_frozen_encoder_runs_forward_only():
    shape = EncoderShape(hidden=4, layers=2, intermediate=16)
    frozen = ModelShape.of(
        SECAIConfig(encoder="x", freeze_encoder=True),
        {"hidden_size": 4, "num_hidden_layers": 2, "intermediate_size": 16},
    )
    assert frozen == ModelShape(shape, lora_r=0)
    step = encoder_flops(ModelShape(shape, lora_r=0, checkpointing=True), [3])
    assert step.encoder_forward == 2 * 384 * 3 + 4 * 2 * 9 * 4
    assert step.model == step.executed == step.encoder_forward


def test_lora_on_the_last_layers_counts_those_layers_per_step_and_the_rest_once():
    shape = EncoderShape(hidden=4, layers=6, intermediate=16)
    widths = [10, 7]
    full, top = ModelShape(shape, lora_r=2), ModelShape(shape, lora_r=2, lora_layers=2)
    assert (full.step_layers, top.step_layers) == (6, 2)
    every, last_two = encoder_flops(full, widths), encoder_flops(top, widths)
    # Every encoder term scales with the layers run: 2 of 6.
    for whole, part in zip(every.astuple(), last_two.astuple(), strict=True):
        assert part == whole * 2 / 6
    # The 4 layers below run once, forward only, into the trunk cache.
    assert trunk_build_flops(top, widths) == every.encoder_forward * 4 / 6
    assert trunk_build_flops(full, widths) == 0.0
    frozen = ModelShape.of(
        SECAIConfig(encoder=None, encoder_config={}, freeze_encoder=True, lora_layers=2),
        encoder_config_of("8M"),
    )
    assert frozen.lora_layers is None  # a frozen encoder has no LoRA layers


def test_a_batchs_flops_follow_its_kind():
    """Token batches run the encoder on their packed distinct sequences; cache-row batches
    (a frozen encoder) only the pair maths, on the stored lengths cut to the crop."""
    shape = ModelShape(EncoderShape(hidden=8, layers=2, intermediate=32), lora_r=2)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    pairs = {"index_a": torch.tensor([0, 0]), "index_b": torch.tensor([1, 0])}
    tokens = batch_stats(shape, {"attention_mask": mask, **pairs})
    assert (tokens.pairs, tokens.pair_tokens, tokens.encoded_real) == (2, 4 + 5 + 4 + 4, 9)
    expected = secai_step_flops(shape, [[5, 5]], [(5, 5)] * 2)  # two rows: 4 + 5 > 5
    assert tokens.flops == expected
    rows = {"cache_rows": torch.tensor([3, 1]), "cache_window": 4, **pairs}
    cached = batch_stats(shape, rows, cache_lengths=torch.tensor([9, 3, 9, 7]))
    assert cached.pair_tokens == 4 + 3 + 4 + 4 and cached.encoded_real == 0
    assert cached.flops == secai_step_flops(shape, [], [(4, 4)] * 2)
