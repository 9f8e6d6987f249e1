"""`SECAI.pair_logits`, the only pair maths: the card's formula, projected once per protein,
pooled exactly in bf16, the pooled baseline, cached half states."""

from __future__ import annotations

import pytest
import torch

from ppi_dist.models.secai import masked_max_mean
from tests.helpers import tiny_model
from tests.reference import reference_logits


@pytest.mark.parametrize("symmetric", ["average", "none"])
def test_pair_logits_projects_once_and_equals_the_formula(symmetric):
    model = tiny_model(seed=2, symmetric=symmetric).eval()
    model.head.norm.running_mean.normal_()
    torch.manual_seed(1)
    states = torch.randn(5, 9, 32)
    mask = torch.arange(9)[None, :] < torch.tensor([9, 3, 7, 1, 5])[:, None]
    index_a, index_b = torch.tensor([0, 1, 2, 4, 3, 1]), torch.tensor([1, 0, 4, 4, 2, 3])
    with torch.no_grad():
        expected = reference_logits(model, states, mask, index_a, index_b)
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
