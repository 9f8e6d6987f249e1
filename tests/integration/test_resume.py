"""Resuming: exactly after SIGKILL, from a SIGTERM checkpoint, under ZeRO-2, and from a stop
in the final evaluation."""

from __future__ import annotations

import signal
import sys

import pytest
import torch

from tests.integration.runs import (
    EXACT_RESUME,
    TINY,
    check_sigterm_in_final_evaluation,
    launch,
    run_until_checkpoint,
    trainables,
    zero2_two_processes,
)

pytestmark = pytest.mark.multiprocess


def test_exact_resume_after_sigkill(tmp_path):
    args = [*TINY, *EXACT_RESUME, "--max_steps", "24", "--eval_every", "8"]
    straight = tmp_path / "straight"
    launch([*args, "--output_dir", str(straight)])

    killed = tmp_path / "killed"
    returncode, _ = run_until_checkpoint(
        [*args, "--output_dir", str(killed)], killed, 4, signal.SIGKILL
    )
    assert returncode == -signal.SIGKILL
    assert not (killed / "checkpoints" / f"step_{24:08d}").exists()
    result = launch([*args, "--output_dir", str(killed), "--resume_from", "latest"])
    assert "resumed from" in result.stdout

    # fp32 on CPU, same data order, crops, dropout masks and optimizer state: bitwise equal.
    expected, resumed = trainables(straight, 24), trainables(killed, 24)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name


def test_sigterm_writes_checkpoint_and_exits_zero(tmp_path):
    out = tmp_path / "preempted"
    common = [*TINY, "--checkpoint_every", "2", "--eval_every", "1000", "--output_dir", str(out)]
    returncode, printed = run_until_checkpoint(
        [*common, "--max_steps", "400"], out, 2, signal.SIGTERM
    )
    assert returncode == 0, printed[-3000:]
    assert "stop requested: checkpoint" in printed
    stopped_at = max(int(p.name.split("_")[1]) for p in (out / "checkpoints").glob("step_*"))
    assert 2 <= stopped_at < 400
    result = launch([*common, "--max_steps", str(stopped_at + 2), "--resume_from", "latest"])
    assert f"at step {stopped_at}" in result.stdout
    assert (out / "model" / "secai_config.json").is_file()


def test_deepspeed_zero2_resume_continues_the_run(tmp_path):
    """Stop a ZeRO-2 run at a checkpoint, resume it from DeepSpeed's own optimizer state and
    our trainables, and land where the uninterrupted run lands."""
    zero2 = zero2_two_processes()
    common = [*TINY, *EXACT_RESUME, "--eval_every", "1000"]
    straight = tmp_path / "straight"
    launch([*common, "--max_steps", "12", "--output_dir", str(straight)], accelerate=zero2)

    stopped = tmp_path / "stopped"
    launch([*common, "--max_steps", "8", "--output_dir", str(stopped)], accelerate=zero2)
    assert (stopped / "checkpoints" / f"step_{8:08d}" / "deepspeed").is_dir()
    result = launch(
        [*common, "--max_steps", "12", "--output_dir", str(stopped), "--resume_from", "latest"],
        accelerate=zero2,
    )
    assert "resumed from" in result.stdout and "at step 8" in result.stdout
    expected, resumed = trainables(straight, 12), trainables(stopped, 12)
    assert expected.keys() == resumed.keys()
    # Constant learning rate, so stopping at 8 changes no schedule. A step of this tiny run
    # moves weights by ~1e-3; a resume that lost the Adam moments or the data position
    # would differ by that much, far above the tolerance.
    for name in expected:
        assert torch.allclose(expected[name], resumed[name], atol=1e-6, rtol=0), name


def test_sigterm_in_the_final_evaluation_resumes_to_the_same_metrics(tmp_path):
    check_sigterm_in_final_evaluation(tmp_path, [], [sys.executable])
