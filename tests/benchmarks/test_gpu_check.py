"""gpu_check.sh --dry: every stage runs on the CPU (tiny shape, a few steps) and ends in the
results table, each check OK, in the order of the stage's plan. Minutes each; they launch
the benchmarks and the trainer as processes on ../shared's data. The plans themselves (every
stage's rows fit its budget) are checked in a second, with no data."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PROCESS_LIMIT_S, REPO


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
        timeout=PROCESS_LIMIT_S,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    after = output.split("=== results", 1)[1].splitlines()
    start = next(i for i, line in enumerate(after) if line.startswith("| "))
    table = itertools.takewhile(lambda line: line.startswith("| "), after[start:])
    return output, [cells(line) for line in table][2:]  # no header; what follows is not it


PLANS = {  # each stage's rows, most important first
    "tests": [
        "gpu_tests",
        "profile_650m_lora",
        "profile_8m_frozen",
        "trainer_8m_lora",
        "trainer_8m_frozen",
    ],
    "speed": [
        "attention_sdpa",
        "lora_layers_650m",
        "attention_varlen",
        "attention_cudnn",
        "attention_flex",
        "cross_attention_varlen",
        "profile_8m_lora",
        "profile_8m_frozen",
        "profile_650m_lora",
    ],
    "sweep": [
        "throughput_compile",
        "profile_8m_lora_compiled",
        "throughput_sweep",
        "throughput_no_checkpointing",
    ],
    "results": ["yeast_random_frozen_8m", "bernett_frozen_8m"],
}


def plan_of(output: str) -> tuple[list[tuple[str, int]], int, int, int]:
    """The printed plan: ([(row, GPU limit)], total, set-up, budget)."""
    block = output.split("=== plan", 1)[1].splitlines()[1:]
    rows = [(m[1], int(m[2])) for line in block if (m := re.fullmatch(r"  (\w+) +(\d+)", line))]
    total = re.search(r"total (\d+) \+ set-up (\d+) = \d+ of the budget (\d+)", output)
    return rows, int(total[1]), int(total[2]), int(total[3])


@pytest.mark.parametrize("stage", sorted(PLANS))
def test_every_stage_plan_fits_its_budget_with_margin(stage):
    """PLAN_ONLY=1 (no GPU, no data, no Python): the rows in order and their limits, which
    with the set-up fit the stage's budget with a minute to spare."""
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"],
        cwd=REPO,
        env={**os.environ, "STAGE": stage, "PLAN_ONLY": "1"},
        capture_output=True,
        text=True,
        timeout=PROCESS_LIMIT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows, total, setup, budget = plan_of(done.stdout)
    assert [name for name, _ in rows] == PLANS[stage]
    assert total == sum(limit for _, limit in rows) and all(limit > 0 for _, limit in rows)
    assert total + setup + 20 <= budget <= 555, done.stdout


@pytest.mark.multiprocess
@pytest.mark.real_data
@pytest.mark.parametrize("stage", ["tests", "speed", "sweep"])
def test_gpu_check_dry_prints_a_results_table(tmp_path, stage):
    output, rows = gpu_check_dry(tmp_path, STAGE=stage)
    # Every planned row ran, in the plan's order, and printed its command first.
    statuses = [(r[0], r[1]) for r in rows if " " not in r[0]]  # the checks' own rows
    assert [name for name, _ in statuses] == PLANS[stage], rows
    for name in PLANS[stage]:
        assert re.search(rf"=== {name} \(limit \d+s\): \S", output), name
        assert f"  {name}: " in output.split("commands:", 1)[1], name  # listed under the table
    # Every check must work; FAIL = a broken interface (see the logs).
    failed = {name: s for name, s in statuses if s != "OK"}
    assert not failed, f"{failed}; logs in {tmp_path}\n{output[-3000:]}"
    # The table is rewritten after every row: what is on disk is the final table.
    assert (tmp_path / "results.md").read_text().strip() in output
    steps = [r for r in rows if r[0].split()[0] in ("ours", "ours+compile", "baseline")]
    for row in steps:
        assert row[1] == "OK" and float(row[2]) > 0 and float(row[6]) > 0, row
    # Profiles (the dry run profiles the tiny shape whatever the encoder): each profiled
    # method's row carries the step's split, category shares and operators per step, and a
    # top-5 list follows the table.
    profiled = [r for r in steps if "; profiled: " in r[-1]]
    expected = {
        "tests": ["ours tiny lora", "ours tiny frozen"],
        "speed": ["ours tiny lora", "ours tiny frozen", "ours tiny lora"],
        "sweep": ["ours tiny lora", "ours+compile tiny lora"],
    }[stage]
    assert [r[0] for r in profiled] == expected, rows
    for row in profiled:
        assert re.search(r"CPU run; [a-z /]+ \d+%, ", row[-1]), row  # the largest shares
        assert re.search(r"; profiled: host [\d.]+ \+ sync wait", row[-1]), row
        assert re.search(r"ops/step forward \d+, backward \d+, optimizer \d+", row[-1]), row
    assert output.count("top 5 by CPU time per step:") == len(expected)
    for name in (n for n in PLANS[stage] if n.startswith("profile_")):  # full tables in $WORK
        log = (tmp_path / f"{name}.log").read_text()
        assert "top 20 by self CPU time, per step:" in log and "| name " in log, log[-2000:]
    if stage == "speed":
        # Each attention kernel's row names it (on the CPU all run as SDPA:
        # ppi_dist.models.attention and .cross_attention fall back off CUDA).
        for kernel in ("sdpa", "varlen", "cudnn", "flex"):
            assert any(f"{kernel} attention" in r[-1] for r in steps), (kernel, steps)
        assert any("varlen cross-attention" in r[-1] for r in steps), steps
        assert {"ours tiny lora", "baseline tiny lora"} <= {r[0] for r in steps}
        lora_layers = output.split("\nlora_layers_650m:\n", 1)[1]
        assert "trunk cache:" in lora_layers and "| frozen, embedding cache " in lora_layers
    if stage == "sweep":
        assert "ours+compile tiny lora" in {r[0] for r in steps}, steps
    if stage == "tests":
        # Without CUDA the GPU tests are collected and skipped, and the row says so.
        gpu_row = next(r for r in rows if r[0] == "gpu_tests")
        assert "skipped" in gpu_row[-1], gpu_row
        trainer = [r for r in rows if r[0].startswith("trainer 8M")]
        assert len(trainer) == 2 and all(float(r[2]) > 0 for r in trainer), trainer


@pytest.mark.multiprocess
@pytest.mark.real_data
def test_gpu_check_dry_results_stage_runs_both_datasets(tmp_path):
    output, rows = gpu_check_dry(tmp_path, STAGE="results", SEED="4", SEEDS="1")
    statuses = {r[0]: r[1] for r in rows}
    assert statuses == {"yeast_random_frozen_8m": "OK", "bernett_frozen_8m": "OK"}, output
    for name in ("real_yeast", "real_bernett"):  # SEED and SEEDS reached real_data.py
        assert "(1 seed: [4])" in (tmp_path / name / "results.md").read_text()
