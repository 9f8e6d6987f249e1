"""The trainer with LoRA on the top layer only (`--lora_layers 1` of the tiny encoder's 2):
it trains over the trunk cache, `predict` (the whole encoder) reproduces its test scores,
and DDP and DeepSpeed ZeRO-2 runs resume exactly."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import PROCESS_LIMIT_S
from tests.integration.runs import (
    EXACT_RESUME,
    TINY,
    check_predict_reproduces_test_scores,
    launch,
    trainables,
    trainer_env,
    zero2_two_processes,
)

pytestmark = pytest.mark.multiprocess

# Windows of 32 residues (overlap 8): the synthetic proteins are longer, so training crops
# to one of each protein's cached windows and scoring stitches them.
TOP_LAYER = ["--lora_layers", "1", "--max_residues", "32"]


def test_top_layer_lora_trains_over_the_trunk_and_predict_reproduces_it(tmp_path):
    out = tmp_path / "top"
    result = launch([*TINY, *TOP_LAYER, "--max_steps", "6", "--output_dir", str(out)])
    assert "trunk cache:" in result.stdout and "through 1 layers" in result.stdout
    index = json.loads((out / "trunk_cache" / "index.json").read_text())
    assert index["settings"]["depth"] == 1 and index["settings"]["max_residues"] == 32
    saved = json.loads((out / "model" / "secai_config.json").read_text())
    assert saved["lora_layers"] == 1
    assert "on its last 1 layers" in (out / "model" / "README.md").read_text()
    # The trainer scored through the trunk cache; predict runs the whole encoder.
    assert check_predict_reproduces_test_scores(out, tmp_path / "scores.tsv", PROCESS_LIMIT_S)


DDP = ["--config_file", "accelerate_configs/cpu_ddp.yaml"]


@pytest.mark.parametrize("launcher", ["ddp", "zero2"])
def test_two_process_runs_over_the_trunk_resume_exactly(tmp_path, launcher):
    """Stopped at step 8 and resumed, a run lands where the uninterrupted one lands."""
    accelerate = DDP if launcher == "ddp" else zero2_two_processes()
    env = trainer_env(ACCELERATE_USE_CPU="true") if launcher == "ddp" else None
    common = [*TINY, *TOP_LAYER, *EXACT_RESUME, "--eval_every", "1000"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    launch([*common, "--max_steps", "12", "--output_dir", str(straight)], accelerate, env)
    launch([*common, "--max_steps", "8", "--output_dir", str(stopped)], accelerate, env)
    resumed = launch(
        [*common, "--max_steps", "12", "--output_dir", str(stopped), "--resume_from", "latest"],
        accelerate,
        env,
    )
    assert "ppi_dist: 2 process(es)" in resumed.stdout and "at step 8" in resumed.stdout
    expected, got = trainables(straight, 12), trainables(stopped, 12)
    assert expected.keys() == got.keys() and any("lora_" in name for name in expected)
    # A step moves these weights by ~1e-3: a resume that lost the Adam moments, the data
    # position or the crops would differ by that much.
    for name in expected:
        assert torch.allclose(expected[name], got[name], atol=1e-6, rtol=0), name
