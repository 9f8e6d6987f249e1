"""A trainer row of gpu_check.sh: its median pairs/s and test metrics as a one-row table
(light: no torch).

python -m benchmarks.gpu_report NAME OUTPUT_DIR
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from ppi_dist.tables import markdown_table


def trainer_row(name: str, out: str) -> None:
    """A trainer run's median pairs/s over its logged windows after the first, and its test
    metrics, as a one-row table."""
    log, metrics = Path(out) / "train_log.jsonl", Path(out) / "metrics.json"
    lines = log.read_text().splitlines() if log.exists() else []
    rates = [json.loads(line)["train/pairs_per_s"] for line in lines]
    rate = f"{statistics.median(rates[1:] or rates):.2f}" if rates else "-"
    test = json.loads(metrics.read_text()).get("test") if metrics.exists() else None
    shown = "-"
    if test:
        shown = (
            f"accuracy {test['accuracy']:.3f} AUROC {test['auroc']:.3f} AUPR {test['aupr']:.3f} "
            f"MCC {test['mcc']:.3f} (threshold {test['threshold']:.2f})"
        )
    header = ("trainer run", "pairs/s", "log windows", "test")
    print("\n".join(markdown_table(header, [(name, rate, len(rates), shown)])))


if __name__ == "__main__":
    trainer_row(*sys.argv[1:])
