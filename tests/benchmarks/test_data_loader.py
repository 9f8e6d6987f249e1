"""data_loader.py: a dry run of the frozen-encoder input stage at two pair-token budgets."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from benchmarks.core import write_pair_files
from tests.helpers import PROCESS_LIMIT_S, REPO, random_pairs


@pytest.mark.multiprocess
def test_data_loader_frozen_dry_run(tmp_path):
    pair_path, fasta_path = write_pair_files(tmp_path, random_pairs(301, seed=3, proteins=60))
    command = [
        sys.executable,
        "-m",
        "benchmarks.data_loader",
        "--pairs",
        str(pair_path),
        "--fasta",
        str(fasta_path),
        "--frozen_only",
        "--workers",
        "0",
        "--frozen_pairs",
        "100",
        "--frozen_max_tokens",
        "4096,16384",
    ]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=PROCESS_LIMIT_S
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "torch" in done.stdout and "datasets" in done.stdout
    assert "validate (FASTA + pair file)" in done.stdout and "301 usable pairs" in done.stdout
    assert re.search(r"peak RSS after validation: \d+ MiB", done.stdout)
    for budget in ("4,096", "16,384"):
        line = rf"pair-token budget {budget}: \d+ pairs/batch; steady .* [\d,]+ pairs/s"
        assert re.search(line, done.stdout), budget
