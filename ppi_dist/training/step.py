"""One training step: the optimiser and model it steps, the batch it reads, the step itself.

`prepare_training` (AdamW, the schedule, `accelerator.prepare`), `BatchPreparation` (a
loader's batch -> the step's) and `train_step` are what the loop runs; the benchmarks call
the same three, so they time and profile the step as the trainer runs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.optim.lr_scheduler import LRScheduler
from torch.profiler import record_function
from transformers import get_scheduler

from ppi_dist.data.batching import batch_to_device, swap_sides
from ppi_dist.errors import NonFiniteLossError
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.trunk import TrunkCache
from ppi_dist.models.secai import SECAI
from ppi_dist.training.config import OptimizationConfig
from ppi_dist.training.frozen import with_cached_states
from ppi_dist.training.loss import focal_loss
from ppi_dist.training.trunk import with_trunk_states

# The ranges a profile (`training.profiling`) splits a step's time by; free when none runs.
PREPARE_RANGE, TRAIN_STEP_RANGE = "prepare_batch", "train_step"


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


@dataclass
class Prepared:
    """The model as the step runs it (`accelerator.prepare`d: DDP, a DeepSpeed engine or
    itself), its optimiser, and the learning-rate schedule (None when none was asked for)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler | None


def prepare_training(
    model: SECAI,
    optimization: OptimizationConfig,
    accelerator: Accelerator,
    total_steps: int | None = None,
) -> Prepared:
    """`make_optimizer`, the schedule over `total_steps` optimiser steps (warm-up, then
    `lr_schedule`; None: no schedule, the peak rates throughout) and `accelerator.prepare`.

    The schedule is made on the plain optimizer and stepped by the loop once per optimiser
    step, not `prepare`d: Accelerate would step it once per process.
    """
    optimizer = make_optimizer(model, optimization)
    scheduler = None
    if total_steps is not None:
        warmup = math.ceil(optimization.warmup_ratio * total_steps)
        scheduler = get_scheduler(optimization.lr_schedule, optimizer, warmup, total_steps)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    return Prepared(prepared, optimizer, scheduler)


@dataclass
class BatchPreparation:
    """A loader's batch made the step's, on `device`: with a frozen encoder's embedding
    `cache`, its proteins' states gathered (`training.frozen`); with LoRA on the top layers,
    its windows' `trunk` states beside the tokens (`training.trunk`); otherwise its tensors
    copied. With a `swap` generator, A and B of a random half of the pairs then swapped
    (`swap_augmentation`)."""

    device: torch.device
    cache: EmbeddingCache | None = None
    trunk: TrunkCache | None = None
    swap: torch.Generator | None = None

    @record_function(PREPARE_RANGE)
    def __call__(self, batch: dict) -> dict:
        if self.cache is not None:  # cache rows -> states gathered on the device
            batch = with_cached_states(batch, self.cache, self.device)
        elif self.trunk is not None:  # tokens + the lower layers' states of their windows
            batch = with_trunk_states(batch, self.trunk, self.device)
        else:
            batch = batch_to_device(batch, self.device)
        if self.swap is not None:
            batch = swap_sides(batch, self.swap)
        return batch


class StepResult(NamedTuple):
    loss_sum: float  # focal loss x pairs, summed over ranks
    pairs: float  # real pairs (weight > 0), summed over ranks
    stopping: bool  # some rank was asked to stop
    skipped: bool  # non-finite loss under `nonfinite_loss: skip`: no update was made


@record_function(TRAIN_STEP_RANGE)
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
        # (a benchmark's stand-in model may have no first pass at all)
        first_pass = getattr(accelerator.unwrap_model(model), "first_pass", None)
        logits, loss, total = _losses(model, batch, first_pass is not None, optimization)
        pairs = batch["weight"].sum()
        flags = torch.stack(
            [
                (~torch.isfinite(total)).float(),
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
            accelerator.backward(sum((x * 0).nan_to_num().sum() for x in logits))
            optimizer.zero_grad()
            return StepResult(0.0, 0.0, stopping > 0, skipped=True)
        accelerator.backward(total)
        if accelerator.sync_gradients and accelerator.distributed_type != DistributedType.DEEPSPEED:
            for parameters in _clipping_groups(model, first_pass):
                accelerator.clip_grad_norm_(parameters, optimization.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
    return StepResult(loss_sum, pair_count, stopping > 0, skipped=False)


def _clipping_groups(
    model: torch.nn.Module, first_pass: torch.nn.Module | None
) -> list[list[torch.nn.Parameter]]:
    """The parameters clipped together: SE-CAI's, and the first pass's on their own, so its
    gradients (larger than SE-CAI's early on) never shrink SE-CAI's steps."""
    if first_pass is None:
        return [list(model.parameters())]
    own = {id(p) for p in first_pass.parameters()}
    return [
        [p for p in model.parameters() if id(p) not in own],
        list(first_pass.parameters()),
    ]


def _losses(
    model: torch.nn.Module, batch: dict, with_first_pass: bool, optimization: OptimizationConfig
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
    """The batch's logits (SE-CAI's, and the first pass's when the model has one), SE-CAI's
    focal loss (the one logged), and the loss to minimise: with a first pass, its own loss on
    the same pairs (focal on the labels, and `first_pass_distillation` x cross-entropy to
    SE-CAI's probabilities) is added at `first_pass_loss_weight`."""
    gamma, alpha = optimization.focal_gamma, optimization.focal_alpha
    labels, weight = batch["labels"], batch["weight"]
    output = model(**batch, with_first_pass=with_first_pass)
    logits = tuple(output) if with_first_pass else (output,)
    loss = focal_loss(logits[0], labels, gamma, alpha, weight=weight)
    total = loss
    if with_first_pass:
        first_pass_loss = focal_loss(logits[1], labels, gamma, alpha, weight=weight)
        if optimization.first_pass_distillation:  # towards SE-CAI's own ranking of the pairs
            teacher = torch.sigmoid(logits[0].detach().float())
            each = F.binary_cross_entropy_with_logits(logits[1].float(), teacher, reduction="none")
            matching = (each * weight).sum() / weight.sum().clamp(min=1e-12)
            first_pass_loss = first_pass_loss + optimization.first_pass_distillation * matching
        total = loss + optimization.first_pass_loss_weight * first_pass_loss
    return logits, loss, total
