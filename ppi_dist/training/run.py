"""A training run's state (`Run`) and `setup`, everything before its first step.

`setup` reads in order, as the loop (`training.loop`) then runs: the sources and splits,
SE-CAI, what the encoder's work is read from instead of run (a frozen encoder's embedding
cache, or the trunk cache below LoRA on the top layers), this rank's batches, and the
optimiser, schedule and `accelerator.prepare` (`training.step.prepare_training`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.optim.lr_scheduler import LRScheduler
from tqdm.auto import tqdm

from ppi_dist.data.loader import BatchLoader
from ppi_dist.data.pairs import Pair, PairSource
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.trunk import TrunkCache
from ppi_dist.models.compile import compile_model
from ppi_dist.models.parameters import count_parameters
from ppi_dist.models.secai import SECAI
from ppi_dist.training.checkpoint import Best
from ppi_dist.training.config import TrainConfig
from ppi_dist.training.distributed import StopSignals, compute_precision
from ppi_dist.training.flops import ModelShape, batch_stats
from ppi_dist.training.frozen import open_training_cache
from ppi_dist.training.machine import PeakMemory, machine_report
from ppi_dist.training.profiling import StepProfiler
from ppi_dist.training.sources import make_sources, training_batches
from ppi_dist.training.step import BatchPreparation, StepResult, prepare_training
from ppi_dist.training.trunk import open_trunk_cache


@dataclass
class LogWindow:
    """The steps since the last log line: their loss (x pairs), pairs, model FLOPs (this
    rank's, by `training.flops`), and when they began."""

    loss: float = 0.0
    pairs: float = 0.0
    model_flops: float = 0.0
    start: float = field(default_factory=time.perf_counter)

    def add(self, result: StepResult, model_flops: float) -> None:
        self.loss += result.loss_sum
        self.pairs += result.pairs
        self.model_flops += model_flops

    def logs(self, lr_head: float, peak_tflops: float | None) -> dict[str, float]:
        seconds = time.perf_counter() - self.start
        tflops = self.model_flops / seconds / 1e12
        logs = {
            "train/loss": self.loss / max(self.pairs, 1),
            "train/pairs_per_s": self.pairs / seconds,
            "train/model_tflops_per_s": tflops,
            "train/lr_head": lr_head,
        }
        if peak_tflops:
            logs["train/mfu"] = tflops / peak_tflops
        return logs


@dataclass
class Run:
    """A training run from `setup` to `finish`: what it trains, on what, and where it is."""

    config: TrainConfig
    accelerator: Accelerator
    sources: dict[str, PairSource]
    splits: dict[str, list[Pair]]  # validation (and test) pairs, read once for the whole run
    unwrapped: SECAI  # the model itself
    model: torch.nn.Module  # as the step runs it: DDP, a DeepSpeed engine, or `unwrapped`
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    batches: BatchLoader  # this rank's training batches
    prepare: BatchPreparation  # a loader's batch -> the step's (cache, trunk, swap)
    steps_per_epoch: int
    total_steps: int
    best: Best
    step: int = 0
    epoch: int = 0
    evaluated_step: int = 0
    flop_shape: ModelShape | None = None  # what `batch_flops` counts
    memory: PeakMemory | None = None  # this rank's peak since the last log line
    profiler: StepProfiler | None = None  # --profile_steps: from the first step on
    window: LogWindow = field(default_factory=LogWindow)
    progress: tqdm | None = None
    stop: StopSignals | None = None  # from the first step on: SIGTERM/SIGINT checkpoint

    @property
    def output_dir(self) -> Path:
        return Path(self.config.run.output_dir)

    @property
    def checkpoints(self) -> Path:
        return self.output_dir / "checkpoints"

    @property
    def spill(self) -> Path:
        """Where scoring puts states that do not fit its memory limit."""
        return self.output_dir / "scoring_cache"

    @property
    def cache(self) -> EmbeddingCache | None:
        """Frozen encoder: the embedding cache of every protein of every split."""
        return self.prepare.cache

    def batch_flops(self, batch: dict) -> float:
        """Model FLOPs (forward + backward) of training on a loader's batch."""
        lengths = torch.as_tensor(self.cache.index.lengths) if self.cache is not None else None
        return batch_stats(self.flop_shape, batch, lengths).flops.model

    def due(self, every: int | None) -> bool:
        """At a multiple of `every` steps (None: of an epoch's), or at the last step."""
        return self.step % (every or self.steps_per_epoch) == 0 or self.step == self.total_steps


def setup(config: TrainConfig, accelerator: Accelerator, split: dict | None = None) -> Run:
    """Everything before the first step: data, model, encoder states, batches, optimiser."""
    optimization = config.optimization
    _print_settings(config, accelerator)
    set_seed(optimization.seed)
    sources = make_sources(config, accelerator, split)
    # Read and validated once per run: every evaluation and the final scoring reuse them.
    splits = {key: list(sources[key].pair_rows()) for key in ("valid", "test") if key in sources}
    model = _setup_model(config, accelerator)
    every_split = [sources["train"].pair_rows(), *splits.values()]
    cache, trunk = setup_encoder_states(config, model, every_split, accelerator)
    batches = training_batches(
        sources["train"],
        config,
        accelerator,
        cache.index if cache is not None else None,
        trunk.index if trunk is not None else None,
    )
    micro_batches = batches.count_batches()
    steps_per_epoch = max(micro_batches // optimization.gradient_accumulation_steps, 1)
    total_steps = optimization.max_steps or optimization.epochs * steps_per_epoch
    prepared = prepare_training(model, optimization, accelerator, total_steps)
    unwrapped: SECAI = accelerator.unwrap_model(prepared.model)
    trainable, total = count_parameters(unwrapped)
    accelerator.print(
        f"model: {trainable:,} trainable of {total:,} parameters "
        f"({100 * trainable / total:.3f}%); {steps_per_epoch} steps/epoch, {total_steps} steps"
    )
    seed = optimization.seed + accelerator.process_index
    swap = torch.Generator().manual_seed(seed) if optimization.swap_augmentation else None
    return Run(
        config=config,
        accelerator=accelerator,
        sources=sources,
        splits=splits,
        unwrapped=unwrapped,
        model=prepared.model,
        optimizer=prepared.optimizer,
        scheduler=prepared.scheduler,
        batches=batches,
        prepare=BatchPreparation(accelerator.device, cache, trunk, swap),
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        best=Best(config.evaluation.best_metric),
        flop_shape=ModelShape.of(unwrapped.config, unwrapped.encoder.config),
        memory=PeakMemory(accelerator.device),
    )


def _print_settings(config: TrainConfig, accelerator: Accelerator) -> None:
    accelerator.print(
        f"ppi_dist: {accelerator.num_processes} process(es), "
        f"{accelerator.distributed_type.value}, {compute_precision(accelerator)} precision"
    )
    accelerator.print("\n".join(machine_report(accelerator.device)))
    accelerator.print("config: " + json.dumps(config.to_dict(), default=str))
    secai = config.model.secai
    accelerator.print(
        f"encoding: training {secai.windowing('train').describe(training=True)}; "
        f"scoring {secai.windowing('scoring').describe()}"
    )


def _setup_model(config: TrainConfig, accelerator: Accelerator) -> SECAI:
    model = SECAI(config.model.secai_config()).to(accelerator.device)  # before any encoding
    if config.model.compile:  # in place: same parameters and state-dict keys
        compile_model(model)
    return model


def setup_encoder_states(
    config: TrainConfig,
    model: SECAI,
    every_split: list[Iterable[Pair]],
    accelerator: Accelerator,
) -> tuple[EmbeddingCache | None, TrunkCache | None]:
    """What the encoder's work is read from instead of run: a frozen encoder's embedding
    cache, or with LoRA on the top layers the trunk cache of the layers below (also the
    model's `trunk`, which scoring's embedding cache starts from). (None, None): LoRA on
    every layer, the whole encoder runs each step."""
    data, output_dir = config.data, Path(config.run.output_dir)
    windowing = config.model.secai.windowing("scoring")
    if config.model.secai.freeze_encoder:  # the encoder never changes: encode once
        directory = data.embedding_cache or output_dir / "embedding_cache"
        return open_training_cache(model, every_split, directory, accelerator, windowing), None
    if model.trunk_depth > 0:  # LoRA on the top layers: the layers below run once
        directory = data.trunk_cache or output_dir / "trunk_cache"
        dtype = data.trunk_cache_dtype
        trunk = open_trunk_cache(model, every_split, directory, accelerator, windowing, dtype)
        model.trunk = trunk
        return None, trunk
    return None, None
