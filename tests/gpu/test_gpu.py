"""The trainer's GPU paths, a few steps each on CUDA (skipped without a GPU).

Each test launches the real trainer (`accelerate launch ppi_dist/train.py`) on the tiny shape
or the real ESM-2 8M, as a user would, and checks what the CPU suite cannot: devices meeting,
bf16 under DeepSpeed, the SDPA kernels chosen, and `predict` reproducing the trainer's scores.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import PROCESS_LIMIT_S, REPO, SHARED
from tests.integration.runs import (
    TINY,
    check_predict_reproduces_test_scores,
    check_sigterm_in_final_evaluation,
    trainer_env,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
ESM2_8M = SHARED / "models" / "esm2_t6_8M"
LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--num_processes",
    "1",
    "--num_machines",
    "1",
    "--dynamo_backend",
    "no",
]
ZERO2 = ["--config_file", "accelerate_configs/zero2.yaml"]
SHORT = [*TINY, "--max_steps", "4", "--eval_every", "1000", "--mixed_precision", "bf16"]


def train(args: list[str], accelerate: list[str] = (), timeout: int = PROCESS_LIMIT_S) -> str:
    command = [*LAUNCH, *accelerate, "ppi_dist/train.py", *args]
    result = subprocess.run(
        command, cwd=REPO, env=trainer_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert re.search(r"ppi_dist: 1 process\(es\), \w+, bf16( autocast)? precision", result.stdout)
    return result.stdout


def _not_bf16_copies(tensors: dict[str, torch.Tensor]) -> bool:
    """fp32 master weights, not bf16 values widened back: some value is not bf16-exact."""
    weights = [t for n, t in tensors.items() if n.endswith("weight") and t.numel() > 16]
    return all(t.dtype == torch.float32 for t in tensors.values() if t.is_floating_point()) and any(
        not torch.equal(t, t.bfloat16().float()) for t in weights
    )


def test_lora_bf16_on_the_real_8m_encoder(tmp_path):
    if not ESM2_8M.is_dir():
        pytest.skip(f"no ESM-2 8M at {ESM2_8M}")
    out = tmp_path / "lora8m"
    tiny_shape = {"--encoder_shape", "--tiny_hidden", "--tiny_layers", "--tiny_heads"}
    without = [
        a for i, a in enumerate(SHORT) if a not in tiny_shape and SHORT[i - 1] not in tiny_shape
    ]
    args = [
        *without,
        "--encoder",
        str(ESM2_8M),
        "--output_dir",
        str(out),
        "--activation_checkpointing",
        "true",
    ]
    train(args)
    assert _not_bf16_copies(load_file(out / "model" / "secai_head.safetensors"))


def test_frozen_encoder_builds_its_cache_on_the_gpu(tmp_path):
    out = tmp_path / "frozen"
    printed = train([*SHORT, "--freeze_encoder", "true", "--output_dir", str(out)])
    assert "embedding cache:" in printed
    assert (out / "model" / "secai_config.json").is_file()


def test_swap_augmentation_on_the_gpu(tmp_path):
    out = tmp_path / "swap"
    train([*SHORT, "--swap_augmentation", "true", "--symmetric", "none", "--output_dir", str(out)])
    assert (out / "metrics.json").is_file()


@pytest.mark.parametrize("frozen", ["false", "true"])
def test_deepspeed_zero2_bf16_exports_fp32_master_weights(tmp_path, frozen):
    out = tmp_path / f"zero2_{frozen}"
    # Its own rendezvous port: the GPU tests may run side by side (pytest-xdist).
    port = ["--main_process_port", str(29611 + (frozen == "true"))]
    printed = train([*SHORT, "--freeze_encoder", frozen, "--output_dir", str(out)], [*ZERO2, *port])
    assert "DEEPSPEED" in printed
    assert _not_bf16_copies(load_file(out / "model" / "secai_head.safetensors"))
    step = max(p for p in (out / "checkpoints").glob("step_*"))
    trainables = load_file(step / "trainable.safetensors")
    assert trainables["head.norm.running_var"].dtype == torch.float32


def test_predict_reproduces_the_trainers_test_scores(tmp_path):
    out = tmp_path / "run"
    train([*SHORT, "--output_dir", str(out)])
    # The same scoring code on the same model and device: equal to the 6 printed decimals.
    assert (
        check_predict_reproduces_test_scores(out, tmp_path / "scores.tsv", timeout=PROCESS_LIMIT_S)
        > 0
    )


def test_sigterm_in_the_final_evaluation_resumes_to_the_same_metrics(tmp_path):
    check_sigterm_in_final_evaluation(tmp_path, ["--mixed_precision", "bf16"], LAUNCH)


def test_encoder_and_cross_attention_never_fall_back_to_the_math_kernel():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from ppi_dist.data.batching import collate_pairs
    from tests.helpers import random_pairs, tiny_model

    model = tiny_model().cuda()
    batch = {
        k: v.cuda() if torch.is_tensor(v) else v
        for k, v in collate_pairs(random_pairs(8, proteins=10)).items()
    }
    fused = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION]
    # With the math kernel excluded, a shape or mask that needs it raises "No available kernel".
    with sdpa_kernel(fused), torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(**batch)
        logits.float().sum().backward()
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("kernel", ["cudnn", "flex", "varlen"])
def test_packed_kernels_compute_sdpas_encoder_in_bf16(monkeypatch, kernel):
    """On CUDA the packed encoder through cuDNN-first SDPA, FlexAttention (document mask) or
    flash varlen gives SDPA's logits and gradients to bf16 rounding, and took that path."""
    from ppi_dist.data.batching import collate_pairs
    from tests.helpers import random_pairs, spy_on_kernel, tiny_model

    calls = spy_on_kernel(monkeypatch, kernel)
    batch = {
        k: v.cuda() if torch.is_tensor(v) else v
        for k, v in collate_pairs(random_pairs(16, proteins=20, seed=3)).items()
    }
    results = {}
    for choice in ("sdpa", kernel):
        model = tiny_model(seed=1, encoder_attention=choice, lora_dropout=0.0).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(**batch)
        logits.float().sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
        results[choice] = (logits.float().detach(), grads.float())
    assert len(calls) == model.encoder.config.num_hidden_layers
    (sdpa_logits, sdpa_grads), (logits, grads) = results["sdpa"], results[kernel]
    torch.testing.assert_close(logits, sdpa_logits, atol=5e-2, rtol=5e-2)
    assert torch.nn.functional.cosine_similarity(grads, sdpa_grads, dim=0) > 0.99


@pytest.mark.parametrize("kernel", ["flex", "varlen"])
def test_trainer_runs_with_each_encoder_attention(tmp_path, kernel):
    out = tmp_path / kernel
    train(
        [
            *SHORT,
            "--encoder_attention",
            kernel,
            "--output_dir",
            str(out),
            "--activation_checkpointing",
            "true",
        ]
    )
    assert (out / "model" / "secai_config.json").is_file()
