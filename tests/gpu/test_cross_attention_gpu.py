"""Flash varlen cross-attention on CUDA (skipped without a GPU): the packed pairs go through
`varlen_attn` itself, and give SDPA's logits and gradients to bf16 rounding."""

from __future__ import annotations

import pytest
import torch

from ppi_dist.data.batching import collate_pairs
from ppi_dist.models import cross_attention
from tests.helpers import random_pairs, tiny_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_varlen_cross_attention_runs_flash_and_gives_sdpas_logits_in_bf16(monkeypatch):
    assert cross_attention.varlen_attn is not None, "this torch has no varlen_attn"
    calls, real = [], cross_attention.varlen_attn
    monkeypatch.setattr(
        cross_attention, "varlen_attn", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    batch = {
        k: v.cuda() if torch.is_tensor(v) else v
        for k, v in collate_pairs(random_pairs(16, proteins=20, seed=3)).items()
    }
    results = {}
    for kernel in ("sdpa", "varlen"):
        model = tiny_model(
            seed=1, cross_attention_kernel=kernel, head_dropout=0.0, lora_dropout=0.0
        ).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(**batch)
        logits.float().sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
        results[kernel] = (logits.float().detach(), grads.float())
    assert len(calls) == 2  # both directions, through the flash kernel, no fallback
    (sdpa_logits, sdpa_grads), (logits, grads) = results["sdpa"], results["varlen"]
    torch.testing.assert_close(logits, sdpa_logits, atol=5e-2, rtol=5e-2)
    assert torch.nn.functional.cosine_similarity(grads, sdpa_grads, dim=0) > 0.99
