"""all_vs_all.py: small runs (tiny shape, a few proteins): every pair both ways gives the same
probabilities; the screens keep their share and measure recall; a labelled file's table."""

from __future__ import annotations

import re

import numpy as np

from benchmarks import all_vs_all
from ppi_dist.data.fasta import write_fasta
from ppi_dist.data.pairs import sequences_of
from tests.helpers import random_pairs

TINY = ["--encoder_shape", "tiny", "--cross_attention_heads", "4"]


def _fasta(tmp_path):
    return write_fasta(tmp_path / "proteins.fasta", sequences_of(random_pairs(8, 2, proteins=7)))


def test_all_vs_all_small_run(tmp_path, capsys):
    flags = ["--fasta", str(_fasta(tmp_path)), "--proteins", "5", "--naive_pairs", "4"]
    all_vs_all.main([*flags, "--naive_batch", "2", *TINY])
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ") and "transformers" in printed
    assert "5 proteins (first of proteins.fasta)" in printed and "10 unordered pairs" in printed
    difference = re.search(r"largest \|difference\| from the cached scores: ([\d.e+-]+)", printed)
    assert difference and float(difference.group(1)) < 1e-2  # fp16 cache against fp32
    assert re.search(r"speed-up of encode-once: [\d.,]+x end to end", printed)
    assert "cross-attention heads 4" in printed and "peak RSS " in printed


def test_screens_keep_their_share_and_report_recall(tmp_path, capsys):
    flags = ["--fasta", str(_fasta(tmp_path)), "--proteins", "6", "7", "--full_up_to", "6"]
    all_vs_all.main([*flags, "--screens", "0.2", "1", "--naive_pairs", "0", *TINY])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if "| " in line]
    cells = {(r[0].strip(), r[2].strip()): [c.strip() for c in r] for r in rows}
    assert cells[("6", "full")][4] == "15" and cells[("6", "screen 0.2")][4] == "3"
    assert cells[("6", "screen 1")][5] == "1.000, 1.000"  # every pair kept: full recall
    assert cells[("7", "screen 0.2")][5] == "-"  # no full run at 7 to measure recall against
    assert any(r[0].strip().startswith("yeast (6,000 proteins") for r in rows)


def test_a_labelled_file_ranks_the_kept_pairs_above_the_rest(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    full = np.clip(labels * 0.3 + rng.random(200) * 0.7, 0, 1)  # informative
    first = np.clip(labels * 0.1 + rng.random(200) * 0.9, 0, 1)  # weaker
    path = tmp_path / "predictions_test.tsv"
    lines = ["protein_a\tprotein_b\tprobability\tpredicted\tlabel\tfirst_pass"]
    lines += [
        f"A{i}\tB{i}\t{f}\t0\t{y}\t{s}"
        for i, (f, y, s) in enumerate(zip(full, labels, first, strict=True))
    ]
    path.write_text("\n".join(lines) + "\n")
    all_vs_all.main(["--labelled", str(path), "--screens", "0.1", "1"])
    rows = {
        r.split("|")[1].strip(): r.split("|")
        for r in capsys.readouterr().out.splitlines()
        if "| " in r
    }
    auroc = {
        name: float(row[3]) for name, row in rows.items() if name != "ranking" and "-" not in row[3]
    }
    assert auroc["screen 1"] == auroc["full (every pair by cross-attention)"]
    assert auroc["first pass alone"] < auroc["screen 0.1"] < auroc["screen 1"]
