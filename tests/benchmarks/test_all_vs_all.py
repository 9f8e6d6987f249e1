"""all_vs_all.py: a small run (tiny shape, a few proteins) scores every pair both ways and
finds the same probabilities."""

from __future__ import annotations

import re

from benchmarks import all_vs_all
from ppi_dist.data.fasta import write_fasta
from ppi_dist.data.pairs import sequences_of
from tests.helpers import random_pairs


def test_all_vs_all_small_run(tmp_path, capsys):
    pairs = random_pairs(8, seed=2, proteins=6)
    fasta = write_fasta(tmp_path / "proteins.fasta", sequences_of(pairs))
    flags = ["--fasta", str(fasta), "--proteins", "5", "--naive_pairs", "4", "--naive_batch", "2"]
    all_vs_all.main([*flags, "--encoder_shape", "tiny", "--cross_attention_heads", "4"])
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ") and "transformers" in printed
    assert "5 proteins (first of proteins.fasta)" in printed and "10 unordered pairs" in printed
    difference = re.search(r"largest \|difference\| from the cached scores: ([\d.e+-]+)", printed)
    assert difference and float(difference.group(1)) < 1e-2  # fp16 cache against fp32
    assert re.search(r"speed-up of encode-once: [\d.,]+x end to end", printed)
    assert "cross-attention heads 4" in printed and "peak RSS " in printed
