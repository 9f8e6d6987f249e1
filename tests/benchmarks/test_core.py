"""The benchmarks' shared core: the trainer's configuration with the benchmarks' defaults,
the sampled pairs as the data layer reads them, timing, memory and the machine report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.core import (
    ENCODER_8M,
    benchmark_config,
    encoder_label,
    mixed_precision,
    sample_pairs,
    sample_source,
    time_steps,
    write_pair_files,
)
from ppi_dist.data.pairs import Pair, PairSource
from ppi_dist.errors import ConfigError
from tests.helpers import random_pairs

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_the_trainers_flags_with_the_benchmarks_defaults():
    config = benchmark_config([], CPU)
    secai = config.model.secai_config()
    assert secai.encoder == str(ENCODER_8M) and secai.encoder_config is None
    assert config.data.data_workers == 0  # the batches are listed in the process
    assert (secai.lora_r, secai.lora_alpha) == (8, 16)
    assert (secai.cross_attention_heads, secai.head_hidden) == (8, 512)
    assert not secai.activation_checkpointing and secai.encoder_attention == "sdpa"
    assert encoder_label(config) == str(ENCODER_8M)
    assert mixed_precision(config, CPU) == "no"  # "auto" on a CPU
    # LoRA alpha follows the rank unless given; checkpointing is on for CUDA unless frozen.
    assert benchmark_config(["--lora_r", "4"], CPU).model.secai.lora_alpha == 8
    given = ["--lora_r", "4", "--lora_alpha", "5"]
    assert benchmark_config(given, CPU).model.secai.lora_alpha == 5
    assert benchmark_config([], CUDA).model.secai.activation_checkpointing
    assert not benchmark_config(
        ["--freeze_encoder", "true"], CUDA
    ).model.secai.activation_checkpointing
    off = ["--activation_checkpointing", "false"]
    assert not benchmark_config(off, CUDA).model.secai.activation_checkpointing
    # A shape replaces the encoder's weights; a default given as a keyword, a flag wins.
    shaped = benchmark_config(["--encoder_shape", "tiny"], CPU, encoder_shape="650M")
    assert shaped.model.secai_config().encoder is None and encoder_label(shaped) == "tiny"
    assert shaped.model.secai_config().encoder_config["hidden_size"] == 64
    flags = ["--encoder_attention", "flex", "--mixed_precision", "bf16"]
    chosen = benchmark_config(flags, CPU)
    assert chosen.model.secai.encoder_attention == "flex"
    assert mixed_precision(chosen, CPU) == "bf16"


def test_wrong_or_unsupported_trainer_flags_are_refused():
    with pytest.raises(ConfigError, match="--attn_implementation"):
        benchmark_config(["--attn_implementation", "eager"], CPU)
    with pytest.raises(ConfigError, match="encoder_shape"):
        benchmark_config(["--encoder_shape", "650M-shape"], CPU)
    with pytest.raises(ConfigError, match=r"--encoder_shape 650M$"):  # the old spelling
        benchmark_config(["--encoder", "650M-shape"], CPU)
    with pytest.raises(ConfigError, match=r"--encoder_shape 8M$"):
        benchmark_config(["--encoder", "8M"], CPU)
    with pytest.raises(ConfigError, match="fp16"):
        benchmark_config(["--mixed_precision", "fp16"], CPU)


def test_sample_is_seeded_pairs_the_data_layer_reads_back(tmp_path):
    pair_path, fasta_path = write_pair_files(tmp_path, random_pairs(40, seed=3, proteins=12))
    pairs, sequences = sample_pairs(pair_path, fasta_path, count=10, seed=1)
    assert len(pairs) == 10 and all(isinstance(p, Pair) for p in pairs)
    assert (pairs, sequences) == sample_pairs(pair_path, fasta_path, count=10, seed=1)
    assert {p.protein_a for p in pairs} | {p.protein_b for p in pairs} == set(sequences)
    assert all(p.sequence_a == sequences[p.protein_a] for p in pairs)
    fixed, fixed_sequences = sample_pairs(pair_path, fasta_path, 10, 1, fixed_length=7)
    assert [p[:2] for p in fixed] == [p[:2] for p in pairs]  # the same pairs, other residues
    assert {len(s) for s in fixed_sequences.values()} == {7}
    # Without the pair file, random proteins, each in about 3 pairs.
    synthetic, synthetic_sequences = sample_pairs(tmp_path / "none.tsv", None, 30, 0, 5)
    assert len(synthetic) == 30 and len(synthetic_sequences) <= 20
    assert {p.label for p in synthetic} <= {0.0, 1.0}
    config = benchmark_config(["--max_residues", "64"], CPU)
    with sample_source(pairs, config) as source:
        assert isinstance(source, PairSource) and source.report.rows == 10
        assert list(source.pair_rows()) == pairs and source.max_residues == 64
        assert Path(config.run.output_dir) == Path(source.files[0]).parent  # the caches' folder
    assert not Path(source.files[0]).exists()  # the temporary files are gone


def test_time_steps_times_each_batch():
    seen = []
    seconds = time_steps(seen.append, [{"a": 1}, {"a": 2}], CPU)
    assert seen == [{"a": 1}, {"a": 2}] and len(seconds) == 2 and min(seconds) >= 0
