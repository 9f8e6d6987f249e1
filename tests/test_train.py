"""The trainer, launched for real: DDP and DeepSpeed ZeRO-2 on two CPU processes, a simulated
two-node run, exact resume after SIGKILL, SIGTERM checkpointing, non-finite losses.

Each run uses the synthetic task and a tiny ESM-2, a few steps long.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ppi_dist.data import PairSource, rows_and_sequences
from ppi_dist.metrics import search_threshold
from ppi_dist.model import SECAI
from ppi_dist.scoring import score_rows
from tests.conftest import REPO

pytestmark = pytest.mark.slow

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


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "WORLD_SIZE"))}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


def launch(
    args: list[str],
    accelerate: list[str] | None = None,
    env: dict | None = None,
    timeout: int = 300,
) -> subprocess.CompletedProcess:
    """`accelerate launch [accelerate args] ppi_dist/train.py args` (or plain python)."""
    if accelerate is None:
        command = [sys.executable, "ppi_dist/train.py", *args]
    else:
        launcher = [sys.executable, "-m", "accelerate.commands.launch"]
        command = [*launcher, *accelerate, "ppi_dist/train.py", *args]
    result = subprocess.run(
        command, cwd=REPO, env=env or _env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


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
    model = SECAI.from_pretrained(output_dir / "model")
    data = output_dir / "synthetic_data"
    source = PairSource(data / "valid.tsv", data / "sequences.fasta", labeled=True)
    scored = score_rows(model, *rows_and_sequences(source.pair_rows()))
    single = search_threshold(scored.scores, scored.labels)
    gathered = json.loads((output_dir / "metrics.json").read_text())["validation"]
    assert gathered["n"] == single.n == 48  # every pair once: no padding duplicates
    assert gathered["threshold"] == single.threshold
    assert gathered["score"] == pytest.approx(single.score, abs=1e-9)


def test_ddp_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    result = launch(
        [*TINY, "--output_dir", str(out), "--epochs", "6"],
        accelerate=["--config_file", "accelerate_configs/cpu_ddp.yaml"],
        env=_env(ACCELERATE_USE_CPU="true"),
    )
    assert "MULTI_CPU" in result.stdout
    check_distributed_run(result, out)


def test_deepspeed_zero2_two_cpu_processes(tmp_path):
    out = tmp_path / "zero2"
    result = launch(
        [*TINY, "--output_dir", str(out), "--epochs", "6"],
        accelerate=[
            "--config_file",
            "accelerate_configs/zero2.yaml",
            "--num_processes",
            "2",
            "--mixed_precision",
            "no",
        ],
    )
    assert "DEEPSPEED" in result.stdout
    assert (out / "checkpoints").glob("step_*/deepspeed")
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

    env = _env(ACCELERATE_USE_CPU="true")
    second = subprocess.Popen(
        node(1), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        first = subprocess.run(
            node(0), cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        second_out, _ = second.communicate(timeout=60)
    finally:
        second.kill()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert second.returncode == 0, second_out[-3000:]
    check_distributed_run(first, out)


def _trainables(output_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(output_dir / "checkpoints" / f"step_{step:08d}" / "trainable.safetensors")


def _run_until_checkpoint(args: list[str], output_dir: Path, step: int, sig: int) -> int:
    """Start a single-process run, send `sig` once checkpoint `step` is complete."""
    marker = output_dir / "checkpoints" / f"step_{step:08d}" / "COMPLETE"
    process = subprocess.Popen(
        [sys.executable, "ppi_dist/train.py", *args],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "checkpoint never appeared"
        time.sleep(0.02)
    process.send_signal(sig)
    out, _ = process.communicate(timeout=120)
    return process.returncode, out


def test_exact_resume_after_sigkill(tmp_path):
    args = [
        *TINY,
        "--max_steps",
        "24",
        "--checkpoint_every",
        "4",
        "--eval_every",
        "8",
        "--keep_checkpoints",
        "10",
        "--head_dropout",
        "0.2",
        "--lora_dropout",
        "0.1",
    ]
    straight = tmp_path / "straight"
    launch([*args, "--output_dir", str(straight)])

    killed = tmp_path / "killed"
    returncode, _ = _run_until_checkpoint(
        [*args, "--output_dir", str(killed)], killed, 4, signal.SIGKILL
    )
    assert returncode == -signal.SIGKILL
    assert not (killed / "checkpoints" / f"step_{24:08d}").exists()
    result = launch([*args, "--output_dir", str(killed), "--resume_from", "latest"])
    assert "resumed from" in result.stdout

    # fp32 on CPU, same data order, crops, dropout masks and optimizer state: bitwise equal.
    expected, resumed = _trainables(straight, 24), _trainables(killed, 24)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name


def test_sigterm_writes_checkpoint_and_exits_zero(tmp_path):
    out = tmp_path / "preempted"
    common = [*TINY, "--checkpoint_every", "2", "--eval_every", "1000", "--output_dir", str(out)]
    returncode, printed = _run_until_checkpoint(
        [*common, "--max_steps", "400"], out, 2, signal.SIGTERM
    )
    assert returncode == 0, printed[-3000:]
    assert "stop requested: checkpoint" in printed
    stopped_at = max(int(p.name.split("_")[1]) for p in (out / "checkpoints").glob("step_*"))
    assert 2 <= stopped_at < 400
    result = launch([*common, "--max_steps", str(stopped_at + 2), "--resume_from", "latest"])
    assert f"at step {stopped_at}" in result.stdout
    assert (out / "model" / "secai_config.json").is_file()


NAN_AT_STEP_3 = """
import sys, torch
import ppi_dist.train as train
real_loss, calls = train.focal_loss, [0]
def poisoned(*args, **kwargs):
    calls[0] += 1
    loss = real_loss(*args, **kwargs)
    return loss * float("nan") if calls[0] == 3 else loss
train.focal_loss = poisoned
sys.exit(train.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_nonfinite_loss(tmp_path, mode):
    out = tmp_path / mode
    args = [
        *TINY,
        "--max_steps",
        "5",
        "--checkpoint_every",
        "1",
        "--eval_every",
        "1000",
        "--output_dir",
        str(out),
        "--nonfinite_loss",
        mode,
    ]
    result = subprocess.run(
        [sys.executable, "-c", NAN_AT_STEP_3, *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    saved = sorted(p.name for p in (out / "checkpoints").glob("step_*"))
    if mode == "stop":
        assert result.returncode == 2  # a user-facing error: one line, exit 2
        assert "error: step 3 (epoch 0): non-finite loss" in result.stderr
        assert "Traceback" not in result.stderr
        assert saved == ["step_00000001", "step_00000002"]  # nothing after the NaN
    else:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "step 3: non-finite loss, step skipped" in result.stdout
        assert saved[-1] == "step_00000005"
        for path in (out / "checkpoints").glob("step_*/trainable.safetensors"):
            assert all(torch.isfinite(t).all() for t in load_file(path).values())


def test_frozen_encoder_trains_head_only_from_the_embedding_cache(tmp_path):
    out = tmp_path / "frozen"
    args = [*TINY, "--freeze_encoder", "true", "--max_steps", "3", "--output_dir", str(out)]
    result = launch(args)
    assert "embedding cache:" in result.stdout
    assert (out / "embedding_cache").is_dir()
    model = SECAI.from_pretrained(out / "model")
    assert not [n for n, _ in model.named_parameters() if "lora_" in n]
    assert not (out / "model" / "adapter").exists()
    trainables = _trainables(out, 3)
    assert trainables and all(n.startswith(("cross_attention.", "head.")) for n in trainables)


TOKEN_BATCHES_FOR_FROZEN = """
import sys
import ppi_dist.train as train
real = train.PairBatches
def token_batches(*args, cache_index, **kwargs):  # the frozen input path before cache rows
    print("token batches for a cache of", len(cache_index.row), "proteins")
    return real(*args, **kwargs)
train.PairBatches = token_batches
sys.exit(train.main(sys.argv[1:]))
"""


def test_frozen_cache_row_batches_train_exactly_as_token_batches(tmp_path):
    # Fixed-size batches hold the same pairs either way, so the steps must be identical.
    common = [
        *TINY,
        "--freeze_encoder",
        "true",
        "--batch_size",
        "8",
        "--max_steps",
        "4",
        "--checkpoint_every",
        "4",
        "--eval_every",
        "1000",
    ]
    rows, tokens = tmp_path / "rows", tmp_path / "tokens"
    launch([*common, "--output_dir", str(rows)])
    result = subprocess.run(
        [sys.executable, "-c", TOKEN_BATCHES_FOR_FROZEN, *common, "--output_dir", str(tokens)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "token batches for a cache of" in result.stdout
    assert len(losses(rows)) == 4 and losses(rows) == losses(tokens)
    expected, got = _trainables(tokens, 4), _trainables(rows, 4)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_deepspeed_zero2_resume_continues_the_run(tmp_path):
    """Stop a ZeRO-2 run at a checkpoint, resume it from DeepSpeed's own optimizer state and
    our trainables, and land where the uninterrupted run lands."""
    zero2 = [
        "--config_file",
        "accelerate_configs/zero2.yaml",
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
    ]
    common = [
        *TINY,
        "--checkpoint_every",
        "4",
        "--eval_every",
        "1000",
        "--keep_checkpoints",
        "10",
        "--head_dropout",
        "0.2",
        "--lora_dropout",
        "0.1",
    ]
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
    expected, resumed = _trainables(straight, 12), _trainables(stopped, 12)
    assert expected.keys() == resumed.keys()
    # Constant learning rate, so stopping at 8 changes no schedule. A step of this tiny run
    # moves weights by ~1e-3; a resume that lost the Adam moments or the data position
    # would differ by that much, far above the tolerance.
    for name in expected:
        assert torch.allclose(expected[name], resumed[name], atol=1e-6, rtol=0), name


SIGTERM_IN_THIRD_SCORING = """
import os, signal, sys
import ppi_dist.train as train
real, calls = train.score_split, [0]
def interrupted(*args, **kwargs):
    calls[0] += 1
    if calls[0] == 3:  # evaluations at steps 3 and 6, then the final one's validation
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)
train.score_split = interrupted
sys.exit(train.main(sys.argv[1:]))
"""


def check_sigterm_in_final_evaluation(tmp_path: Path, extra: list[str], launcher: list[str]):
    """A run pre-empted in its final evaluation exits 0 with its steps checkpointed, and
    `--resume_from latest` only evaluates, to exactly the metrics of an uninterrupted run."""
    common = [*TINY, "--max_steps", "6", "--eval_every", "3", "--checkpoint_every", "3", *extra]
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    def run(command: list[str]) -> subprocess.CompletedProcess:
        result = subprocess.run(
            command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300
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


def test_sigterm_in_the_final_evaluation_resumes_to_the_same_metrics(tmp_path):
    check_sigterm_in_final_evaluation(tmp_path, [], [sys.executable])


def test_predict_reproduces_the_trainers_test_scores(tmp_path):
    """The threshold is chosen on the scores `predict` computes: same model, same pairs, the
    same numbers (both go through `scoring`; 1e-6 is the rounding of the printed 6 decimals)."""
    out = tmp_path / "run"
    launch([*TINY, "--max_steps", "4", "--output_dir", str(out)])
    data, scores = out / "synthetic_data", tmp_path / "scores.tsv"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ppi_dist.predict",
            "--model",
            str(out / "model"),
            "--pairs",
            str(data / "test.tsv"),
            "--fasta",
            str(data / "sequences.fasta"),
            "--out",
            str(scores),
            "--no_progress",
        ],
        cwd=REPO,
        env=_env(),
        check=True,
        timeout=300,
    )

    def rows(path: Path) -> list[list[str]]:
        return [line.split("\t") for line in path.read_text().splitlines()[1:]]

    trainer, predicted = rows(out / "predictions_test.tsv"), rows(scores)
    assert len(trainer) == 48 and [r[:2] for r in trainer] == [r[:2] for r in predicted]
    gaps = [abs(float(a[2]) - float(b[2])) for a, b in zip(trainer, predicted, strict=True)]
    assert max(gaps) <= 1e-6
    assert [r[3] for r in trainer] == [r[3] for r in predicted]  # same decisions
    # `evaluate` on the run's test file reproduces the trainer's test metrics exactly.
    from ppi_dist.evaluate import evaluate
    from ppi_dist.evaluate import main as evaluate_main
    from ppi_dist.hub import load_model

    report = evaluate(
        load_model(out / "model"),
        data / "test.tsv",
        data / "sequences.fasta",
        train=data / "train.tsv",
        n_resamples=200,
    )
    trained = json.loads((out / "metrics.json").read_text())
    assert report["metrics"] == trained["test"]
    intervals = report["intervals_95"]
    assert intervals["auroc"][0] <= report["metrics"]["auroc"] <= intervals["auroc"][1]
    assert report["by_class"] == {"C3 (none seen)": {"pairs": 48, **trained["test"]}}
    assert report["trivial"]["all_positive"]["recall"] == 1.0
    evaluate_main(
        [
            "--model",
            str(out / "model"),
            "--pairs",
            str(data / "test.tsv"),
            "--fasta",
            str(data / "sequences.fasta"),
            "--out",
            str(tmp_path / "eval"),
            "--bootstrap",
            "50",
        ]
    )
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["metrics"] == trained["test"]
    assert (tmp_path / "eval" / "plots" / "pr_curve.png").is_file()


def test_pooled_baseline_trains_under_ddp(tmp_path):
    """No unused cross-attention: DDP would reject it ("parameters that were not used")."""
    out = tmp_path / "pooled"
    result = launch(
        [*TINY, "--interaction", "pooled", "--max_steps", "3", "--output_dir", str(out)],
        accelerate=["--config_file", "accelerate_configs/cpu_ddp.yaml"],
        env=_env(ACCELERATE_USE_CPU="true"),
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
        env=_env(ACCELERATE_USE_CPU="true"),
        capture_output=True,
        text=True,
        timeout=300,
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
        accelerate=[
            "--config_file",
            "accelerate_configs/zero2.yaml",
            "--num_processes",
            "2",
            "--mixed_precision",
            "bf16",
        ],
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


def test_a_run_folder_belongs_to_one_run(tmp_path):
    """Issue 14 items 1-2 through the trainer: a folder holding another run is refused, with
    one line and exit 2; --overwrite replaces it; a resume with other learning rates is
    refused unless overridden, and the override is applied; keep_checkpoints 0 is refused."""
    out = tmp_path / "run"
    args = [*TINY, "--max_steps", "2", "--output_dir", str(out)]
    launch(args)

    def refused(extra: list[str]) -> str:
        command = [sys.executable, "ppi_dist/train.py", *args, *extra]
        result = subprocess.run(
            command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        return result.stderr.strip().splitlines()[-1]

    assert "holds another run" in refused([]) and "--overwrite" in refused([])
    assert "keep_checkpoints" in refused(["--overwrite", "true", "--keep_checkpoints", "0"])
    assert "learning_rate_head" in refused(
        ["--resume_from", "latest", "--learning_rate_head", "1e-2"]
    )
    resumed = launch(
        [
            *args,
            "--resume_from",
            "latest",
            "--max_steps",
            "3",
            "--learning_rate_head",
            "1e-2",
            "--resume_override",
            "learning_rate_head",
        ]
    )
    assert "overridden learning_rate_head" in resumed.stdout
    state = json.loads((out / "checkpoints" / f"step_{3:08d}" / "optimizer.json").read_text())
    head_rates = {group["lr"] for group in state["param_groups"] if group["part"] == "head"}
    assert head_rates == {1e-2}  # constant schedule: the new rate, not the saved one
    before = (out / "train_log.jsonl").read_text()
    launch([*args, "--overwrite", "true"])
    assert (out / "train_log.jsonl").read_text() != before
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_00000002"]
