"""Benchmarks: the naive baseline computes the same model, the FLOP model's closed forms, and
dry runs of throughput.py and gpu_check.sh (CPU, tiny shape). No timing is asserted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.autograd import DeviceType

from benchmarks import profile_step
from benchmarks.flops import EncoderShape, encoder_flops, pair_flops, secai_step_flops
from benchmarks.profile_step import Event, category, merged_length, summarise
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
        sys.executable,
        "benchmarks/throughput.py",
        "--encoder",
        "tiny",
        "--device",
        "cpu",
        "--fixed_length",
        "30",
        "--num_pairs",
        "4",
        "--sort_buffer",
        "32",
        "--repeats",
        "1",
        "--max_tokens",
        "2048",
        "--baseline_batch_size",
        "4",
        "--json_out",
        str(out),
        "--pairs",
        str(BERNETT / "train.tsv"),
        "--fasta",
        str(BERNETT / "sequences.fasta"),
        "--compile",
    ]
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


def test_profile_categories_of_gpu_kernels_and_cpu_ops():
    names = {
        "fmha_cutlassF_bf16_aligned_64x64_rf_sm80": "attention",
        "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16": "attention",
        "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
        "nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NNT": "matmul",
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64": "matmul",
        "aten::mm": "matmul",
        "void at::native::multi_tensor_apply_kernel<FusedAdamMathFunctor<float, 4>>": "optimizer",
        "Memcpy HtoD (Pageable -> Device)": "copy",
        "void at::native::vectorized_layer_norm_kernel<float>": "norm/reduction",
        "void at::native::vectorized_elementwise_kernel<4, CUDAFunctor_add<float>>": "elementwise",
        "triton_poi_fused_add_gelu_0": "elementwise",
        "aten::mul": "elementwise",
        "train_step": "python",
        "## Call CompiledFxGraph abc ##": "compiled graph",
    }
    assert {name: category(name) for name in names} == names


def test_profile_summary_splits_host_and_device_time():
    """Two steps of a fake CUDA profile (microseconds): ranges, kernels, one sync each."""
    events = []
    for offset in (0, 1000):
        events += [
            Event("profile_step", False, offset, offset + 800, 0),
            Event("train_step", False, offset, offset + 500, 100),
            Event("cudaStreamSynchronize", False, offset + 300, offset + 400, 100),
            Event("cudaDeviceSynchronize", False, offset + 500, offset + 800, 300),  # ours
            Event("aten::_local_scalar_dense", False, offset + 290, offset + 410, 10),
            Event("nvjet_gemm", True, offset + 50, offset + 350, 300),
            Event("fmha_cutlassF", True, offset + 300, offset + 600, 300),  # overlaps: merged
            Event("vectorized_elementwise_kernel", True, offset + 700, offset + 800, 100),
        ]
    got = summarise(events, steps=2, on_cuda=True)
    assert got["profiled_wall_s"] == pytest.approx(800e-6)
    assert got["sync_wait_s"] == pytest.approx(100e-6)  # the step's sync, not our final one
    assert got["host_s"] == pytest.approx(400e-6)
    assert got["drain_s"] == pytest.approx(300e-6)
    assert got["device_busy_s"] == pytest.approx(650e-6)  # 50-600 and 700-800
    assert got["syncs_per_step"] == {"aten::_local_scalar_dense": 1, "cudaStreamSynchronize": 1}
    assert got["shares"] == pytest.approx(
        {"matmul": 3 / 7, "attention": 3 / 7, "elementwise": 1 / 7}
    )
    assert [row[0] for row in got["top"]][-1] == "vectorized_elementwise_kernel"
    assert merged_length([(0, 2), (1, 3), (5, 6)]) == 4


def test_profile_events_leave_out_our_ranges_on_the_gpu_timeline():
    def event(name, device, start, end, annotation=False, self_cpu=0.0):
        return SimpleNamespace(
            name=name,
            device_type=device,
            is_user_annotation=annotation,
            time_range=SimpleNamespace(start=start, end=end),
            self_cpu_time_total=self_cpu,
        )

    profiled = SimpleNamespace(
        events=lambda: [
            event("train_step", DeviceType.CPU, 0, 10, annotation=True, self_cpu=4),
            event("train_step", DeviceType.CUDA, 2, 12, annotation=True),  # spans kernels + gaps
            event("nvjet_gemm", DeviceType.CUDA, 3, 5),
        ]
    )
    assert profile_step.events_of(profiled) == [
        Event("train_step", False, 0, 10, 4),
        Event("nvjet_gemm", True, 3, 5, 2),
    ]


@pytest.mark.parametrize("mode", [[], ["--freeze_encoder"]], ids=["lora", "frozen"])
def test_profile_step_dry_run(tmp_path, capsys, mode):
    trace, out = tmp_path / "trace.json", tmp_path / "profile.jsonl"
    args = profile_step.parse_args(
        [
            "--dry",
            "--warmup",
            "1",
            "--timed_steps",
            "1",
            "--steps",
            "2",
            "--top",
            "5",
            "--trace",
            str(trace),
            "--json_out",
            str(out),
            "--pairs",
            str(BERNETT / "train.tsv"),
            *mode,
        ]
    )
    summary = profile_step.run(args)
    printed = capsys.readouterr().out
    assert summary.mode == ("frozen" if mode else "lora") and summary.pairs_per_s > 0
    assert summary.device_busy_s is None and summary.shares
    assert sum(summary.shares.values()) == pytest.approx(1.0)
    assert "torch" in printed and "top 5 by self CPU time" in printed
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert table[0].split("|")[1].strip() == "name" and len(table) == 2 + 5
    assert re.search(rf"^PROFILE encoder=tiny mode={summary.mode} .*matmul=", printed, re.M)
    assert json.loads(trace.read_text())["traceEvents"]
    assert json.loads(out.read_text())["mode"] == summary.mode


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
    return output, [_numbers(line) for line in table if line.startswith("| ")][2:]  # no header


@pytest.mark.slow
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
        # ppi_dist.attention falls back off CUDA).
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


@pytest.mark.slow
def test_gpu_check_dry_results_stage_runs_both_datasets(tmp_path):
    output, rows = gpu_check_dry(tmp_path, STAGE="results", SEED="4", SEEDS="1")
    statuses = {r[0]: r[1] for r in rows}
    assert statuses == {"yeast_random_frozen_8m": "OK", "bernett_frozen_8m": "OK"}, output
    for name in ("real_yeast", "real_bernett"):  # SEED and SEEDS reached real_data.py
        assert "(1 seed: [4])" in (tmp_path / name / "results.md").read_text()


def test_real_data_dry_run_with_seeds_and_a_protein_disjoint_validation(tmp_path):
    """Baselines only (--dry), two seeds: mean ± sd rows, and the yeast validation set
    shares no protein with its training set."""
    command = [
        sys.executable,
        "benchmarks/real_data.py",
        "--dry",
        "--datasets",
        "yeast-c3",
        "--seeds",
        "2",
        "--train_pairs",
        "300",
        "--valid_pairs",
        "100",
        "--test_pairs",
        "100",
        "--work_dir",
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 seeds: [0, 1]" in done.stdout and "mixed pairs" in done.stdout
    assert re.search(r"\| all positive \| [\d.]+ ± [\d.]+ \|", done.stdout)
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


def real_data_dry(work, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "benchmarks/real_data.py",
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
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_real_data_pools_seeds_across_calls_and_refuses_unlike_settings(tmp_path):
    """A call into the same work dir adds its seeds to the earlier ones; --merge pools another
    dir's; a call with other sizes is refused and leaves the earlier results as they were."""
    first, other, pooled = tmp_path / "first", tmp_path / "other", tmp_path / "pooled"
    outputs = []
    for work, seed in ((first, "0"), (first, "1"), (other, "2")):
        done = real_data_dry(work, "--seed", seed)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout)
    assert "pooling" not in outputs[0] and "pooling with earlier seeds [0]" in outputs[1]
    assert "(2 seeds: [0, 1])" in (first / "results.md").read_text()
    done = real_data_dry(
        pooled, "--seed", "1", "--merge", str(first / "results.json"), str(other / "results.json")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(3 seeds: [0, 1, 2])" in done.stdout
    predictors = json.loads((pooled / "results.json").read_text())["yeast-c3"]["predictors"]
    assert predictors["degree baseline"]["seeds"] == [0, 1, 2]
    assert predictors["degree baseline"]["mean_sd"]["auroc"]["n"] == 3
    before = (first / "results.json").read_text()
    done = real_data_dry(first, "--seed", "5", "--train_pairs", "200")
    assert done.returncode != 0
    assert str(first / "results.json") in done.stderr and "train_pairs 300 there" in done.stderr
    assert (first / "results.json").read_text() == before


def test_real_data_continues_a_stopped_seed_and_replaces_a_finished_one(tmp_path):
    """A seed's run folder from an earlier call is refused by the trainer as it stands;
    real_data passes the flag that the folder's state calls for, and the trainer accepts it."""
    from benchmarks.real_data import continue_or_replace
    from ppi_dist.checkpoint import COMPLETE, step_dir
    from ppi_dist.rundir import RunFolderError, claim_output_dir

    def folder(name: str, *, log=False, checkpoint=None, finished=False) -> Path:
        out = tmp_path / name
        out.mkdir()
        if log:
            (out / "train_log.jsonl").write_text("{}\n")
        if checkpoint is not None:  # "complete" or "interrupted" (no COMPLETE marker)
            step = step_dir(out / "checkpoints", 178)
            step.mkdir(parents=True)
            if checkpoint == "complete":
                (step / COMPLETE).touch()
        if finished:
            (out / "metrics.json").write_text("{}")
        return out

    cases = {
        "fresh": (folder("fresh"), []),
        "stopped": (
            folder("stopped", log=True, checkpoint="complete"),
            ["--resume_from", "latest"],
        ),
        "finished": (
            folder("finished", log=True, checkpoint="complete", finished=True),
            ["--overwrite", "true"],
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
    assert not (tmp_path / "finished" / "metrics.json").exists()  # replaced, not kept
    assert (tmp_path / "stopped" / "checkpoints").is_dir()  # continued, not cleared


def test_real_data_pooled_baseline_differs_from_secai_only_by_the_interaction(tmp_path):
    """--pooled_baseline's run is SE-CAI's frozen run with --interaction pooled: the same data,
    encoder, cache, head, learning rates and seed, in its own folder."""
    from benchmarks.real_data import trainer_command
    from ppi_dist.config import load_config

    paths = {split: tmp_path / f"{split}.tsv" for split in ("train", "valid", "test")}
    args = SimpleNamespace(max_residues=64, max_tokens=4096, epochs=1, lora_steps=0)
    fasta = tmp_path / "yeast" / "sequences.fasta"
    runs = {
        variant: trainer_command("yeast-c3", paths, fasta, tmp_path, args, variant, 3)
        for variant in ("frozen", "pooled")
    }
    (secai, secai_out), (pooled, pooled_out) = runs["frozen"], runs["pooled"]
    assert secai_out != pooled_out
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
sys.path.insert(0, ".")
from benchmarks.real_data import TrainerStopped, run_trainer
out = Path(sys.argv[1])
try:
    print("metrics", run_trainer([sys.executable, "-c", sys.argv[2], str(out), sys.argv[3]], out))
except TrainerStopped as stopped:
    print("stopped:", stopped)
    sys.exit(3)
"""


def run_fake_trainer(out: Path, mode: str, interrupt: bool = False):
    import signal
    import time

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
        deadline = time.monotonic() + 60
        while not (out / "ready").exists():
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout + stderr


def test_real_data_lets_an_interrupted_trainer_save_its_checkpoint(tmp_path):
    """Ctrl-C reaches real_data.py and the trainer: real_data waits while the trainer saves
    its checkpoint (subprocess.run would kill it 0.25 s in) and reports the run as stopped;
    a finished run gives its metrics, a failed one its exit status."""
    code, output = run_fake_trainer(tmp_path / "stopped", "wait", interrupt=True)
    assert code == 3, output
    assert (tmp_path / "stopped" / "checkpoint").exists()
    assert "waiting for train.py to save its checkpoint" in output
    assert "stopped before its final metrics" in output
    code, output = run_fake_trainer(tmp_path / "finished", "finish")
    assert code == 0 and "metrics {'test': {'auroc': 0.7}}" in output, output
    code, output = run_fake_trainer(tmp_path / "failed", "fail")
    assert code == 1 and "train.py exited with status 2" in output, output


def test_data_loader_frozen_comparison_dry_run(tmp_path):
    from tests.test_loader import make_source

    source = make_source(tmp_path)
    command = [
        sys.executable,
        "benchmarks/data_loader.py",
        "--pairs",
        source.files[0],
        "--fasta",
        source.fasta,
        "--frozen-only",
        "--workers",
        "0",
        "--frozen-pairs",
        "100",
        "--old-frozen-max-tokens",
        "4096",
        "--frozen-max-tokens",
        "4096,16384",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "torch" in done.stdout
    for path in (
        "old, encoder budget 4,096",
        "new, pair-token budget 4,096",
        "new, pair-token budget 16,384",
    ):
        assert re.search(rf"{path}: \d+ pairs/batch; steady .* [\d,]+ pairs/s", done.stdout), path
