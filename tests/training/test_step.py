"""`make_optimizer`'s AdamW implementations make the same update: the fused one (the default,
one operator for all tensors) only dispatches less than the per-parameter loop."""

from __future__ import annotations

import pytest
import torch

from ppi_dist.data.batching import collate_pairs
from ppi_dist.errors import ConfigError
from ppi_dist.training.config import OptimizationConfig
from ppi_dist.training.step import make_optimizer
from tests.helpers import random_pairs, tiny_model


def _after_two_steps(implementation: str) -> tuple[dict, torch.optim.Optimizer]:
    model = tiny_model(seed=3, lora_dropout=0.0, head_dropout=0.0)
    optimization = OptimizationConfig(adamw_implementation=implementation)
    optimizer = make_optimizer(model, optimization)
    batch = collate_pairs(random_pairs(8, seed=2))
    for _ in range(2):
        model(**batch).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return trained, optimizer


def test_fused_foreach_and_loop_adamw_make_the_same_update():
    loop, optimizer = _after_two_steps("for_loop")
    assert not optimizer.defaults["fused"] and not optimizer.defaults["foreach"]
    for implementation in ("fused", "foreach"):
        got, optimizer = _after_two_steps(implementation)
        assert optimizer.defaults[implementation]
        assert got.keys() == loop.keys()
        for name, value in loop.items():
            if name == "head.fc1.bias":  # BatchNorm follows: its gradient is rounding noise,
                continue  # which Adam scales to full steps in any direction
            torch.testing.assert_close(got[name], value, atol=1e-6, rtol=1e-5, msg=name)
    assert OptimizationConfig().adamw_implementation == "fused"
    with pytest.raises(ConfigError, match="adamw_implementation"):
        OptimizationConfig(adamw_implementation="apex")


def test_the_first_pass_learns_the_labels_and_se_cais_ranking_without_moving_se_cai():
    """`_losses` adds the first pass's loss at its weight: focal on the labels, plus the
    distillation term towards SE-CAI's probabilities; neither reaches SE-CAI's LoRA,
    cross-attention or head (the first pass reads the states detached, and the teacher is
    held fixed), so SE-CAI trains as it would without a first pass."""

    from ppi_dist.training.step import _losses

    model = tiny_model(seed=3, lora_dropout=0.0, head_dropout=0.0)
    batch = collate_pairs(random_pairs(8, seed=2))
    batch["weight"] = torch.ones(8)
    totals, grads = {}, {}
    for distillation in (0.0, 2.0):
        model.zero_grad()
        optimization = OptimizationConfig(
            first_pass_loss_weight=0.5, first_pass_distillation=distillation
        )
        (se_cai, first), _, total = _losses(model, batch, True, optimization)
        total.backward()
        totals[distillation] = total.detach()
        grads[distillation] = {
            n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
        }
    teacher = torch.sigmoid(se_cai.detach())
    matching = torch.nn.functional.binary_cross_entropy_with_logits(first.detach(), teacher)
    torch.testing.assert_close(totals[2.0] - totals[0.0], 0.5 * 2.0 * matching)
    for name, grad in grads[0.0].items():  # the first pass reads the states, detached
        moved = not torch.equal(grads[2.0][name], grad)
        assert moved == name.startswith("first_pass."), name


def test_se_cai_trains_the_same_with_or_without_a_first_pass():
    """The first pass's weights are drawn from a fork of the random state, read the states
    detached and are clipped on their own: SE-CAI's weights after a few steps (dropout on)
    equal those of a model without one, bit for bit."""
    from accelerate import Accelerator

    from ppi_dist.training.step import prepare_training, train_step

    batches = [collate_pairs(random_pairs(8, seed=s)) for s in range(3)]
    for batch in batches:
        batch["weight"] = torch.ones(8)
    trained = []
    for width in (None, 256):
        model = tiny_model(seed=3, first_pass_width=width).train()
        accelerator = Accelerator(cpu=True)
        optimization = OptimizationConfig(max_grad_norm=0.1)  # clipping on every step
        prepared = prepare_training(model, optimization, accelerator)
        torch.manual_seed(0)
        for batch in batches:
            train_step(prepared.model, batch, prepared.optimizer, accelerator, optimization, False)
        trained.append(
            {n: p.detach().clone() for n, p in model.named_parameters() if "first_pass" not in n}
        )
    assert trained[0].keys() == trained[1].keys()
    for name, value in trained[0].items():
        assert torch.equal(value, trained[1][name]), name
