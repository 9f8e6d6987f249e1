"""Trainable parameters of SE-CAI on an encoder shape, counted on the meta device (no weights).

`ppi-dist parameters --shape 650M` prints the table: LoRA r = 8 on query and value of ESM-2
650M is 1,351,680 weights, 0.208% of the encoder.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import EsmConfig

from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.secai import SECAI


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def lora_parameter_count(config: EsmConfig, r: int, target_modules: list[str]) -> int:
    """Closed form: each targeted d x d projection in each layer gets A (r x d) + B (d x r)."""
    d = config.hidden_size
    per_layer = sum(r * (d + d) for name in target_modules if name in ("query", "key", "value"))
    return config.num_hidden_layers * per_layer


def _share(part: int, whole: int) -> str:
    return f"{part:,} ({100 * part / whole:.3f}% of {whole:,})"


def parameter_report(config: SECAIConfig) -> str:
    """Trainable-parameter table of the SE-CAI `config` (its `encoder_config` shape)."""
    with torch.device("meta"):
        model = SECAI(config)
    esm_total = sum(p.numel() for n, p in model.encoder.named_parameters() if "lora_" not in n)
    lora = sum(p.numel() for n, p in model.encoder.named_parameters() if "lora_" in n)
    closed_form = lora_parameter_count(
        EsmConfig(**config.encoder_config), config.lora_r, config.lora_target_modules
    )
    cross = sum(p.numel() for p in model.cross_attention.parameters())  # SE-CAI: not None
    head = sum(p.numel() for p in model.head.parameters())
    trainable, total = count_parameters(model)
    lines = [
        f"ESM-2 base (frozen):        {esm_total:,}",
        f"LoRA r={config.lora_r} on {'/'.join(config.lora_target_modules)}:  "
        f"{_share(lora, esm_total)} of ESM-2; closed form {closed_form:,}",
        f"cross-attention:            {cross:,}",
        f"pair head:                  {head:,}",
        f"trainable total:            {_share(trainable, total)}",
    ]
    return "\n".join(lines)
