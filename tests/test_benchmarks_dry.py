"""Benchmarks: the naive baseline computes the same model, the FLOP model's closed forms, and
dry runs of throughput.py and gpu_check.sh (CPU, tiny shape). No timing is asserted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from benchmarks.flops import EncoderShape, encoder_flops, pair_flops, secai_step_flops
from benchmarks.throughput import baseline_batches, naive_forward, pair_rows_of
from ppi_dist.data import collate_pairs
from ppi_dist.model import SECAI, SECAIConfig, esm2_650m_config
from ppi_dist.speed import BACKEND_ENV
from tests.conftest import REPO, SHARED, random_pairs, tiny_model

BERNETT = SHARED / "data" / "bernett-gold"


def test_naive_baseline_gives_the_models_logits():
    """Two encoder calls + separate padding is the same function as the model's forward."""
    model = tiny_model().eval()
    ours = collate_pairs(random_pairs(6, proteins=5))  # repeated proteins: dedup happens
    rows = pair_rows_of([ours])
    naive = baseline_batches(rows, batch_size=6, seed=None)[0]  # keep the order
    with torch.no_grad():
        expected = model(**ours)
        got = naive_forward(model, naive)
    assert ours["input_ids"].shape[0] < 12
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_matmul_params_match_the_650m_encoders_linear_weights():
    config = SECAIConfig(encoder=None, encoder_config=esm2_650m_config())
    with torch.device("meta"):
        model = SECAI(config)
    layers = model.encoder.get_base_model().encoder.layer
    linear = sum(
        m.weight.numel()
        for name, m in layers.named_modules()
        if isinstance(m, nn.Linear) and "lora_" not in name  # LoRA's A and B are nn.Linear too
    )
    assert EncoderShape.from_config(esm2_650m_config()).matmul_params == linear


def test_flop_model_closed_forms():
    shape = EncoderShape(hidden=4, layers=2, intermediate=16)  # 4d^2 + 2df = 192 per layer
    step = encoder_flops(shape, [3], lora_r=1, checkpointing=True)
    linear, attention, lora = 2 * 384 * 3, 4 * 2 * 9 * 4, 2 * 2 * (2 * 2 * 1 * 4) * 3
    assert step.encoder_forward == linear + attention
    assert step.encoder_backward == linear + 2 * attention  # frozen weights: dX only
    assert step.recompute == linear + attention + lora
    assert step.trainable_forward == lora and step.trainable_backward == 2 * lora
    cross = pair_flops(4, [(3, 5)], head_hidden=2, symmetric=False)
    assert cross.trainable_forward == 2 * 16 * 3 * 8 + 8 * 15 * 4 + 2 * 1 * (8 * 4 * 2 + 2)
    # Dedup: one call on distinct sequences costs less than two calls on the pairs' sides.
    once = secai_step_flops(shape, [[10, 10, 10]], [(10, 10)] * 3)
    twice = secai_step_flops(shape, [[10] * 3, [10] * 3], [(10, 10)] * 3)
    assert once.model < twice.model


def _numbers(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


# Compiled runs in dry mode: dynamo + AOTAutograd without code generation (see test_speed.py).
ENV_AOT_EAGER = {**os.environ, BACKEND_ENV: "aot_eager"}


def test_throughput_dry_run(tmp_path):
    out = tmp_path / "results.jsonl"
    command = [
        sys.executable, "benchmarks/throughput.py", "--encoder", "tiny", "--device", "cpu",
        "--fixed_length", "30", "--num_pairs", "4", "--sort_buffer", "32", "--repeats", "1",
        "--max_tokens", "2048", "--baseline_batch_size", "4", "--json_out", str(out),
        "--pairs", str(BERNETT / "train.tsv"), "--fasta", str(BERNETT / "sequences.fasta"),
        "--compile",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, env=ENV_AOT_EAGER, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"RATIO ours/baseline pairs/s at max_tokens 2048: [\d.]+x", done.stdout)
    assert re.search(r"RATIO compiled/eager pairs/s at max_tokens 2048: [\d.]+x", done.stdout)
    assert "3 modules compiled" in done.stdout, done.stdout
    assert "torch" in done.stdout and "transformers" in done.stdout
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["name"] for r in results] == ["baseline", "ours", "ours+compile"]
    for result in results:
        assert result["pairs"] >= 4 and result["pairs_per_s"] > 0
        assert result["padded_over_real"] >= 1.0 and result["peak_memory_gb"] > 0


@pytest.mark.slow
def test_gpu_check_dry_prints_a_results_table(tmp_path):
    env = {**os.environ, "WORK": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    table = output.split("=== results", 1)[1].splitlines()
    rows = [_numbers(line) for line in table if line.startswith("| ")][2:]  # less header, rule
    throughput = [r for r in rows if r[0].startswith("throughput ")]
    assert throughput, output
    for row in throughput:
        assert row[1] == "OK" and float(row[2]) > 0 and float(row[6]) > 0, row
    statuses = {r[0]: r[1] for r in rows}
    assert {"gpu_tests", "trainer_8m_lora", "trainer_8m_frozen"} <= set(statuses), rows
    # Every check must work; FAIL = a broken interface (see the logs).
    failed = {name: s for name, s in statuses.items() if s != "OK"}
    assert not failed, f"{failed}; logs in {tmp_path}\n{output[-3000:]}"
    # Without CUDA the GPU tests are collected and skipped, and the row says so.
    gpu_row = next(r for r in rows if r[0] == "gpu_tests")
    assert "skipped" in gpu_row[-1], gpu_row
    trainer = [r for r in rows if r[0].startswith("trainer 8M")]
    assert len(trainer) == 2 and all(float(r[2]) > 0 for r in trainer), trainer


def test_real_data_dry_run_with_seeds_and_a_protein_disjoint_validation(tmp_path):
    """Baselines only (--dry), two seeds: mean ± sd rows, and the yeast validation set
    shares no protein with its training set."""
    command = [
        sys.executable, "benchmarks/real_data.py", "--dry", "--datasets", "yeast-c3",
        "--seeds", "2", "--train_pairs", "300", "--valid_pairs", "100", "--test_pairs", "100",
        "--work_dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 seeds: [0, 1]" in done.stdout and "mixed pairs" in done.stdout
    assert re.search(r"\| all positive \| [\d.]+ ± [\d.]+ \|", done.stdout)
    results = json.loads((tmp_path / "results.json").read_text())["yeast-c3"]
    assert len(results["all positive"]["runs"]) == 2
    assert results["all positive"]["mean_sd"]["recall"] == {"mean": 1.0, "sd": 0.0, "n": 2}
    for seed in (0, 1):
        proteins = {}
        for split in ("train", "valid"):
            rows = (tmp_path / f"yeast-c3_seed{seed}_{split}.tsv").read_text().splitlines()[1:]
            proteins[split] = {p for row in rows for p in row.split("\t")[:2]}
        assert proteins["train"] and proteins["valid"]
        assert not proteins["train"] & proteins["valid"]


def test_data_loader_frozen_comparison_dry_run(tmp_path):
    from tests.test_loader import make_source

    source = make_source(tmp_path)
    command = [
        sys.executable, "benchmarks/data_loader.py", "--pairs", source.files[0],
        "--fasta", source.fasta, "--frozen-only", "--workers", "0", "--frozen-pairs", "100",
        "--old-frozen-max-tokens", "4096", "--frozen-max-tokens", "4096,16384",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "torch" in done.stdout
    for path in ("old, encoder budget 4,096", "new, pair-token budget 4,096",
                 "new, pair-token budget 16,384"):  # fmt: skip
        assert re.search(rf"{path}: \d+ pairs/batch; steady .* [\d,]+ pairs/s", done.stdout), path
