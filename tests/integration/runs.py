"""Running the trainer for real in tests: a tiny synthetic run, launched as users launch it.

Shared by the integration tests and the GPU tests. Every run uses the synthetic task and a
tiny ESM-2, a few steps long.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ppi_dist.data.pairs import PairSource
from ppi_dist.evaluation.threshold import search_threshold
from ppi_dist.inference.scoring import score_pairs
from ppi_dist.models.saving import from_pretrained
from tests.helpers import PROCESS_LIMIT_S, REPO, wait_until

TINY = [
    "--encoder_shape",
    "tiny",
    "--tiny_hidden",
    "32",
    "--tiny_layers",
    "2",
    "--tiny_heads",
    "2",
    "--cross_attention_heads",
    "4",
    "--head_hidden",
    "32",
    "--synthetic_train_pairs",
    "96",
    "--synthetic_eval_pairs",
    "48",
    "--max_tokens",
    "2048",
    "--report_to",
    "none",
    "--plots",
    "false",
    "--log_every",
    "1",
    "--learning_rate_head",
    "3e-3",
    "--learning_rate_lora",
    "3e-3",
    "--warmup_ratio",
    "0",
    "--lr_schedule",
    "constant_with_warmup",
]

# What makes a resumed run land exactly where the uninterrupted one lands: checkpoints kept,
# and dropout in both the head and LoRA, so the restored random state is exercised.
EXACT_RESUME = [
    *("--checkpoint_every", "4", "--keep_checkpoints", "10"),
    *("--head_dropout", "0.2", "--lora_dropout", "0.1"),
]


def zero2_two_processes(mixed_precision: str = "no") -> list[str]:
    """`accelerate launch` arguments: DeepSpeed ZeRO-2 over two CPU processes."""
    return [
        *("--config_file", "accelerate_configs/zero2.yaml", "--num_processes", "2"),
        *("--mixed_precision", mixed_precision),
    ]


def trainer_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "WORLD_SIZE"))}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


def run_python(
    args: list[str], env: dict | None = None, timeout: int = PROCESS_LIMIT_S
) -> subprocess.CompletedProcess:
    """`python ARGS` in the repository, output captured; the caller checks the outcome."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env or trainer_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def launch(
    args: list[str],
    accelerate: list[str] | None = None,
    env: dict | None = None,
    timeout: int = PROCESS_LIMIT_S,
) -> subprocess.CompletedProcess:
    """`accelerate launch [accelerate args] ppi_dist/train.py args` (or plain python)."""
    launcher = [] if accelerate is None else ["-m", "accelerate.commands.launch", *accelerate]
    result = run_python([*launcher, "ppi_dist/train.py", *args], env, timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def check_predict_reproduces_test_scores(output_dir: Path, scores: Path, timeout: int) -> int:
    """`ppi-dist predict` on a finished run's test pairs gives the trainer's test scores to
    the 6 printed decimals, and the same decisions; returns how many pairs it compared."""
    data = output_dir / "synthetic_data"
    result = run_python(
        [
            *("-m", "ppi_dist.predict", "--model", str(output_dir / "model")),
            *("--pairs", str(data / "test.tsv"), "--fasta", str(data / "sequences.fasta")),
            *("--out", str(scores), "--no_progress"),
        ],
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    def rows(path: Path) -> list[dict[str, str]]:
        header, *lines = path.read_text().splitlines()
        return [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]

    trainer, predicted = rows(output_dir / "predictions_test.tsv"), rows(scores)
    # The same columns (raw_score when calibrated); the trainer's add the first pass's score.
    assert [name for name in trainer[0] if name != "first_pass"] == list(predicted[0])
    pairs = [(r["protein_a"], r["protein_b"]) for r in trainer]
    assert pairs == [(r["protein_a"], r["protein_b"]) for r in predicted]
    # The raw scores to the printed digits; a calibrated probability is the raw score through
    # the calibration, whose slope scales those last-digit differences.
    bounds = {"raw_score": 1e-6, "probability": 1e-4} if "raw_score" in trainer[0] else {}
    for column, bound in (bounds or {"probability": 1e-6}).items():
        both = zip(trainer, predicted, strict=True)
        gaps = [abs(float(a[column]) - float(b[column])) for a, b in both]
        assert max(gaps) <= bound, (column, max(gaps))
    assert [r["predicted"] for r in trainer] == [r["predicted"] for r in predicted]
    return len(trainer)


def losses(output_dir: Path) -> list[float]:
    lines = (output_dir / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["train/loss"] for line in lines]


def check_distributed_run(result: subprocess.CompletedProcess, output_dir: Path) -> None:
    out = result.stdout
    assert "ppi_dist: 2 process(es)" in out
    assert "trainable weights identical on all 2 rank(s)" in out
    curve = losses(output_dir)
    assert np.mean(curve[-3:]) < np.mean(curve[:3]), curve
    check_gathered_threshold(output_dir)


def check_gathered_threshold(output_dir: Path) -> None:
    """The threshold found on predictions gathered from 2 ranks equals the one a single
    process finds on the same model's predictions of the whole validation file."""
    model = from_pretrained(output_dir / "model")
    data = output_dir / "synthetic_data"
    source = PairSource(data / "valid.tsv", data / "sequences.fasta", labeled=True)
    scored = score_pairs(model, list(source.pair_rows()))
    metrics = json.loads((output_dir / "metrics.json").read_text())
    # The run's own objective: the default (mcc) and `search_threshold`'s (weighted) can differ.
    single = search_threshold(
        scored.scores, scored.labels, objective=metrics["threshold_objective"]
    )
    gathered = metrics["validation"]
    assert gathered["n"] == single.n == 48  # every pair once: no padding duplicates
    assert gathered["threshold"] == single.threshold
    assert gathered["score"] == pytest.approx(single.score, abs=1e-9)


def trainables(output_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(output_dir / "checkpoints" / f"step_{step:08d}" / "trainable.safetensors")


def run_until_checkpoint(args: list[str], output_dir: Path, step: int, sig: int) -> tuple[int, str]:
    """Start a single-process run, send `sig` once checkpoint `step` is complete."""
    marker = output_dir / "checkpoints" / f"step_{step:08d}" / "COMPLETE"
    process = subprocess.Popen(
        [sys.executable, "ppi_dist/train.py", *args],
        cwd=REPO,
        env=trainer_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_until(marker.exists, process, f"checkpoint {step}")
    process.send_signal(sig)
    out, _ = process.communicate(timeout=PROCESS_LIMIT_S)
    return process.returncode, out


SIGTERM_IN_THIRD_SCORING = """
import os, signal, sys
import ppi_dist.training.loop as loop
real, calls = loop.score_split, [0]
def interrupted(*args, **kwargs):
    calls[0] += 1
    if calls[0] == 3:  # evaluations at steps 3 and 6, then the final one's validation
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)
loop.score_split = interrupted
from ppi_dist.cli.train import main
sys.exit(main(sys.argv[1:]))
"""


def check_sigterm_in_final_evaluation(tmp_path: Path, extra: list[str], launcher: list[str]):
    """A run pre-empted in its final evaluation exits 0 with its steps checkpointed, and
    `--resume_from latest` only evaluates, to exactly the metrics of an uninterrupted run."""
    common = [*TINY, "--max_steps", "6", "--eval_every", "3", "--checkpoint_every", "3", *extra]
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    def run(command: list[str]) -> subprocess.CompletedProcess:
        result = subprocess.run(
            command,
            cwd=REPO,
            env=trainer_env(),
            capture_output=True,
            text=True,
            timeout=PROCESS_LIMIT_S,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    run([*launcher, "ppi_dist/train.py", *common, "--output_dir", str(straight)])
    stopped = run(
        [sys.executable, "-c", SIGTERM_IN_THIRD_SCORING, *common, "--output_dir", str(killed)]
    )
    assert "stop requested: checkpoint" in stopped.stdout
    assert not (killed / "metrics.json").exists() and not (killed / "model").exists()
    assert (killed / "checkpoints" / f"step_{6:08d}" / "COMPLETE").is_file()
    resumed = run(
        [
            *launcher,
            "ppi_dist/train.py",
            *common,
            "--output_dir",
            str(killed),
            "--resume_from",
            "latest",
        ]
    )
    assert "at step 6" in resumed.stdout
    assert json.loads((killed / "metrics.json").read_text()) == json.loads(
        (straight / "metrics.json").read_text()
    )
