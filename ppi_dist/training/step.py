"""One training step, and the optimiser it steps.

`train_step` is what the loop calls per micro-batch; the benchmarks time it and profile it
as the trainer runs it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from ppi_dist.errors import NonFiniteLossError
from ppi_dist.models.secai import SECAI
from ppi_dist.training.config import OptimizationConfig
from ppi_dist.training.loss import focal_loss


def make_optimizer(model: SECAI, optimization: OptimizationConfig) -> torch.optim.AdamW:
    """AdamW with its own learning rate for LoRA and for cross-attention + head.

    No weight decay on biases and normalisation weights (1-d tensors), as usual; the
    implementation is `optimization.adamw_implementation` (fused by default).
    """
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            part = "lora" if "lora_" in name else "head"
            groups.setdefault((part, param.ndim > 1), []).append(param)
    rates = {"lora": optimization.learning_rate_lora, "head": optimization.learning_rate_head}
    decay = optimization.weight_decay
    param_groups = [
        {"params": params, "lr": rates[part], "part": part, "weight_decay": decay * decays}
        for (part, decays), params in sorted(groups.items())
    ]
    # Fused: one operator for all tensors, where the per-parameter loop dispatches about ten
    # each (on the CPU too: torch's default there is that loop).
    implementation = optimization.adamw_implementation
    return torch.optim.AdamW(
        param_groups, fused=implementation == "fused", foreach=implementation == "foreach"
    )


class StepResult(NamedTuple):
    loss_sum: float  # focal loss x pairs, summed over ranks
    pairs: float  # real pairs (weight > 0), summed over ranks
    stopping: bool  # some rank was asked to stop
    skipped: bool  # non-finite loss under `nonfinite_loss: skip`: no update was made


def train_step(
    model: torch.nn.Module,
    batch: dict,
    optimizer: torch.optim.Optimizer,
    accelerator: Accelerator,
    optimization: OptimizationConfig,
    stop_requested: bool,
) -> StepResult:
    """Forward, focal loss, backward, clip, optimiser step.

    One all-reduce carries what every rank must agree on before backward (a non-finite
    loss anywhere, a stop request anywhere) and the loss for the log; it is the step's one
    host synchronisation.
    """
    with accelerator.accumulate(model):
        logits = model(**batch)
        gamma, alpha = optimization.focal_gamma, optimization.focal_alpha
        loss = focal_loss(logits, batch["labels"], gamma, alpha, weight=batch["weight"])
        pairs = batch["weight"].sum()
        flags = torch.stack(
            [
                (~torch.isfinite(loss)).float(),
                torch.tensor(float(stop_requested), device=loss.device),
                loss.detach().float().nan_to_num() * pairs,
                pairs.float(),
            ]
        )
        nonfinite, stopping, loss_sum, pair_count = accelerator.reduce(flags, "sum").tolist()
        if nonfinite and optimization.nonfinite_loss == "stop":
            raise NonFiniteLossError(
                "non-finite loss; stopping before it reaches the weights. Lower the learning "
                "rate, or pass --nonfinite_loss skip to drop such steps"
            )
        if nonfinite:  # skip: a zero backward keeps DDP's hooks in step, then drop it
            accelerator.backward((logits * 0).nan_to_num().sum())
            optimizer.zero_grad()
            return StepResult(0.0, 0.0, stopping > 0, skipped=True)
        accelerator.backward(loss)
        if accelerator.sync_gradients and accelerator.distributed_type != DistributedType.DEEPSPEED:
            accelerator.clip_grad_norm_(model.parameters(), optimization.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
    return StepResult(loss_sum, pair_count, stopping > 0, skipped=False)
