"""real_data.py's tables of metrics over seeds (light: gpu_check.sh's report calls it per row;
every table is `ppi_dist.tables.markdown_table`)."""

from __future__ import annotations

from ppi_dist.tables import markdown_table

METRICS = ("accuracy", "precision", "recall", "f1", "score", "mcc", "auroc", "aupr")
METRICS_HEADER = ("predictor", "accuracy", "precision", "recall", "F1", "weighted", "MCC")
METRICS_HEADER += ("AUROC", "AUPR", "threshold")


def metrics_row(label: str, record: dict) -> tuple[str, ...]:
    """A predictor's metrics: one run's, or mean ± sd over seeds (`record["mean_sd"]`)."""
    if len(record["runs"]) == 1:
        run = record["runs"][0]
        return (label, *(f"{run[k]:.3f}" for k in METRICS), f"{run['threshold']:.3g}")
    stats = record["mean_sd"]
    cells = [f"{stats[k]['mean']:.3f} ± {stats[k]['sd']:.3f}" for k in METRICS]
    threshold = stats["threshold"]
    return (label, *cells, f"{threshold['mean']:.3g} ± {threshold['sd']:.2g}")


def metrics_section(name: str, result: dict, published: str) -> str:
    """One dataset's table of every predictor over its seeds, the published figures and the
    commands run."""
    predictors = result["predictors"]
    seeds = sorted({seed for record in predictors.values() for seed in record["seeds"]})
    rows = []
    for label, record in predictors.items():
        # A predictor with fewer seeds than the section (a run cut short) says so.
        shown = label if record["seeds"] == seeds else f"{label} (seeds {record['seeds']})"
        rows.append(metrics_row(shown, record))
    lines = [f"### {name} ({len(seeds)} seed{'s' * (len(seeds) > 1)}: {seeds})", ""]
    lines += [*markdown_table(METRICS_HEADER, rows), "", f"Published: {published}.", ""]
    lines += [f"- {label}: `{command}`" for label, command in result["commands"].items()]
    return "\n".join(lines)
