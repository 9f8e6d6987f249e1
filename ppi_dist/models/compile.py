"""Speed options of the training step: `torch.compile` of the model's hot modules.

`compile_model` compiles in place (`nn.Module.compile`), so the model object, its
parameters and its state-dict keys stay what they were: checkpoints, the exported model
folder, DDP and the optimizer see no difference.
"""

from __future__ import annotations

import os

import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters
from transformers.utils import logging as hf_logging

from ppi_dist.models.encoder import encoder_layers

# The backend when none is given: inductor (generated kernels). Tests and CPU dry runs set
# "aot_eager" (traces the same graphs through dynamo and AOTAutograd, generates no code):
# it checks that the model compiles and differentiates, in seconds instead of a minute.
BACKEND_ENV = "PPI_DIST_COMPILE_BACKEND"


def compile_model(model: nn.Module, backend: str | None = None) -> list[str]:
    """Compile the encoder's transformer layers (unless the encoder is frozen) and the pair
    path of a `SECAI` (`SECAI.pair_path`: cross-attention, pooling, head) in place; returns
    the names of what was compiled.

    Per layer ("regional" compilation): the layers share one code object and, with
    parameters traced as inputs, one graph, so 33 layers cost one compilation, and the
    Python between layers (peft, the packing of `SECAI.encode`) stays eager. `dynamic=True`:
    every batch has its own number of packed rows, row width and pair count; compiling for
    symbolic sizes from the first call avoids a first graph specialised to one batch's shape
    and the recompilations after it (the guard on recompilations would soon fall back to
    eager).

    A frozen encoder is left alone: it runs once per protein to fill the embedding cache,
    where compiling would not pay for itself, and the cache keeps the states an eager model
    (`predict`, `evaluate`) computes.
    """
    backend = backend or default_backend()
    _allow_transformers_warnings()
    _allow_kernel_dispatch_under_checkpointing()
    compiled = []
    if not getattr(model.config, "freeze_encoder", False):
        for index, layer in enumerate(encoder_layers(model.encoder)):
            layer.compile(backend=backend, dynamic=True)
            compiled.append(f"encoder.layer.{index}")
    # The pair path (projections, both attention directions, pooling, head) is one region:
    # dozens of small operators per step, which a GPU pays for in launches.
    model.pair_path = torch.compile(model.pair_path, backend=backend, dynamic=True)
    compiled.append("pair_path")
    return compiled


def default_backend() -> str:
    """$PPI_DIST_COMPILE_BACKEND, else inductor."""
    return os.environ.get(BACKEND_ENV) or "inductor"


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far (a rise while timing = recompiles)."""
    return counters["stats"]["unique_graphs"]


def _allow_transformers_warnings() -> None:
    """Let dynamo skip transformers' `logger.warning_once` instead of breaking the graph.

    With activation checkpointing, each ESM-2 layer warns once that `use_cache` is ignored
    (the config default; an encoder has no cache) before it calls the checkpoint; a logging
    call is a graph break, which would split every layer in two graphs.
    """
    config = torch._dynamo.config
    # Older torch releases name the set ignore_logger_methods; without either, the graph
    # break stays (slower, still correct).
    ignored = getattr(config, "ignore_logging_functions", None)
    if ignored is None:
        ignored = getattr(config, "ignore_logger_methods", None)
    if ignored is not None:
        ignored.add(hf_logging.warning_once)


def _allow_kernel_dispatch_under_checkpointing() -> None:
    """Let dynamo trace a checkpointed ESM-2 layer whole on transformers releases whose
    attention routes its rotary embedding through the `kernels` package.

    That routing sets a module-level variable on entering the attention and restores it on
    leaving; under a checkpoint, dynamo refuses to replay such a write in the recomputation
    and breaks the graph. Nothing needs replaying: the value is restored before the layer
    returns, and the recomputed forward sets it again itself.
    """
    config = torch._dynamo.config
    if hasattr(config, "skip_fwd_side_effects_in_bwd_under_checkpoint"):
        config.skip_fwd_side_effects_in_bwd_under_checkpoint = True
