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


def lora_parameter_count(
    config: EsmConfig, r: int, target_modules: list[str], layers: int | None = None
) -> int:
    """Closed form: each targeted d x d projection in each adapted layer (the last `layers`,
    None: all) gets A (r x d) + B (d x r)."""
    d = config.hidden_size
    per_layer = sum(r * (d + d) for name in target_modules if name in ("query", "key", "value"))
    adapted = config.num_hidden_layers if layers is None else layers
    return min(adapted, config.num_hidden_layers) * per_layer


def _share(part: int, whole: int) -> str:
    return f"{part:,} ({100 * part / whole:.3f}% of {whole:,})"


def parameter_report(config: SECAIConfig) -> str:
    """Trainable-parameter table of the SE-CAI `config` (its `encoder_config` shape)."""
    with torch.device("meta"):
        model = SECAI(config)
    esm_total = sum(p.numel() for n, p in model.encoder.named_parameters() if "lora_" not in n)
    lora = sum(p.numel() for n, p in model.encoder.named_parameters() if "lora_" in n)
    shape = EsmConfig(**config.encoder_config)
    closed_form = lora_parameter_count(
        shape, config.lora_r, config.lora_target_modules, config.lora_layers
    )
    layers = shape.num_hidden_layers
    adapted = layers if config.lora_layers is None else min(config.lora_layers, layers)
    cross = sum(p.numel() for p in model.cross_attention.parameters())  # SE-CAI: not None
    head = sum(p.numel() for p in model.head.parameters())
    trainable, total = count_parameters(model)
    depth = config.trunk_depth(layers)
    lines = [
        f"ESM-2 base (frozen):        {esm_total:,}",
        f"LoRA r={config.lora_r} on {'/'.join(config.lora_target_modules)}, "
        f"last {adapted} of {layers} layers:  "
        f"{_share(lora, esm_total)} of ESM-2; closed form {closed_form:,}",
        f"cross-attention:            {cross:,}",
        f"pair head:                  {head:,}",
    ]
    if model.first_pass is not None:
        first_pass = sum(p.numel() for p in model.first_pass.parameters())
        lines.append(f"first pass (screen):        {first_pass:,}")
    lines += [
        f"trainable total:            {_share(trainable, total)}",
    ]
    if depth:
        lines.append(f"trunk (run once per window, cached): layers 0-{depth - 1}")
    return "\n".join(lines)
