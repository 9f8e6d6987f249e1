"""Evaluate a saved model on a labelled pair file, scored exactly as training scored it.

    python -m ppi_dist.evaluate --model outputs/run/model --pairs test.tsv --fasta seqs.fasta
        [--train train.tsv] [--out eval/] [--valid valid.tsv]

Scores every pair through `scoring` (the path training's evaluation and `predict` use), then
prints and writes (`--out`, default `<model>/../evaluation_<pairs name>`):
- metrics at the model's saved decision threshold (chosen on validation when it trained),
  with AUROC, AUPR and MCC, and 95% bootstrap confidence intervals over pairs;
- the trivial predictors on the same pairs ("all positive", "all negative", a random
  ranking) beside them;
- with `--train`: the same metrics per C1/C2/C3 class (both, one or neither protein seen in
  training; Park & Marcotte 2012), since C1 pairs reward remembering proteins;
- with `--valid`: every threshold objective chosen on that validation file, with its metrics
  on these pairs (never a threshold chosen on the pairs being evaluated);
- predictions.tsv, metrics.json and the PR, ROC and threshold plots.
On the test file of a run, the metrics equal what the trainer printed for `test`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ppi_dist.audit import read_pairs
from ppi_dist.cli import run_tool
from ppi_dist.data import PairSource, rows_and_sequences
from ppi_dist.errors import UserError
from ppi_dist.metrics import (
    bootstrap_intervals,
    compare_objectives,
    describe_objectives,
    evaluate_at,
    trivial_predictors,
)
from ppi_dist.scoring import score_rows

CLASSES = {2: "C1 (both seen in training)", 1: "C2 (one seen)", 0: "C3 (none seen)"}


def evaluate(
    model,
    pairs: str | Path,
    fasta: str | Path | None,
    *,
    train: str | Path | None = None,
    valid: str | Path | None = None,
    n_resamples: int = 1000,
    max_residues: int = 1022,
) -> dict:
    """Scores and metrics of `pairs` (see the module docstring); returns everything as JSON."""
    threshold = model.config.decision_threshold
    if threshold is None:
        raise UserError("the model folder has no decision_threshold; train it, or pass one")
    source = PairSource(pairs, fasta, labeled=True, max_residues=max_residues)
    scored = score_rows(
        model,
        *rows_and_sequences(source.pair_rows()),
        max_residues=max_residues,
        progress=Path(pairs).name,
    )
    objective = model.config.threshold_objective or "weighted"
    result = evaluate_at(scored.scores, scored.labels, threshold, objective=objective)
    report = {
        "pairs": str(pairs),
        "threshold": threshold,
        "threshold_objective": model.config.threshold_objective,
        "metrics": result.summary(),
        "intervals_95": bootstrap_intervals(
            scored.scores, scored.labels, threshold, n_resamples=n_resamples
        ),
        "trivial": trivial_predictors(scored.labels),
        "_scored": scored,
        "_result": result,
    }
    if train is not None:
        seen = {p for a, b, _ in read_pairs(train) for p in (a, b)}
        classes = np.array(
            [
                (a in seen) + (b in seen)
                for a, b in zip(scored.protein_a, scored.protein_b, strict=True)
            ]
        )
        report["by_class"] = {}
        for k, name in CLASSES.items():
            keep = classes == k
            if keep.any():
                part = evaluate_at(
                    scored.scores[keep], scored.labels[keep], threshold, objective=objective
                )
                report["by_class"][name] = {"pairs": int(keep.sum()), **part.summary()}
    if valid is not None:
        valid_source = PairSource(valid, fasta, labeled=True, max_residues=max_residues)
        valid_scored = score_rows(
            model,
            *rows_and_sequences(valid_source.pair_rows()),
            max_residues=max_residues,
            progress=Path(valid).name,
        )
        comparison = compare_objectives(
            valid_scored.scores, valid_scored.labels, scored.scores, scored.labels
        )
        report["objectives"] = {
            objective: {"threshold": pair["validation"].threshold, "test": pair["test"].summary()}
            for objective, pair in comparison.items()
        }
        report["_comparison"] = comparison
    return report


def describe(report: dict) -> str:
    result = report["_result"]
    lines = [
        f"{report['pairs']}: {result.n} pairs; threshold {report['threshold']:.4f} "
        f"(saved with the model, objective {report['threshold_objective']})",
        result.describe(),
        f"test accuracy: {result.accuracy:.3f}  AUROC: {result.auroc:.3f}  "
        f"AUPR: {result.aupr:.3f}  MCC: {result.mcc:.3f}",
        "95% bootstrap intervals (pairs resampled): "
        + ", ".join(f"{k} [{lo:.3f}, {hi:.3f}]" for k, (lo, hi) in report["intervals_95"].items()),
        "trivial predictors: "
        + "; ".join(
            f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items())
            for name, values in report["trivial"].items()
        ),
    ]
    for name, values in report.get("by_class", {}).items():
        lines.append(
            f"{name}: {values['pairs']} pairs, accuracy {values['accuracy']:.3f}, "
            f"AUROC {values['auroc']:.3f}, MCC {values['mcc']:.3f}"
        )
    if "_comparison" in report:
        lines += [
            "each objective chosen on --valid, metrics here:",
            describe_objectives(report["_comparison"]),
        ]
    return "\n".join(lines)


def write_outputs(report: dict, out_dir: Path) -> list[Path]:
    from ppi_dist.plots import plot_evaluation

    out_dir.mkdir(parents=True, exist_ok=True)
    scored, result = report["_scored"], report["_result"]
    scored.write_tsv(out_dir / "predictions.tsv", report["threshold"])
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    (out_dir / "metrics.json").write_text(json.dumps(public, indent=2, default=float) + "\n")
    return plot_evaluation(
        scored.scores,
        scored.labels,
        result,
        out_dir / "plots",
        title_prefix=Path(report["pairs"]).name,
    )


def main(argv: list[str] | None = None) -> int:
    """The command line; user errors print one line and exit 2 (`--debug`: traceback)."""
    return run_tool(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppi_dist.evaluate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", required=True, help="saved SE-CAI folder or Hub repo id")
    parser.add_argument("--pairs", required=True, help="labelled pair file to evaluate")
    parser.add_argument("--fasta", help="sequences (unless the pair file has them inline)")
    parser.add_argument("--train", help="the training pair file: metrics per C1/C2/C3 class")
    parser.add_argument("--valid", help="a validation pair file: every threshold objective")
    parser.add_argument("--out", help="output folder (default: beside the model folder)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--max_residues", type=int, default=1022)
    parser.add_argument(
        "--allow_encoder_mismatch",
        action="store_true",
        help="load even if the encoder weights differ",
    )
    args = parser.parse_args(argv)
    from ppi_dist.hub import load_model

    model = load_model(args.model, allow_encoder_mismatch=args.allow_encoder_mismatch)
    model = model.to("cuda" if torch.cuda.is_available() else "cpu")
    report = evaluate(
        model,
        args.pairs,
        args.fasta,
        train=args.train,
        valid=args.valid,
        n_resamples=args.bootstrap,
        max_residues=args.max_residues,
    )
    print(describe(report))
    default = Path(args.model).parent / f"evaluation_{Path(args.pairs).name.split('.')[0]}"
    for path in write_outputs(report, Path(args.out) if args.out else default):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
