"""The process group and what every rank must agree on: the Accelerator (DDP, DeepSpeed
ZeRO-2, CPU gloo), configuration that would break under several processes, pre-emption
signals, and BatchNorm statistics shared over ranks.
"""

from __future__ import annotations

import os
import signal

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs, broadcast_object_list

from ppi_dist.errors import ConfigError, RunFolderError
from ppi_dist.files import RunLock
from ppi_dist.training.config import TrainConfig
from ppi_dist.training.rundir import claim_output_dir


class StopSignals:
    """Set by SIGTERM/SIGINT (cluster pre-emption, Ctrl-C); acted on at the next step."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handler)

    def _handler(self, signum, _frame) -> None:
        self.requested = True

    def __call__(self) -> bool:
        return self.requested


def resolve_mixed_precision(chosen: str, on_gpu: bool | None = None) -> str:
    """`mixed_precision` as it runs: "auto" is bf16 where the GPU has it, else "no".

    on_gpu: whether the run is on a GPU (default: whether CUDA is available)."""
    if chosen != "auto":
        return chosen
    on_gpu = torch.cuda.is_available() if on_gpu is None else on_gpu
    return "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"


def make_accelerator(config: TrainConfig) -> Accelerator:
    """The run's Accelerator, with what the configuration needs checked against it.

    `mixed_precision: auto` picks bf16 where the GPU has it; CPU process groups use gloo;
    under DeepSpeed, bf16 is torch autocast over fp32 weights (see below).
    """
    optimization, run, secai = config.optimization, config.run, config.model.secai
    mixed_precision = resolve_mixed_precision(optimization.mixed_precision)
    report_to = {"none": None, "all": "all"}.get(run.report_to, [run.report_to])
    # CPU process groups need gloo (DeepSpeed's default, nccl, has no CPU support).
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cpu_group = distributed and not torch.cuda.is_available()
    accelerator = Accelerator(
        gradient_accumulation_steps=optimization.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=report_to,
        project_dir=run.output_dir,
        kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")] if cpu_group else [],
    )
    if distributed and accelerator.num_processes == 1:
        raise ConfigError(
            f"launched as {os.environ['WORLD_SIZE']} processes but Accelerate formed no process "
            f"group (each would train alone); on CPU launch with ACCELERATE_USE_CPU=true"
        )
    if accelerator.num_processes > 1 and secai.sync_batchnorm and secai.symmetric == "none":
        raise ConfigError(
            "sync_batchnorm with symmetric: none can hang: a one-pair batch skips the "
            "statistics collective the other ranks enter; use symmetric: average"
        )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        # Batches are token-budgeted, not a fixed number of pairs; DeepSpeed only needs an
        # integer here for its bookkeeping, since we do not hand it a dataloader.
        ds["train_micro_batch_size_per_gpu"] = 1
        ds["gradient_clipping"] = optimization.max_grad_norm
        if optimization.nonfinite_loss == "skip":
            raise ConfigError(
                "nonfinite_loss: skip is not supported with DeepSpeed (its "
                "backward steps the optimizer); use stop"
            )
        if mixed_precision == "fp16":
            raise ConfigError(
                "fp16 with DeepSpeed is not supported (no loss scaling under "
                "autocast with ZeRO); use mixed_precision: bf16"
            )
        if mixed_precision == "bf16":
            # DeepSpeed's own bf16 casts the module: bf16 exports instead of the fp32 master
            # weights, bf16 BatchNorm statistics and rotary frequencies. torch autocast keeps
            # fp32 weights and buffers and computes in bf16, as without DeepSpeed.
            ds["bf16"], ds["fp16"] = {"enabled": False}, {"enabled": False}
            ds["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    return accelerator


def average_batchnorm_statistics(model: torch.nn.Module, accelerator: Accelerator) -> None:
    """Make BatchNorm running statistics the mean over ranks.

    DDP copies rank 0's buffers at every forward, DeepSpeed leaves each rank its own; either
    way evaluation and checkpoints should see one set, the same on every rank.
    """
    if accelerator.num_processes > 1:
        for buffer in (model.head.norm.running_mean, model.head.norm.running_var):
            buffer.copy_(accelerator.reduce(buffer.detach().clone(), reduction="mean"))


def claim_run_folder(config: TrainConfig, accelerator: Accelerator) -> RunLock:
    """The main process locks `output_dir` for this run (refusing another run's folder, or
    clearing it under --overwrite); a refusal stops every rank with the same message."""
    lock, refusal = None, None
    if accelerator.is_main_process:
        try:
            lock = claim_output_dir(
                config.run.output_dir,
                resuming=bool(config.run.resume_from),
                overwrite=config.run.overwrite,
            )
        except RunFolderError as error:
            refusal = str(error)
    if accelerator.num_processes > 1:
        refusal = broadcast_object_list([refusal])[0]
    if refusal is not None:
        raise RunFolderError(refusal)
    return lock or RunLock(None)


def compute_precision(accelerator: Accelerator) -> str:
    """What the arithmetic runs in: Accelerate reports "no" for DeepSpeed under torch
    autocast (its bf16 flag is off, by design: see `make_accelerator`)."""
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        autocast = accelerator.state.deepspeed_plugin.deepspeed_config.get("torch_autocast", {})
        if autocast.get("enabled"):
            return f"{autocast.get('dtype', 'bfloat16').replace('bfloat16', 'bf16')} autocast"
    return accelerator.mixed_precision
