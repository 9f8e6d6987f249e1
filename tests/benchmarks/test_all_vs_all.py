"""all_vs_all.py: small runs (tiny shape, a few proteins): every pair scored; the screens keep
their share and measure recall."""

from __future__ import annotations

import re

from benchmarks import all_vs_all
from ppi_dist.data.fasta import write_fasta
from ppi_dist.data.pairs import sequences_of
from tests.helpers import random_pairs

TINY = ["--encoder_shape", "tiny", "--cross_attention_heads", "4"]


def _fasta(tmp_path):
    return write_fasta(tmp_path / "proteins.fasta", sequences_of(random_pairs(8, 2, proteins=7)))


def test_all_vs_all_small_run(tmp_path, capsys):
    all_vs_all.main(["--fasta", str(_fasta(tmp_path)), "--proteins", "5", *TINY])
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ") and "transformers" in printed
    assert "5 proteins, read lengths mean" in printed and "10 unordered pairs" in printed
    assert re.search(r"^\| 5 +\| 10 +\| full +\| \d+ \+ \d+ +\| 10 ", printed, re.M)
    assert "cross-attention heads 4" in printed and "peak RSS " in printed


def test_screens_keep_their_share_and_report_recall(tmp_path, capsys):
    flags = ["--fasta", str(_fasta(tmp_path)), "--proteins", "6", "7", "--full_up_to", "6"]
    all_vs_all.main([*flags, "--screens", "0.2", "1", *TINY])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if "| " in line]
    cells = {(r[0].strip(), r[2].strip()): [c.strip() for c in r] for r in rows}
    assert cells[("6", "full")][4] == "15" and cells[("6", "screen 0.2")][4] == "3"
    assert cells[("6", "screen 1")][5] == "1.000, 1.000"  # every pair kept: full recall
    assert cells[("7", "screen 0.2")][5] == "-"  # no full run at 7 to measure recall against
    assert any(r[0].strip().startswith("yeast (6,000 proteins") for r in rows)
