"""`ppi-dist estimate`: an epoch of a pair file counted by the FLOP model and projected."""

from __future__ import annotations

import re

import pytest

from ppi_dist.cli.estimate import main
from ppi_dist.data.fasta import write_fasta
from ppi_dist.data.pairs import sequences_of, write_pairs
from tests.helpers import random_pairs


@pytest.fixture
def pair_flags(tmp_path) -> list[str]:
    pairs = random_pairs(30, seed=1, proteins=10)
    pair_path = write_pairs(tmp_path / "pairs.tsv", pairs)
    fasta = write_fasta(tmp_path / "sequences.fasta", sequences_of(pairs))
    return ["--pairs", str(pair_path), "--fasta", str(fasta)]


def test_an_epoch_is_counted_with_and_without_batches_and_projected(pair_flags, capsys):
    assert main([*pair_flags, "--shape", "8M", "--max_tokens", "2048", "--gpus", "1", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("8M shape: d=320, 6 layers, f=1280")
    assert "epoch of " in printed and ": 30 pairs;" in printed
    counts = re.findall(r"^  (\d+) steps, pair tokens ([\d,]+)", printed, re.M)
    assert len(counts) == 2 and counts[0] == ("30", counts[1][1])  # same pair tokens
    assert int(counts[1][0]) < 30  # batched: fewer steps than pairs
    hours = [float(h) for h in re.findall(r"^  2 GPU\(s\): ([\d.]+) h", printed, re.M)]
    assert len(hours) == 2 and "trunk cache" not in printed


def test_lora_on_the_top_layers_costs_less_per_epoch_and_its_trunk_once(pair_flags, capsys):
    def model_flops(flags: list[str]) -> float:
        main([*pair_flags, "--skip_batching", "--gpus", "1", *flags])
        printed = capsys.readouterr().out
        number, unit = re.search(r"model FLOPs ([\d.]+) (\w)FLOP", printed).groups()
        return float(number) * {"T": 1e12, "G": 1e9, "P": 1e15, "M": 1e6}[unit], printed

    every, _ = model_flops(["--shape", "8M"])
    top, printed = model_flops(["--shape", "8M", "--lora_layers", "2"])
    assert top < every / 2 and "trunk cache build over 10 windows" in printed


def test_an_mfu_out_of_range_is_refused_by_name(pair_flags, capsys):
    assert main([*pair_flags, "--mfu", "0"]) == 2
    assert "argument --mfu: must lie strictly between 0 and 1" in capsys.readouterr().err
