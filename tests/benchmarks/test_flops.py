"""The FLOP model's projection of an epoch of a pair file."""

from __future__ import annotations

import re

from benchmarks import flops
from benchmarks.core import write_pair_files
from tests.helpers import random_pairs


def test_projection_counts_an_epoch_of_a_pair_file(tmp_path, capsys):
    pair_path, fasta_path = write_pair_files(tmp_path, random_pairs(30, seed=1, proteins=10))
    flags = ["--pairs", str(pair_path), "--fasta", str(fasta_path), "--gpus", "1", "2"]
    flops.main([*flags, "--encoder_shape", "tiny", "--max_tokens", "2048"])
    printed = capsys.readouterr().out
    assert printed.startswith("tiny shape: d=64, 2 layers, f=256")
    assert "epoch of " in printed and ": 30 pairs;" in printed
    counts = re.findall(r"^  (\d+) steps, pair tokens ([\d,]+)", printed, re.M)
    assert len(counts) == 2 and counts[0] == ("30", counts[1][1])  # same pair tokens
    assert int(counts[1][0]) < 30  # batched: fewer steps than pairs
    assert len(re.findall(r"^  2 GPU\(s\): [\d.]+ h", printed, re.M)) == 2
