"""Path of the `evaluate` module, for `evaluate.load(ppi_dist.evaluation.ppi_metric.PATH)`."""

from pathlib import Path

PATH = str(Path(__file__).with_name("ppi_metric.py"))
