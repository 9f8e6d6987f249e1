"""Accelerate configs and cluster launch scripts: each parses, and builds the command it should."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from accelerate.commands.config.config_args import load_config_from_file

from tests.helpers import REPO

ACCELERATE_CONFIGS = sorted((REPO / "accelerate_configs").glob("*.yaml"))


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
