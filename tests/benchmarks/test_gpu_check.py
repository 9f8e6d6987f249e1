"""gpu_check.sh --dry: every stage runs on the CPU (tiny shape, a few steps) and ends in the
results table, each check OK. Minutes each; they launch the benchmarks and the trainer as
processes on ../shared's data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.multiprocess, pytest.mark.real_data]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def gpu_check_dry(work: Path, **env: str) -> tuple[str, list[list[str]]]:
    """`gpu_check.sh --dry` with these environment settings: (its output, the cells of the
    final results table's rows)."""
    env = {**os.environ, "WORK": str(work), "PYTHON": sys.executable, **env}
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    table = output.split("=== results", 1)[1].splitlines()
    return output, [cells(line) for line in table if line.startswith("| ")][2:]  # no header


@pytest.mark.parametrize("stage", ["tests", "speed"])
def test_gpu_check_dry_prints_a_results_table(tmp_path, stage):
    output, rows = gpu_check_dry(tmp_path, STAGE=stage)
    throughput = [r for r in rows if r[0].startswith("throughput ")]
    assert {"throughput ours", "throughput ours+compile"} <= {r[0] for r in throughput}, output
    for row in throughput:
        assert row[1] == "OK" and float(row[2]) > 0 and float(row[6]) > 0, row
    # Profiles (the dry run profiles the tiny shape whatever the encoder): one row each, with
    # the step's split and category shares, and a top-5 list under the table.
    profiles = [r for r in rows if r[0].startswith("profile tiny")]
    expected = ["profile tiny lora", "profile tiny frozen"]
    expected += ["profile tiny lora", "profile tiny lora compiled"] if stage == "speed" else []
    assert [r[0] for r in profiles] == expected, rows
    for row in profiles:
        assert row[1] == "OK" and float(row[2]) > 0, row
        assert re.search(r"CPU run; [a-z /]+ \d+%, ", row[-1]), row  # the largest shares
        assert re.search(r"step [\d.]+ s; profiled: host [\d.]+ \+ sync wait", row[-1]), row
    assert output.count("top 5 by CPU time per step:") == len(expected)
    statuses = {r[0]: r[1] for r in rows if " " not in r[0]}  # the checks' own rows
    checks = {"profile_650m_lora", "profile_8m_frozen", "throughput_compile"}
    if stage == "tests":
        checks |= {"gpu_tests", "trainer_8m_lora", "trainer_8m_frozen"}
    else:
        checks |= {"profile_8m_lora", "profile_8m_lora_compiled", "throughput_sweep"}
        checks |= {"attention_sdpa", "attention_varlen", "attention_cudnn", "attention_flex"}
        # Each attention kernel's throughput row names it (on the CPU all run as SDPA:
        # ppi_dist.models.attention falls back off CUDA).
        for kernel in ("sdpa", "varlen", "cudnn", "flex"):
            assert any(f"{kernel} attention" in r[-1] for r in throughput), (kernel, throughput)
    assert set(statuses) == checks, rows
    # Every check must work; FAIL = a broken interface (see the logs).
    failed = {name: s for name, s in statuses.items() if s != "OK"}
    assert not failed, f"{failed}; logs in {tmp_path}\n{output[-3000:]}"
    for name in ("profile_650m_lora", "profile_8m_frozen"):  # the full tables stay in $WORK
        log = (tmp_path / f"{name}.log").read_text()
        assert "top 20 by self CPU time, per step:" in log and "| name " in log, log[-2000:]
    if stage == "speed":
        return
    # Without CUDA the GPU tests are collected and skipped, and the row says so.
    gpu_row = next(r for r in rows if r[0] == "gpu_tests")
    assert "skipped" in gpu_row[-1], gpu_row
    trainer = [r for r in rows if r[0].startswith("trainer 8M")]
    assert len(trainer) == 2 and all(float(r[2]) > 0 for r in trainer), trainer


def test_gpu_check_dry_results_stage_runs_both_datasets(tmp_path):
    output, rows = gpu_check_dry(tmp_path, STAGE="results", SEED="4", SEEDS="1")
    statuses = {r[0]: r[1] for r in rows}
    assert statuses == {"yeast_random_frozen_8m": "OK", "bernett_frozen_8m": "OK"}, output
    for name in ("real_yeast", "real_bernett"):  # SEED and SEEDS reached real_data.py
        assert "(1 seed: [4])" in (tmp_path / name / "results.md").read_text()
