"""throughput.py: the naive baseline computes the model's own function, a dry run (CPU, tiny
shape) times ours, ours+compile and the baseline, LoRA and frozen steps are profiled, and the
old flags are refused. No timing is asserted."""

from __future__ import annotations

import itertools
import re

import pytest
import torch

from benchmarks import throughput
from benchmarks.core import write_pair_files
from benchmarks.throughput import NaiveSECAI, baseline_batches, pairs_of, transformers_attention
from ppi_dist.data.batching import collate_pairs
from ppi_dist.models import attention
from ppi_dist.models.compile import BACKEND_ENV
from ppi_dist.models.encoder import base_encoder
from tests.helpers import random_pairs, tiny_model


def test_naive_baseline_gives_the_models_logits():
    """Two encoder calls + separate padding is the same function as the model's forward."""
    model = tiny_model().eval()
    pairs = random_pairs(6, proteins=5)  # repeated proteins: dedup happens
    ours = collate_pairs(pairs)
    assert pairs_of([ours]) == pairs  # names, (uncropped) sequences and labels
    naive = baseline_batches(pairs_of([ours]), batch_size=6, seed=None)[0]  # keep the order
    with torch.no_grad():
        expected = model(**ours)
        got = NaiveSECAI(model)(**naive)  # eager attention inside
    assert ours["input_ids"].shape[0] < 12
    assert naive["input_ids_a"].shape[0] == naive["input_ids_b"].shape[0] == 6
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_baseline_batches_are_fixed_size_random_and_seeded():
    pairs = random_pairs(10)
    batches = baseline_batches(pairs, batch_size=4, seed=1)
    assert [len(b["labels"]) for b in batches] == [4, 4, 2]
    labels = torch.cat([b["labels"] for b in batches])
    assert sorted(labels.tolist()) == sorted(p.label for p in pairs)
    again = baseline_batches(pairs, batch_size=4, seed=1)
    assert all(
        torch.equal(a["input_ids_a"], b["input_ids_a"]) for a, b in zip(batches, again, strict=True)
    )


def test_baseline_attention_is_switched_back_to_the_models_own():
    model = tiny_model(encoder_attention="flex")  # built with the packed kernels' function
    base = base_encoder(model.encoder)
    assert base.config._attn_implementation == attention.IMPLEMENTATION
    with transformers_attention(model, "eager"):
        assert base.config._attn_implementation == "eager"
    assert base.config._attn_implementation == attention.IMPLEMENTATION


def test_throughput_dry_run(tmp_path, capsys, monkeypatch):
    """Ours, ours+compile and the baseline on the same 32 pairs: one table row each, ratios
    printed. Compiled in dry mode: dynamo + AOTAutograd without code generation (see
    tests/models/test_compile.py)."""
    monkeypatch.setenv(BACKEND_ENV, "aot_eager")
    pair_path, fasta_path = write_pair_files(tmp_path, random_pairs(64, seed=4, proteins=40))
    sample = ["--pairs", str(pair_path), "--fasta", str(fasta_path), "--fixed_length", "30"]
    sizes = ["--num_pairs", "4", "--repeats", "1", "--max_tokens", "2048"]
    trainer = ["--encoder_shape", "tiny", "--sort_buffer", "32", "--compile"]
    args, config = throughput.parse_args(
        ["--device", "cpu", *sample, *sizes, "--baseline_batch_size", "4", *trainer]
    )
    results = throughput.run(args, config)
    printed = capsys.readouterr().out
    assert re.search(r"RATIO ours/baseline pairs/s at max_tokens 2048: [\d.]+x", printed)
    assert re.search(r"RATIO compiled/eager pairs/s at max_tokens 2048: [\d.]+x", printed)
    assert "3 modules compiled" in printed, printed
    assert "torch" in printed and "transformers" in printed
    assert "sample: 32 pairs" in printed and "model: encoder tiny (d=64, 2 layers)" in printed
    assert [r["name"] for r in results] == ["ours", "ours+compile", "baseline"]
    for result in results:
        assert result["pairs"] >= 4 and result["pairs_per_s"] > 0
        assert result["padded_over_real"] >= 1.0 and result["peak_memory_gb"] > 0
    assert [r["budget"] for r in results] == ["max_tokens 2048"] * 2 + ["batch_size 4"]
    assert [r["attention"] for r in results] == ["sdpa, sdpa"] * 2 + ["eager, sdpa"]
    # The baseline timed exactly the pairs ours timed (whole batches: at least --num_pairs).
    assert results[0]["pairs"] == results[1]["pairs"] == results[2]["pairs"]
    rows = [line for line in printed.splitlines() if line.startswith("| ")]
    assert rows[0].split("|")[1].strip() == "method" and len(rows) == 2 + 3


@pytest.mark.parametrize("mode", [[], ["--freeze_encoder", "true"]], ids=["lora", "frozen"])
def test_throughput_dry_run_profiles_the_step(tmp_path, capsys, mode):
    """--dry (the tiny shape on the CPU, whatever the flags say) and --profile_steps: the
    operators per phase, the host's split and the top table; a frozen step reads the
    embedding cache that the trainer's set-up builds, and has no baseline."""
    pair_path, _ = write_pair_files(tmp_path, random_pairs(128, seed=5, proteins=80))
    flags = ["--dry", "--num_pairs", "4", "--repeats", "1", "--profile_steps", "2", "--top", "5"]
    flags += ["--pairs", str(pair_path), "--encoder_shape", "650M"]
    args, config = throughput.parse_args([*flags, *mode])
    assert config.model.encoder_shape == "tiny" and config.data.sort_buffer == 64
    assert args.max_tokens == [2048] and args.device == "cpu" and args.fixed_length == 60
    results = throughput.run(args, config)
    printed = capsys.readouterr().out
    assert [r["name"] for r in results] == ["ours"] + ["baseline"] * (not mode)
    profile = results[0]["profile"]
    assert profile["device_busy_s"] is None and profile["prepare_s"] > 0
    assert sum(profile["shares"].values()) == pytest.approx(1.0)
    ops = profile["ops_per_step"]
    assert list(ops) == ["forward", "backward", "optimizer"] and all(n > 0 for n in ops.values())
    row = f"| ours     | {sum(ops.values()):g} ({' / '.join(f'{n:g}' for n in ops.values())}) "
    assert row in printed, printed
    top = printed.split("ours, 2 profiled steps: top 5 by self CPU time, per step:\n", 1)[1]
    table = list(itertools.takewhile(lambda line: line.startswith("| "), top.splitlines()))
    assert table[0].split("|")[1].strip() == "name" and len(table) == 2 + 5
    assert ("embedding cache: " in printed) == bool(mode)


@pytest.mark.parametrize(
    "old", [["--encoder", "650M-shape"], ["--attn_implementation", "sdpa"], ["--bf16"]]
)
def test_throughput_refuses_the_old_spellings(capsys, old):
    with pytest.raises(SystemExit) as stopped:
        throughput.parse_args(old)
    assert stopped.value.code == 2
    assert old[0] in capsys.readouterr().err
