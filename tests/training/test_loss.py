"""Focal loss against a direct implementation, at extreme logits, and against BCE."""

import pytest
import torch
import torch.nn.functional as F

from ppi_dist.training.loss import focal_loss


def direct_focal(logits, labels, gamma, alpha):
    """-alpha_t (1 - p_t)^gamma log p_t, written out with sigmoid and log."""
    p = torch.sigmoid(logits.double())
    p_t = torch.where(labels == 1, p, 1 - p)
    alpha_t = torch.ones_like(p) if alpha is None else torch.where(labels == 1, alpha, 1 - alpha)
    return (-alpha_t * (1 - p_t) ** gamma * torch.log(p_t)).mean()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.75])
def test_matches_direct_formula_on_moderate_logits(gamma, alpha):
    torch.manual_seed(0)
    logits, labels = torch.randn(256) * 4, torch.randint(0, 2, (256,)).float()
    expected = direct_focal(logits, labels, gamma, alpha)
    assert torch.allclose(focal_loss(logits, labels, gamma, alpha).double(), expected, rtol=1e-5)


def test_finite_and_exact_at_extreme_logits():
    logits = torch.tensor([100.0, -100.0, 100.0, -100.0])
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])
    per_pair = [focal_loss(logits[i : i + 1], labels[i : i + 1], gamma=2.0) for i in range(4)]
    assert all(torch.isfinite(x) for x in per_pair)
    # Confidently right: (1-p_t)^2 * -log p_t ~ e^-200 * e^-100, i.e. 0 in float32.
    assert per_pair[0] == 0 and per_pair[1] == 0
    # Confidently wrong: p_t = e^-100, so the loss is (1 - e^-100)^2 * 100 = 100.
    assert torch.isclose(per_pair[2], torch.tensor(100.0)) and torch.isclose(
        per_pair[3], torch.tensor(100.0)
    )
    logits.requires_grad_(True)
    focal_loss(logits, labels).backward()
    assert torch.isfinite(logits.grad).all()


def test_gamma_zero_without_alpha_is_bce():
    torch.manual_seed(1)
    logits, labels = torch.randn(64) * 10, torch.randint(0, 2, (64,)).float()
    bce = F.binary_cross_entropy_with_logits(logits, labels)
    assert torch.allclose(focal_loss(logits, labels, gamma=0.0, alpha=None), bce, rtol=1e-6)


def test_weights_exclude_padding_pairs():
    logits, labels = torch.tensor([2.0, -1.0, 3.0]), torch.tensor([1.0, 1.0, 0.0])
    weighted = focal_loss(logits, labels, weight=torch.tensor([1.0, 1.0, 0.0]))
    assert torch.allclose(weighted, focal_loss(logits[:2], labels[:2]))
