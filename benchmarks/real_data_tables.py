"""real_data.py's records: every seed's metrics per predictor, pooled with earlier runs of
the same settings, written as results.json and markdown tables (mean ± sd over seeds)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from benchmarks.tables import markdown_table

TABLE_METRICS = ("accuracy", "precision", "recall", "f1", "score", "mcc", "auroc", "aupr")


def read_earlier(files: list[Path], datasets: list[str], settings: dict) -> dict[str, dict]:
    """Per dataset: {"settings", "predictors": {label: {seed: metrics}}, "commands"}; a
    dataset run now pools only with runs of `settings`, others only with their own."""
    earlier: dict[str, dict] = {}
    for path in files:
        for name, result in json.loads(path.read_text()).items():
            result.setdefault("settings", {})  # none: refused below
            wanted = settings if name in datasets else earlier.get(name, result)["settings"]
            found = result["settings"]
            differ = [
                f"{key} {found.get(key)!r} there, {value!r} here"
                for key, value in wanted.items()
                if found.get(key) != value
            ]
            if differ:
                raise SystemExit(
                    f"{path}: {name}: its runs were made with other settings ("
                    + "; ".join(differ)
                    + "); seeds are pooled only with like runs: pass another --work_dir"
                )
            into = earlier.setdefault(
                name, {"settings": result["settings"], "predictors": {}, "commands": {}}
            )
            for label, record in result["predictors"].items():
                into["predictors"].setdefault(label, {}).update(
                    zip(record["seeds"], record["runs"], strict=True)
                )
            into["commands"].update(result["commands"])
    return earlier


def row(label: str, m: dict) -> tuple[str, ...]:
    return (label, *(f"{m[k]:.3f}" for k in TABLE_METRICS), f"{m['threshold']:.3g}")


def mean_sd(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Per metric: mean and sample standard deviation (0 for one run)."""
    out = {}
    for name in (*TABLE_METRICS, "threshold"):
        values = np.array([run[name] for run in runs], dtype=float)
        sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[name] = {"mean": float(values.mean()), "sd": sd, "n": int(values.size)}
    return out


def row_mean_sd(label: str, stats: dict) -> tuple[str, ...]:
    cells = [f"{stats[k]['mean']:.3f} ± {stats[k]['sd']:.3f}" for k in TABLE_METRICS]
    threshold = stats["threshold"]
    return (label, *cells, f"{threshold['mean']:.3g} ± {threshold['sd']:.2g}")


def seeds_of(per_seed: dict[str, dict[int, dict]]) -> list[int]:
    return sorted({seed for runs in per_seed.values() for seed in runs})


def pooled_result(per_seed: dict[str, dict[int, dict]], commands: dict, settings: dict) -> dict:
    predictors = {}
    for label, by_seed in per_seed.items():
        seeds = sorted(by_seed)
        runs = [by_seed[seed] for seed in seeds]
        predictors[label] = {"seeds": seeds, "runs": runs, "mean_sd": mean_sd(runs)}
    return {"settings": settings, "predictors": predictors, "commands": commands}


def section(name: str, result: dict, published: str) -> str:
    """One dataset's table, the published figures and the commands run."""
    predictors = result["predictors"]
    seeds = sorted({seed for record in predictors.values() for seed in record["seeds"]})
    rows = []
    for label, record in predictors.items():
        # A predictor with fewer seeds than the section (a run cut short) says so.
        shown = label if record["seeds"] == seeds else f"{label} (seeds {record['seeds']})"
        if len(record["runs"]) == 1:
            rows.append(row(shown, record["runs"][0]))
        else:
            rows.append(row_mean_sd(shown, record["mean_sd"]))
    lines = [f"### {name} ({len(seeds)} seed{'s' * (len(seeds) > 1)}: {seeds})", ""]
    lines += [*markdown_table(HEADER, rows), "", f"Published: {published}.", ""]
    lines += [f"- {label}: `{c}`" for label, c in result["commands"].items()]
    return "\n".join(lines)


HEADER = ("predictor", "accuracy", "precision", "recall", "F1", "weighted", "MCC", "AUROC", "AUPR")
HEADER += ("threshold",)


def write_results(work: Path, results: dict, published: Mapping[str, str]) -> None:
    """results.md and results.json in `work`."""
    sections = [section(name, result, published[name]) for name, result in results.items()]
    text = "\n\n".join(sections)
    (work / "results.md").write_text(text + "\n")
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
