"""The trainer end to end: non-finite losses, the frozen encoder, the scores `predict` and
`evaluate` reproduce, and a run folder that belongs to one run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from ppi_dist.cli.evaluate import main as evaluate_main
from ppi_dist.cli.train import main as train_main
from ppi_dist.evaluation.evaluate import EvaluateOptions, evaluate
from ppi_dist.hub.loading import load_model
from ppi_dist.inference.predict import PredictFiles, PredictOptions, PredictRun, predict
from ppi_dist.models.saving import from_pretrained
from tests.helpers import PROCESS_LIMIT_S, REPO, write_community_task
from tests.integration.runs import (
    TINY,
    check_predict_reproduces_test_scores,
    launch,
    losses,
    run_python,
    trainables,
    trainer_env,
)

pytestmark = pytest.mark.multiprocess


NAN_AT_STEP_3 = """
import sys, torch
import ppi_dist.training.step as step
real_losses, calls = step._losses, [0]
def poisoned(*args, **kwargs):
    calls[0] += 1
    logits, loss, total = real_losses(*args, **kwargs)
    nan = float("nan") if calls[0] == 3 else 1.0
    return logits, loss * nan, total * nan
step._losses = poisoned
from ppi_dist.cli.train import main
sys.exit(main(sys.argv[1:]))
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
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=PROCESS_LIMIT_S,
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
    result = launch([*args, "--log_every", "1", "--peak_tflops", "0.5", "--profile_steps", "1"])
    assert "embedding cache:" in result.stdout
    # The second step profiled (after one warm-up step): its operators per phase, printed and
    # kept in profile.md.
    profile = (out / "profile.md").read_text()
    assert "| train step | " in profile and "train step, 1 profiled steps: top 20" in profile
    assert profile.splitlines()[0] in result.stdout + result.stderr
    # Each log line: the cache-row batches' model FLOPs per second, and that over the peak.
    logs = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(logs) == 3 and all(log["train/model_tflops_per_s"] > 0 for log in logs)
    assert all(log["train/mfu"] == log["train/model_tflops_per_s"] / 0.5 for log in logs)
    assert all(log["train/peak_memory_gib"] > 0 for log in logs)
    environment = json.loads((out / "metrics.json").read_text())["environment"]
    assert environment["gpu"] is None and environment["libraries"]["torch"] == torch.__version__
    assert (out / "embedding_cache").is_dir()
    assert "final scoring: the training cache" in result.stdout  # not encoded again
    model = from_pretrained(out / "model")
    assert not [n for n, _ in model.named_parameters() if "lora_" in n]
    assert not (out / "model" / "adapter").exists()
    trained = trainables(out, 3)
    assert trained and all(
        n.startswith(("cross_attention.", "head.", "first_pass.")) for n in trained
    )
    # The test scores read from the cache equal `predict`'s fresh encoding to the 6 printed
    # decimals, and `evaluate --cache_dir` reads the run's cache (never rewriting it) to the
    # trainer's test metrics exactly.
    assert (
        check_predict_reproduces_test_scores(out, tmp_path / "scores.tsv", timeout=PROCESS_LIMIT_S)
        == 48
    )
    data, index = out / "synthetic_data", out / "embedding_cache" / "index.json"
    written = index.stat().st_mtime_ns
    evaluate_main(
        [
            *("--model", str(out / "model"), "--pairs", str(data / "test.tsv")),
            *("--fasta", str(data / "sequences.fasta"), "--valid", str(data / "valid.tsv")),
            *("--out", str(tmp_path / "eval"), "--bootstrap", "50"),
            *("--cache_dir", str(out / "embedding_cache")),
        ]
    )
    assert index.stat().st_mtime_ns == written
    trained_metrics = json.loads((out / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["metrics"] == trained_metrics["test"]


TOKEN_BATCHES_FOR_FROZEN = """
import sys
import ppi_dist.training.sources as sources
def token_batches(source, cache_index, options, **kwargs):  # the frozen path before cache rows
    print("token batches for a cache of", len(cache_index.row), "proteins")
    return sources.TokenBatches(source, options, **kwargs)
sources.CacheRowBatches = token_batches
from ppi_dist.cli.train import main
sys.exit(main(sys.argv[1:]))
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
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=PROCESS_LIMIT_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "token batches for a cache of" in result.stdout
    assert len(losses(rows)) == 4 and losses(rows) == losses(tokens)
    expected, got = trainables(tokens, 4), trainables(rows, 4)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_predict_reproduces_the_trainers_test_scores(tmp_path):
    """The threshold is chosen on the scores `predict` computes: same model, same pairs, the
    same numbers (both go through `scoring`; 1e-6 is the rounding of the printed 6 decimals).
    At a window of 60 residues, under most synthetic proteins' 40 to 150, trained on all
    windows: `predict` and `evaluate` read the window from the model folder."""
    out = tmp_path / "run"
    windows = ["--max_residues", "60", "--train_windows", "all"]
    launch([*TINY, *windows, "--max_steps", "4", "--output_dir", str(out)])
    saved = json.loads((out / "model" / "secai_config.json").read_text())
    assert (saved["max_residues"], saved["train_windows"], saved["scoring_windows"]) == (
        60,
        "all",
        "all",
    )
    assert (
        check_predict_reproduces_test_scores(out, tmp_path / "scores.tsv", timeout=PROCESS_LIMIT_S)
        == 48
    )
    data = out / "synthetic_data"
    # `evaluate` on the run's test file reproduces the trainer's test metrics exactly.
    report = evaluate(
        load_model(out / "model"),
        data / "test.tsv",
        data / "sequences.fasta",
        EvaluateOptions(train=data / "train.tsv", n_resamples=200),
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
    # The first pass trained beside the head: its ranking is reported, and `predict --screen`
    # computes the same first-pass scores the trainer wrote.
    assert set(trained["first_pass"]) == {"validation", "test"}
    assert report["first_pass"] == trained["first_pass"]["test"]  # `evaluate` reports it too
    assert all(0 <= split["auroc"] <= 1 for split in trained["first_pass"].values())
    screens = trained["first_pass"]["test"]["screens"]  # what each --screen share would keep
    assert list(screens) == ["0.01", "0.05", "0.1", "0.2"]
    assert all(0 <= kept["top_1"] <= 1 and 0 <= kept["auroc"] <= 1 for kept in screens.values())
    screened = tmp_path / "screened.tsv"
    model = load_model(out / "model")
    files = PredictFiles(screened, pairs=data / "test.tsv", fasta=data / "sequences.fasta")
    predict(model, files, PredictOptions(screen=1.0), PredictRun(progress=False))
    rows = [line.split("\t") for line in screened.read_text().splitlines()]
    got = {(r[0], r[1]): float(r[-1]) for r in rows[1:]}
    lines = (out / "predictions_test.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert header[-1] == "first_pass" and rows[0][-2:] == ["stage", "first_pass"]
    for line in lines[1:]:
        fields = line.split("\t")
        assert abs(got[(fields[0], fields[1])] - float(fields[-1])) <= 1e-6  # 6 decimals


def test_a_run_folder_belongs_to_one_run(tmp_path, capsys):
    """Through the trainer: a folder holding another run is refused, with one line and exit
    2; --overwrite replaces it; a resume with other learning rates is refused unless
    overridden, and the override is applied; keep_checkpoints 0 is refused. The refusals
    run in this process, so each must leave the folder unlocked for the launches after it."""
    out = tmp_path / "run"
    args = [*TINY, "--max_steps", "2", "--output_dir", str(out)]
    launch(args)

    def refused(extra: list[str]) -> str:
        # In this process: the trainer's own `main` and error boundary, before any step.
        capsys.readouterr()
        assert train_main([*args, *extra]) == 2
        printed = capsys.readouterr().err.strip().splitlines()
        assert printed[-1].startswith("error: ") and "Traceback" not in "\n".join(printed)
        return printed[-1]

    other_run = refused([])
    assert "holds another run" in other_run and "--overwrite" in other_run
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


def test_calibration_is_fitted_on_validation_saved_and_reported_by_evaluate(tmp_path, capsys):
    from ppi_dist.evaluation.calibration import fit_platt

    out = tmp_path / "calibrated"
    launch([*TINY, "--freeze_encoder", "true", "--max_steps", "3", "--output_dir", str(out)])
    model = load_model(out / "model")
    assert model.calibration is not None and model.calibration.fitted_on == "validation"
    # Refitted on the run's validation predictions alone, it is the saved one.
    header, *lines = (out / "predictions_validation.tsv").read_text().splitlines()
    rows = [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]
    refit = fit_platt([float(r["raw_score"]) for r in rows], [float(r["label"]) for r in rows])
    # The run's own files show the calibrated probability beside the raw score.
    first = rows[0]
    calibrated = model.calibration.apply([float(first["raw_score"])])[0]
    # raw_score is printed to 6 decimals; the slope scales that rounding.
    assert abs(float(first["probability"]) - calibrated) < 1e-6 * (1 + model.calibration.slope)
    assert model.calibration.pairs == len(rows)
    assert abs(refit.slope - model.calibration.slope) < 1e-3 * abs(refit.slope)  # 6 decimals
    assert abs(refit.offset - model.calibration.offset) < 1e-3 * (1 + abs(refit.offset))
    eval_dir = tmp_path / "eval"
    status = evaluate_main(
        [
            "--model",
            str(out / "model"),
            "--pairs",
            str(out / "synthetic_data" / "test.tsv"),
            "--fasta",
            str(out / "synthetic_data" / "sequences.fasta"),
            "--out",
            str(eval_dir),
            "--bootstrap",
            "50",
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "ECE raw" in printed and "-> calibrated (platt, fitted on validation)" in printed
    assert (eval_dir / "plots" / "reliability.png").is_file()
    header, *lines = (eval_dir / "predictions.tsv").read_text().splitlines()
    assert header.split("\t")[:4] == ["protein_a", "protein_b", "probability", "raw_score"]
    first = lines[0].split("\t")
    assert abs(float(first[2]) - float(model.calibration.apply([float(first[3])])[0])) < 1e-5
    saved = json.loads((eval_dir / "metrics.json").read_text())
    assert set(saved["calibration"]["intervals_95"]) == {
        "ece_raw",
        "ece_calibrated",
        "brier_raw",
        "brier_calibrated",
    }


def test_valid_fraction_holds_out_a_similarity_disjoint_validation_set(tmp_path):
    """A training file without a validation file: the trainer splits it (MMseqs2 and the
    graph cut, for real), trains and thresholds on the held-out block, reuses the split when
    the run resumes, and refuses a folder whose split was made with other settings."""
    pair_file, fasta, _, pairs = write_community_task(tmp_path)
    out = tmp_path / "run"
    data = ["--train_file", str(pair_file), "--fasta", str(fasta), "--output_dir", str(out)]
    args = [*TINY, *data, "--max_steps", "2", "--valid_fraction", "0.2"]
    first = launch(args)
    assert "validation held out of" in first.stdout
    split = out / "split"

    def rows(path):
        return [tuple(line.split("\t")[:2]) for line in path.read_text().splitlines()[1:]]

    train, valid = rows(split / "train.tsv"), rows(split / "valid.tsv")
    assert abs(len(valid) / len(pairs) - 0.2) <= 0.03
    assert not {p for pair in train for p in pair} & {p for pair in valid for p in pair}
    assert set(train) | set(valid) <= set(pairs)
    report = json.loads((split / "split_report.json").read_text())
    assert report["max_identity_between_blocks"] < 0.4
    # Validation is the held-out block, whole: the threshold was chosen on it.
    assert rows(out / "predictions_validation.tsv") == valid
    resume = ["--resume_from", "latest", "--max_steps", "3"]
    again = launch([*args, *resume])
    assert "(reused)" in again.stdout and rows(split / "valid.tsv") == valid
    refused = run_python(
        ["ppi_dist/train.py", *TINY, *data, *resume, "--valid_fraction", "0.3"],
        timeout=PROCESS_LIMIT_S,
    )
    assert refused.returncode == 2
    assert "split was made with other settings" in refused.stderr
