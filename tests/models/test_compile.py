"""`compile_model`: a compiled SE-CAI computes the eager model's logits and trains.

Backend: "aot_eager" unless PPI_DIST_COMPILE_BACKEND says otherwise. It runs dynamo and
AOTAutograd (graph capture, the dynamic shapes, the backward) but generates no code: what
these tests check - whole graphs, no graph break, the eager logits, a training step that
updates every trainable weight - does not depend on the code generator, and inductor's
CPU compilation takes over a minute on a loaded 2-core box with a cold cache (seen: 73 s
for the LoRA test, 20 s warm; the logits then differed by 3e-7). For inductor:
`PPI_DIST_COMPILE_BACKEND=inductor pytest tests/models/test_compile.py`.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch._dynamo
from accelerate import Accelerator
from torch._dynamo.utils import counters

from ppi_dist.data.batching import collate_pairs
from ppi_dist.models.compile import BACKEND_ENV, compile_model
from ppi_dist.models.shapes import tiny_esm2_config
from ppi_dist.training.config import OptimizationConfig, TrainConfig
from ppi_dist.training.recipes import load_config
from ppi_dist.training.step import make_optimizer, train_step
from tests.helpers import random_pairs, tiny_model

BACKEND = os.environ.get(BACKEND_ENV, "aot_eager")
# float32 on the CPU; seen: 3e-7 (inductor reorders sums), 0 (aot_eager).
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _batches(count: int) -> list[dict]:
    # Different pair counts and lengths: the dynamic-shape graph serves them all.
    batches = [collate_pairs(random_pairs(5 + i, seed=i, proteins=6 + i)) for i in range(count)]
    for batch in batches:  # every pair real, as the batchers mark them
        batch["weight"] = torch.ones(len(batch["labels"]))
    return batches


def _check_compiled_matches_and_trains(**overrides) -> list[str]:
    eager, model = tiny_model(**overrides), tiny_model(**overrides)
    keys = list(model.state_dict())
    compiled = compile_model(model, backend=BACKEND)
    assert list(model.state_dict()) == keys  # in place: checkpoints keep their keys
    batches = _batches(3)
    with torch.no_grad():  # train mode (checkpointing is active), no dropout in the tiny model
        for batch in batches[:2]:
            torch.testing.assert_close(model(**batch), eager(**batch), **TOLERANCE)

    config = OptimizationConfig(learning_rate_head=1e-2, learning_rate_lora=1e-2)
    optimizer = make_optimizer(model, config)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    accelerator = Accelerator(cpu=True)
    for batch in batches:
        result = train_step(model, batch, optimizer, accelerator, config, stop_requested=False)
        assert not result.skipped and result.pairs > 0
    changed = {n for n, p in model.named_parameters() if n in before and not p.equal(before[n])}
    assert changed == set(before), sorted(set(before) - changed)
    assert not counters["graph_break"], dict(counters["graph_break"])
    return compiled


def test_compiled_lora_model_gives_the_eager_logits_and_trains():
    compiled = _check_compiled_matches_and_trains(encoder_config=tiny_esm2_config(layers=6))
    assert compiled == [f"encoder.layer.{i}" for i in range(6)] + ["pair_path"]
    # The layers share their graphs (parameters are inputs): the count does not grow with
    # depth (33 layers must stay under dynamo's recompilation limit of 8). The pair path adds
    # one graph per mode, and one more when the first batch happens to hold as many pairs
    # as proteins (dynamic shapes give equal sizes one symbol until a batch tells them apart).
    assert counters["stats"]["unique_graphs"] < 7, dict(counters["stats"])


def test_compile_with_activation_checkpointing_captures_whole_layers():
    _check_compiled_matches_and_trains(activation_checkpointing=True)
    # One graph for every layer (shared code, parameters as inputs) and one for the pair
    # path; training mode and no_grad are separate graphs, and the pair path's first batch
    # may add one (above). No recompilation per layer or batch.
    assert counters["stats"]["unique_graphs"] <= 5, dict(counters["stats"])


def test_compile_with_a_frozen_encoder_compiles_the_pair_path_only():
    compiled = _check_compiled_matches_and_trains(freeze_encoder=True)
    assert compiled == ["pair_path"]


def test_compile_is_a_config_flag():
    assert TrainConfig().model.compile is False
    assert load_config(["--compile", "true"]).model.compile is True
