"""real_data.py: dry runs (baselines only) with seeds and a protein-disjoint validation set,
pooling seeds across calls, the trainer's flags for each run, runs read or continued, and its
handling of a trainer that is stopped, finishes or fails."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import real_data
from benchmarks.real_data import TrainerRun, continue_or_replace, trainer_command
from ppi_dist.errors import RunFolderError
from ppi_dist.training.checkpoint import COMPLETE, step_dir
from ppi_dist.training.recipes import load_config
from ppi_dist.training.rundir import claim_output_dir
from tests.helpers import PROCESS_LIMIT_S, REPO, wait_until

QUICK_SPLIT = ("--split_method", "random")  # for tests of pooling, not of the split


def real_data_dry(
    work: Path, *extra: str, timeout: int = PROCESS_LIMIT_S
) -> subprocess.CompletedProcess:
    """`python -m benchmarks.real_data --dry` (baselines only) on small subsets of yeast c3."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.real_data",
        "--dry",
        "--datasets",
        "yeast-c3",
        "--train_pairs",
        "300",
        "--valid_pairs",
        "100",
        "--test_pairs",
        "100",
        "--work_dir",
        str(work),
        *extra,
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.multiprocess
@pytest.mark.real_data
def test_real_data_dry_run_with_seeds_and_a_protein_disjoint_validation(tmp_path):
    """Baselines only (--dry), two seeds: mean ± sd rows, and the yeast validation set
    shares no protein with its training set."""
    # The graph split runs MMseqs2 (once) and the cut and check per seed: minutes on 2 cores.
    done = real_data_dry(tmp_path, "--seeds", "2", timeout=PROCESS_LIMIT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 seeds: [0, 1]" in done.stdout and "random (same seed)" in done.stdout
    assert "highest identity between a held-out block and train" in done.stdout
    assert re.search(r"\| all positive +\| [\d.]+ ± [\d.]+ +\|", done.stdout)
    results = json.loads((tmp_path / "results.json").read_text())["yeast-c3"]["predictors"]
    assert results["all positive"]["seeds"] == [0, 1]
    assert len(results["all positive"]["runs"]) == 2
    assert results["all positive"]["mean_sd"]["recall"] == {"mean": 1.0, "sd": 0.0, "n": 2}
    for seed in (0, 1):
        proteins = {}
        for split in ("train", "valid"):
            rows = (tmp_path / f"yeast-c3_seed{seed}_{split}.tsv").read_text().splitlines()[1:]
            proteins[split] = {p for row in rows for p in row.split("\t")[:2]}
        assert proteins["train"] and proteins["valid"]
        assert not proteins["train"] & proteins["valid"]


@pytest.mark.multiprocess
@pytest.mark.real_data
def test_real_data_pools_seeds_across_calls_and_refuses_unlike_settings(tmp_path):
    """A call into the same work dir adds its seeds to the earlier ones; a call with other
    sizes is refused and leaves the earlier results as they were."""
    first = tmp_path / "first"
    outputs = []
    for work, seed in ((first, "0"), (first, "1"), (first, "2")):
        # The split is the subject of the test above; this one pools: the quick split.
        done = real_data_dry(work, "--seed", seed, *QUICK_SPLIT)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout)
    assert "(1 seed: [0])" in outputs[0] and "(2 seeds: [0, 1])" in outputs[1]
    assert "(3 seeds: [0, 1, 2])" in outputs[2]
    assert "(3 seeds: [0, 1, 2])" in (first / "results.md").read_text()
    predictors = json.loads((first / "results.json").read_text())["yeast-c3"]["predictors"]
    assert predictors["degree baseline"]["seeds"] == [0, 1, 2]
    assert predictors["degree baseline"]["mean_sd"]["auroc"]["n"] == 3
    before = (first / "results.json").read_text()
    done = real_data_dry(first, "--seed", "5", "--train_pairs", "200", *QUICK_SPLIT)
    assert done.returncode != 0
    assert str(first / "settings.json") in done.stderr and "train_pairs 300 there" in done.stderr
    assert (first / "results.json").read_text() == before


def test_real_data_reads_a_finished_run_and_continues_a_stopped_one(tmp_path, monkeypatch):
    """A seed's run folder from an earlier call: a finished one is read as it is, not run
    again; otherwise the trainer refuses the folder as it stands, and real_data passes the
    flag that the folder's state calls for, which the trainer accepts."""

    def folder(name: str, *, log=False, checkpoint=None) -> Path:
        out = tmp_path / name
        out.mkdir()
        if log:
            (out / "train_log.jsonl").write_text("{}\n")
        if checkpoint is not None:  # "complete" or "interrupted" (no COMPLETE marker)
            step = step_dir(out / "checkpoints", 178)
            step.mkdir(parents=True)
            if checkpoint == "complete":
                (step / COMPLETE).touch()
        return out

    cases = {
        "fresh": (folder("fresh"), []),
        "stopped": (
            folder("stopped", log=True, checkpoint="complete"),
            ["--resume_from", "latest"],
        ),
        "before first checkpoint": (folder("early", log=True), ["--overwrite", "true"]),
        "interrupted save": (
            folder("torn", log=True, checkpoint="interrupted"),
            ["--overwrite", "true"],
        ),
    }
    for name, (out, expected) in cases.items():
        flags = continue_or_replace(out)
        assert flags == expected, name
        if flags:
            with pytest.raises(RunFolderError):  # why the flags are needed
                claim_output_dir(out, resuming=False, overwrite=False).release()
        lock = claim_output_dir(
            out, resuming="--resume_from" in flags, overwrite="--overwrite" in flags
        )
        lock.release()
    assert (tmp_path / "stopped" / "checkpoints").is_dir()  # continued, not cleared
    run = TrainerRun("yeast-c3", {}, tmp_path / "x.fasta", tmp_path, "frozen", 0)
    run.out.mkdir()
    (run.out / "metrics.json").write_text("{}")
    monkeypatch.setattr(real_data, "run_trainer", lambda *_: pytest.fail("ran again"))
    real_data.run_secai(run, SimpleNamespace())
    assert (run.out / "metrics.json").read_text() == "{}"


def test_real_data_pooled_baseline_differs_from_secai_only_by_the_interaction(tmp_path):
    """The pooled variant's run is SE-CAI's frozen run with --interaction pooled: the same data,
    encoder, cache, head, learning rates and seed, in its own folder."""
    paths = {split: tmp_path / f"{split}.tsv" for split in ("train", "valid", "test")}
    args = SimpleNamespace(max_residues=64, windows="crop", max_tokens=4096, epochs=1)
    fasta = tmp_path / "yeast" / "sequences.fasta"
    runs = {
        variant: TrainerRun("yeast-c3", paths, fasta, tmp_path, variant, 3)
        for variant in ("frozen", "pooled")
    }
    assert runs["frozen"].out != runs["pooled"].out
    secai, pooled = (trainer_command(runs[variant], args) for variant in ("frozen", "pooled"))
    assert secai[:2] == [sys.executable, "ppi_dist/train.py"]  # run with cwd=REPO
    secai_config = load_config(secai[2:]).to_dict()
    pooled_config = load_config(pooled[2:]).to_dict()
    differing = {key for key in secai_config if secai_config[key] != pooled_config[key]}
    assert differing == {"interaction", "output_dir"}
    assert (secai_config["interaction"], pooled_config["interaction"]) == (
        "cross_attention",
        "pooled",
    )
    assert pooled_config["freeze_encoder"] and pooled_config["seed"] == 3
    assert pooled_config["embedding_cache"] == secai_config["embedding_cache"]
    assert secai_config["output_dir"] == str(runs["frozen"].out)


# A stand-in for train.py: on SIGINT it takes a second to "save its checkpoint", then exits
# 0 without metrics, as train.py does when pre-empted; without a signal it finishes.
FAKE_TRAINER = """
import json, signal, sys, time
from pathlib import Path
out, mode = Path(sys.argv[1]), sys.argv[2]
stop = []
signal.signal(signal.SIGINT, lambda *_: stop.append(1))
if mode == "fail":
    sys.exit(2)
if mode == "finish":
    (out / "metrics.json").write_text(json.dumps({"test": {"auroc": 0.7}}))
    sys.exit(0)
(out / "ready").touch()
while not stop:
    time.sleep(0.05)
time.sleep(1.0)
(out / "checkpoint").touch()
"""
RUN_FAKE = """
import sys
from pathlib import Path
from benchmarks.real_data import run_trainer
out = Path(sys.argv[1])
try:
    run_trainer([sys.executable, "-c", sys.argv[2], str(out), sys.argv[3]], out)
    print("metrics", (out / "metrics.json").read_text())
except SystemExit as stopped:
    print("stopped:", stopped)
    sys.exit(3)
"""


def run_fake_trainer(out: Path, mode: str, interrupt: bool = False):
    out.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_FAKE, str(out), FAKE_TRAINER, mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    if interrupt:  # Ctrl-C: SIGINT to the whole foreground process group
        wait_until((out / "ready").exists, process, "the fake trainer's signal handler")
        os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=PROCESS_LIMIT_S)
    return process.returncode, stdout + stderr


@pytest.mark.multiprocess
def test_real_data_lets_an_interrupted_trainer_save_its_checkpoint(tmp_path):
    """Ctrl-C reaches real_data.py and the trainer: real_data waits while the trainer saves
    its checkpoint (subprocess.run would kill it 0.25 s in) and reports the run as stopped;
    a finished run gives its metrics, a failed one its exit status."""
    code, output = run_fake_trainer(tmp_path / "stopped", "wait", interrupt=True)
    assert code == 3, output
    assert (tmp_path / "stopped" / "checkpoint").exists()
    assert "waiting for train.py to save its checkpoint" in output
    assert "stopped before its final metrics" in output
    assert "the same command continues from it" in output
    code, output = run_fake_trainer(tmp_path / "finished", "finish")
    assert code == 0 and 'metrics {"test": {"auroc": 0.7}}' in output, output
    code, output = run_fake_trainer(tmp_path / "failed", "fail")
    assert code == 3 and "train.py exited with status 2" in output, output


def test_real_data_lora_variants_train_for_the_epochs_and_share_one_trunk_cache(tmp_path):
    """`lora` and `lora_top` train the encoder for --epochs; every seed's `lora_top` run reads
    the same trunk cache (the layers below LoRA do not depend on the seed)."""
    paths = {split: tmp_path / f"{split}.tsv" for split in ("train", "valid", "test")}
    args = SimpleNamespace(
        max_residues=256, windows="all", max_tokens=32768, epochs=2, lora_layers=2
    )
    fasta = tmp_path / "yeast" / "sequences.fasta"

    def config_of(variant: str, seed: int):
        command = trainer_command(
            TrainerRun("yeast-c3", paths, fasta, tmp_path, variant, seed), args
        )
        return load_config(command[2:]).to_dict()

    every, top, top_again = config_of("lora", 0), config_of("lora_top", 0), config_of("lora_top", 1)
    for config in (every, top):
        assert (
            not config["freeze_encoder"] and config["epochs"] == 2 and config["max_steps"] is None
        )
    assert every["lora_layers"] is None and top["lora_layers"] == 2
    assert top["trunk_cache"] == top_again["trunk_cache"] and "last2" in top["trunk_cache"]
