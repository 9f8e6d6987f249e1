"""What gpu_check.sh prints of its rows that their commands do not (light: no torch but for
`versions`).

python -m benchmarks.gpu_report trainer_row NAME OUTPUT_DIR
python -m benchmarks.gpu_report versions
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


def versions() -> None:
    import torch

    from ppi_dist.training.machine import default_device, machine_report

    print("\n".join(machine_report(torch.device(default_device()))))


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"trainer_row": trainer_row, "versions": versions}[command](*arguments)
