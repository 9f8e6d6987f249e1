"""gpu_check.sh --dry: every stage runs on the CPU (tiny shape, a few steps) and ends in the
results: the status table, each check OK, in the order of the stage's plan, then each row's
tables. Minutes each; they launch
the benchmarks and the trainer as processes on ../shared's data. The plans themselves (every
stage's rows fit its budget) are checked in a second, with no data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PROCESS_LIMIT_S, REPO


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def gpu_check_dry(work: Path, **env: str) -> tuple[str, list[list[str]], dict]:
    """`gpu_check.sh --dry` with these environment settings: (its output, the cells of the
    final status table's rows, and per row the cells of its tables' lines)."""
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
    status, tables, name = [], {}, None
    for line in output.split("=== results", 1)[1].splitlines():
        if line == "commands:":
            break
        if re.fullmatch(r"\w+:", line):
            name = line[:-1]
            tables[name] = []
        elif line.startswith("| "):
            (status if name is None else tables[name]).append(cells(line))
    return output, status[2:], tables  # no header


def method_rows(table: list[list[str]], first: str = "method") -> dict[str, list[str]]:
    """The rows of the step timer's tables whose header starts with `first` ("method": its
    timings, "profiled": its profiles), by method (the last row of a method)."""
    width = len(next(row for row in table if row[0] == first))
    methods = ("ours", "ours+compile", "baseline")
    return {row[0]: row for row in table if len(row) == width and row[0] in methods}


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
    output, rows, tables = gpu_check_dry(tmp_path, STAGE=stage)
    # Every planned row ran, in the plan's order, and printed its command first.
    assert [r[0] for r in rows] == PLANS[stage], rows
    for name in PLANS[stage]:
        assert re.search(rf"=== {name} \(limit \d+s\): \S", output), name
        assert f"  {name}: " in output.split("commands:", 1)[1], name  # listed under the table
    # Every check must work; FAIL = a broken interface (see the logs).
    failed = {r[0]: r[1] for r in rows if r[1] != "OK"}
    assert not failed, f"{failed}; logs in {tmp_path}\n{output[-3000:]}"
    # The table is rewritten after every row: what is on disk is the final table.
    assert (tmp_path / "results.md").read_text().strip() in output
    # The step timer's rows: its table, each method's pairs/s and peak memory measured.
    timed = [n for n in PLANS[stage] if n.split("_")[0] in ("attention", "cross", "throughput")]
    for name in timed + [n for n in PLANS[stage] if n.startswith("profile_")]:
        methods = method_rows(tables[name])
        assert "ours" in methods, (name, tables[name])
        for row in methods.values():
            assert float(row[3].split()[0]) > 0 and float(row[-1]) > 0, (name, row)
    # Profiles (the dry run profiles the tiny shape whatever the encoder): per method, its
    # operators per phase, the host's split, the largest category shares, and its top table.
    for name in (n for n in PLANS[stage] if n.startswith("profile_")):
        profiled = method_rows(tables[name], "profiled")
        names = ["ours", "ours+compile"] if name.endswith("_compiled") else ["ours"]
        assert list(profiled) == names, (name, tables[name])
        for row in profiled.values():
            assert re.fullmatch(r"\d+ \(\d+ / \d+ / \d+\)", row[1]), row  # total (phases)
            assert re.fullmatch(r"[\d.]+ \+ [\d.]+ \+ [\d.]+", row[4]), row  # host split
            assert row[5] == "CPU run" and re.match(r"[a-z /]+ \d+%, ", row[-1]), row
        top = [row for row in tables[name] if row[:2] == ["name", "calls"]]
        assert len(top) == len(names), (name, tables[name])  # the top 20, in full
    if stage == "speed":
        # Each attention kernel's row names it (on the CPU all run as SDPA:
        # ppi_dist.models.attention and .cross_attention fall back off CUDA).
        for kernel in ("sdpa", "varlen", "cudnn", "flex"):
            assert method_rows(tables[f"attention_{kernel}"])["ours"][2] == f"{kernel}, sdpa"
        assert method_rows(tables["attention_sdpa"])["baseline"][2] == "eager, sdpa"
        assert method_rows(tables["cross_attention_varlen"])["ours"][2] == "varlen, varlen"
        lora_layers = output.split("\nlora_layers_650m:\n", 1)[1]
        assert "trunk cache:" in lora_layers and "| frozen, embedding cache " in lora_layers
    if stage == "sweep":
        assert "ours+compile" in method_rows(tables["throughput_compile"])
    if stage == "tests":
        # Without CUDA the GPU tests are collected and skipped, and the row says so.
        assert "skipped" in rows[0][-1], rows[0]
        for name in ("trainer_8m_lora", "trainer_8m_frozen"):
            (trainer,) = [row for row in tables[name] if row[0].startswith("8M ")]
            assert float(trainer[1]) > 0, trainer


@pytest.mark.multiprocess
@pytest.mark.real_data
def test_gpu_check_dry_results_stage_runs_both_datasets(tmp_path):
    output, rows, _ = gpu_check_dry(tmp_path, STAGE="results", SEED="4", SEEDS="1")
    statuses = {r[0]: r[1] for r in rows}
    assert statuses == {"yeast_random_frozen_8m": "OK", "bernett_frozen_8m": "OK"}, output
    for name in ("real_yeast", "real_bernett"):  # SEED and SEEDS reached real_data.py
        assert "(1 seed: [4])" in (tmp_path / name / "results.md").read_text()
