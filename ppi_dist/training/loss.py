"""Focal loss on logits (Lin et al. 2017): -alpha_t (1 - p_t)^gamma log p_t."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean focal loss of binary `labels` (0/1) given `logits`.

    Everything is computed in log space: with s = +1 for positives and -1 for negatives,
    log p_t = logsigmoid(s * z) and (1 - p_t)^gamma = exp(gamma * logsigmoid(-s * z)), so
    logits of +-100 give finite, exact values where log(sigmoid(z)) would underflow to -inf.
    `alpha` weighs positives (alpha) against negatives (1 - alpha); None weighs both 1, and
    then gamma = 0 is exactly binary cross-entropy. `weight` (per pair, e.g. 0 for padding
    pairs) gives a weighted mean.
    """
    logits = logits.float()
    labels = labels.float()
    sign = 2.0 * labels - 1.0
    log_p_t = F.logsigmoid(sign * logits)
    loss = -log_p_t
    if gamma != 0:
        loss = loss * torch.exp(gamma * F.logsigmoid(-sign * logits))
    if alpha is not None:
        loss = loss * (alpha * labels + (1.0 - alpha) * (1.0 - labels))
    if weight is None:
        return loss.mean()
    weight = weight.float()
    return (loss * weight).sum() / weight.sum().clamp(min=1e-12)
