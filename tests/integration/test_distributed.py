"""The trainer on several processes: DDP and DeepSpeed ZeRO-2 on two CPU processes (gloo),
a simulated two-node run, the pooled baseline under DDP, and what is refused there."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import PROCESS_LIMIT_S, REPO
from tests.integration.runs import (
    TINY,
    check_distributed_run,
    launch,
    trainer_env,
    zero2_two_processes,
)

pytestmark = pytest.mark.multiprocess


def test_ddp_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    result = launch(
        [*TINY, "--output_dir", str(out), "--epochs", "6"],
        accelerate=["--config_file", "accelerate_configs/cpu_ddp.yaml"],
        env=trainer_env(ACCELERATE_USE_CPU="true"),
    )
    assert "MULTI_CPU" in result.stdout
    check_distributed_run(result, out)


def test_deepspeed_zero2_two_cpu_processes(tmp_path):
    out = tmp_path / "zero2"
    result = launch(
        [*TINY, "--output_dir", str(out), "--epochs", "6"],
        accelerate=zero2_two_processes(),
    )
    assert "DEEPSPEED" in result.stdout
    assert any((out / "checkpoints").glob("step_*/deepspeed"))
    check_distributed_run(result, out)


def test_two_nodes_simulated_on_loopback(tmp_path):
    out = tmp_path / "two_nodes"
    port = str(29500 + os.getpid() % 1000)

    def node(rank: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_machines",
            "2",
            "--machine_rank",
            str(rank),
            "--num_processes",
            "2",
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            port,
            "--mixed_precision",
            "no",
            "ppi_dist/train.py",
            *TINY,
            "--output_dir",
            str(out),
            "--epochs",
            "6",
        ]

    env = trainer_env(ACCELERATE_USE_CPU="true")
    second = subprocess.Popen(
        node(1), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        first = subprocess.run(
            node(0), cwd=REPO, env=env, capture_output=True, text=True, timeout=PROCESS_LIMIT_S
        )
        second_out, _ = second.communicate(timeout=PROCESS_LIMIT_S)
    finally:
        second.kill()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert second.returncode == 0, second_out[-3000:]
    check_distributed_run(first, out)


def test_pooled_baseline_trains_under_ddp(tmp_path):
    """No unused cross-attention: DDP would reject it ("parameters that were not used")."""
    out = tmp_path / "pooled"
    result = launch(
        [*TINY, "--interaction", "pooled", "--max_steps", "3", "--output_dir", str(out)],
        accelerate=["--config_file", "accelerate_configs/cpu_ddp.yaml"],
        env=trainer_env(ACCELERATE_USE_CPU="true"),
    )
    assert "ppi_dist: 2 process(es)" in result.stdout
    assert (out / "model" / "secai_config.json").is_file()


def test_sync_batchnorm_with_one_pair_batches_is_refused_under_ddp(tmp_path):
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        "accelerate_configs/cpu_ddp.yaml",
        "ppi_dist/train.py",
        *TINY,
        "--sync_batchnorm",
        "true",
        "--symmetric",
        "none",
        "--max_steps",
        "2",
        "--output_dir",
        str(tmp_path / "sync"),
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        env=trainer_env(ACCELERATE_USE_CPU="true"),
        capture_output=True,
        text=True,
        timeout=PROCESS_LIMIT_S,
    )
    assert result.returncode != 0
    assert "sync_batchnorm with symmetric: none" in result.stderr
    assert "Traceback" not in result.stderr.split("sync_batchnorm")[0][-200:]


def test_deepspeed_bf16_keeps_fp32_master_weights_and_buffers(tmp_path):
    """DeepSpeed's own bf16 casts the module (bf16 exports, bf16 BatchNorm statistics); under
    torch autocast the weights stay fp32 and only the arithmetic is bf16."""
    out = tmp_path / "zero2_bf16"
    result = launch(
        [*TINY, "--max_steps", "3", "--mixed_precision", "bf16", "--output_dir", str(out)],
        accelerate=zero2_two_processes("bf16"),
    )
    assert "DEEPSPEED, bf16 autocast precision" in result.stdout
    head = load_file(out / "model" / "secai_head.safetensors")
    assert all(t.dtype == torch.float32 for t in head.values() if t.is_floating_point())
    weights = [t for n, t in head.items() if n.endswith(".weight") and t.numel() > 16]
    assert any(not torch.equal(t, t.bfloat16().float()) for t in weights)  # not bf16 copies
    step = max((out / "checkpoints").glob("step_*"))
    trainables = load_file(step / "trainable.safetensors")
    assert trainables["head.norm.running_var"].dtype == torch.float32
    assert not torch.equal(
        trainables["head.norm.running_var"], trainables["head.norm.running_var"].bfloat16().float()
    )
