"""Recipes, accelerate configs and launch scripts: each parses, wrong values are located."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file

from ppi_dist.config import ConfigError, load_config
from ppi_dist.synthetic import write_synthetic_task
from tests.conftest import REPO

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
ACCELERATE_CONFIGS = sorted((REPO / "accelerate_configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    config = load_config(["--config", str(recipe)])
    raw = yaml.safe_load(recipe.read_text())
    for key, value in raw.items():
        assert getattr(config, key) == value, key
    config.model_config()  # the model part is valid too


def test_flags_override_the_recipe():
    config = load_config(
        [
            "--config",
            str(REPO / "recipes/synthetic_tiny.yaml"),
            "--epochs",
            "7",
            "--lora_target_modules",
            "query",
            "key",
            "value",
        ]
    )
    assert config.epochs == 7 and config.lora_target_modules == ["query", "key", "value"]
    assert config.encoder_shape == "tiny"  # untouched recipe values stay


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "epochs: 2\nlearning_rat_head: 1.0e-3\n",
            "recipe.yaml:2: unknown key 'learning_rat_head'",
        ),
        ("epochs: 2\n\nlora_r: eight\n", "recipe.yaml:3: lora_r should be int, got 'eight'"),
        ("best_metric: f2\n", "recipe.yaml:1: best_metric must be one of"),
        ("epochs: [1\n", "recipe.yaml:2: invalid YAML"),
        ("- epochs\n", "recipe.yaml:1: a recipe is a mapping"),
        ("freeze_encoder: 1\n", "recipe.yaml:1: freeze_encoder should be bool"),
    ],
)
def test_bad_recipe_names_file_and_line(tmp_path, text, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(["--config", str(recipe)])
    assert message in str(error.value)


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rate_head: 1e-3\n")  # YAML 1.1 reads this as a string
    assert load_config(["--config", str(recipe)]).learning_rate_head == 1e-3


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_configs_parse_with_accelerate(path):
    config = load_config_from_file(str(path))
    assert config.num_processes >= 1
    ds_file = (config.deepspeed_config or {}).get("deepspeed_config_file")
    if ds_file:
        ds = json.loads((REPO / ds_file).read_text())
        assert ds["zero_optimization"]["stage"] == 2


def test_every_named_config_exists():
    names = {p.name for p in ACCELERATE_CONFIGS}
    assert {
        "cpu_ddp.yaml",
        "single_gpu.yaml",
        "multi_gpu.yaml",
        "zero2.yaml",
        "zero2_multinode.yaml",
    } <= names


def _dry_run(script: str, env: dict, *args: str) -> list[str]:
    full_env = {**os.environ, "DRY_RUN": "1", **env}
    result = subprocess.run(
        ["bash", script, *args], cwd=REPO, env=full_env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip().splitlines()


def test_slurm_script_builds_one_command_per_node():
    env = {
        "SLURM_NNODES": "3",
        "SLURM_JOB_NODELIST": "gpu017,gpu018,gpu019",
        "GPUS_PER_NODE": "4",
        "PATH": "/usr/bin:/bin",
    }
    lines = _dry_run("launch/slurm_zero2.sbatch", env, "--config", "recipes/bernett_650m.yaml")
    assert len(lines) == 3
    for node, line in enumerate(lines):
        assert line.startswith(
            f"node {node}: accelerate launch --config_file accelerate_configs/zero2_multinode.yaml"
        )
        assert "--num_machines 3 --num_processes 12" in line
        assert "--main_process_ip gpu017 --main_process_port 29500" in line
        assert f"--machine_rank {node} ppi_dist/train.py" in line
        assert line.endswith("--resume_from latest --config recipes/bernett_650m.yaml")


def test_slurm_script_refuses_to_run_outside_slurm():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    result = subprocess.run(
        ["bash", "launch/slurm_zero2.sbatch"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0 and "run under SLURM" in result.stderr


def test_torchrun_script_command():
    env = {"NNODES": "2", "NODE_RANK": "1", "GPUS_PER_NODE": "8", "MAIN_ADDR": "node001"}
    (line,) = _dry_run("launch/torchrun.sh", env, "--config", "recipes/bernett_650m.yaml")
    assert line == (
        "torchrun --nnodes 2 --node_rank 1 --nproc_per_node 8 --master_addr node001 "
        "--master_port 29500 ppi_dist/train.py --config recipes/bernett_650m.yaml"
    )


def _pairs(path: Path) -> list[tuple[str, str, int]]:
    rows = path.read_text().splitlines()[1:]
    return [(a, b, int(y)) for a, b, y in (row.split("\t") for row in rows)]


def test_synthetic_task_is_protein_disjoint_balanced_and_deterministic(tmp_path):
    paths = write_synthetic_task(tmp_path / "one", seed=3, train_pairs=400, eval_pairs=100)
    again = write_synthetic_task(tmp_path / "two", seed=3, train_pairs=400, eval_pairs=100)
    proteins = {}
    for split in ("train", "valid", "test"):
        pairs = _pairs(paths[split])
        assert pairs == _pairs(again[split])
        assert sum(label for *_, label in pairs) == len(pairs) // 2
        assert len(set(pairs)) == len(pairs)
        proteins[split] = {p for a, b, _ in pairs for p in (a, b)}
    assert not proteins["train"] & proteins["valid"]
    assert not proteins["train"] & proteins["test"]
    assert not proteins["valid"] & proteins["test"]
    assert paths["fasta"].read_text() == again["fasta"].read_text()
