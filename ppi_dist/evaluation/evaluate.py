"""Evaluate a saved model on a labelled pair file, scored exactly as training scored it.

    options = EvaluateOptions(train="train.tsv", valid="valid.tsv")
    report = evaluate(model, "test.tsv", "seqs.fasta", options)
    print(describe(report)); write_outputs(report, Path("eval"))

Scores every pair through `inference.scoring` (the path training's evaluation and `predict`
use), and reports (`ppi-dist evaluate` prints it and writes it beside the model folder):
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

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppi_dist.data.pairs import Pair, PairSource, sequences_of
from ppi_dist.errors import DataError, UserError
from ppi_dist.evaluation.audit import read_pairs
from ppi_dist.evaluation.bootstrap import bootstrap_intervals
from ppi_dist.evaluation.calibration import calibration_intervals
from ppi_dist.evaluation.metrics import auroc_aupr, trivial_predictors
from ppi_dist.evaluation.plots import plot_evaluation, plot_reliability
from ppi_dist.evaluation.screening import screen_ranking
from ppi_dist.evaluation.threshold import compare_objectives, describe_objectives, evaluate_at
from ppi_dist.inference.cache import EmbeddingCache, covering_cache
from ppi_dist.inference.scoring import (
    ScoredPairs,
    encode_proteins,
    score_pairs,
    scoring_windowing,
)
from ppi_dist.models.calibration import calibrated
from ppi_dist.models.windows import Windowing

CLASSES = {2: "C1 (both seen in training)", 1: "C2 (one seen)", 0: "C3 (none seen)"}


@dataclass(frozen=True)
class EvaluateOptions:
    """What `evaluate` reports beside the metrics, and how it reads and encodes.

    `train`: the training pair file, for the C1/C2/C3 classes. `valid`: a validation pair
    file, on which every threshold objective is chosen. `n_resamples`: bootstrap resamples.
    `windowing`: how long proteins are read; None: the model's own settings, the ones its
    threshold was chosen at (`inference.scoring.scoring_windowing`). `cache_dir`: the
    per-residue states are read from there when it covers the proteins of the pairs and
    `valid` (see `reusable_cache`), else encoded into it; without it they are encoded in
    memory at every call. `allow_contradictory_labels`: score a pair labelled 1 on one line
    and 0 on another as given (published yeast test files hold a few), instead of refusing.
    """

    train: str | Path | None = None
    valid: str | Path | None = None
    n_resamples: int = 1000
    windowing: Windowing | None = None
    cache_dir: str | Path | None = None
    allow_contradictory_labels: bool = False


def evaluate(
    model, pairs: str | Path, fasta: str | Path | None, options: EvaluateOptions | None = None
) -> dict:
    """Scores and metrics of `pairs` (see the module docstring); returns everything as JSON."""
    options = options or EvaluateOptions()
    threshold = model.config.decision_threshold
    if threshold is None:
        raise UserError("the model folder has no decision_threshold; train it, or pass one")
    windowing = options.windowing or scoring_windowing(model)
    allow = options.allow_contradictory_labels
    rows = _read_pairs(pairs, fasta, windowing, allow)
    valid = options.valid
    valid_rows = _read_pairs(valid, fasta, windowing, allow) if valid is not None else []
    cache = None
    if options.cache_dir is not None:
        cache = reusable_cache(model, [*rows, *valid_rows], options.cache_dir, windowing)
    scored = _score(model, rows, cache, windowing, pairs)
    objective = model.config.threshold_objective or "weighted"
    result = evaluate_at(scored.scores, scored.labels, threshold, objective=objective)
    report = {
        "pairs": str(pairs),
        "threshold": threshold,
        "threshold_objective": model.config.threshold_objective,
        "encoding": {
            "max_residues": windowing.max_residues,
            "window_overlap": windowing.overlap,
            "windows": windowing.mode,
        },
        "metrics": result.summary(),
        "intervals_95": bootstrap_intervals(
            scored.scores, scored.labels, threshold, n_resamples=options.n_resamples
        ),
        "trivial": trivial_predictors(scored.labels),
        "_scored": scored,
        "_result": result,
    }
    report["calibration"], report["_calibrated"] = _calibration(model, scored, options.n_resamples)
    if ranking := first_pass_ranking(scored):
        report["first_pass"] = ranking
    if options.train is not None:
        report["by_class"] = _by_class(scored, options.train, threshold, objective)
    if valid is not None:
        valid_scored = _score(model, valid_rows, cache, windowing, valid)
        comparison = compare_objectives(
            valid_scored.scores, valid_scored.labels, scored.scores, scored.labels
        )
        report["objectives"] = {
            objective: {"threshold": pair["validation"].threshold, "test": pair["test"].summary()}
            for objective, pair in comparison.items()
        }
        report["_comparison"] = comparison
    return report


def first_pass_ranking(scored: ScoredPairs) -> dict | None:
    """The first pass's AUROC and AUPR on labelled pairs, what `predict --screen` ranks by,
    and what each screen share would keep (`screening.screen_ranking`); None without a
    first pass or labels."""
    if scored.first_pass is None or scored.labels is None:
        return None
    auroc, aupr = auroc_aupr(scored.first_pass, scored.labels)
    screens = screen_ranking(scored.scores, scored.first_pass, scored.labels)
    return {"auroc": auroc, "aupr": aupr, "screens": screens}


def _calibration(model, scored: ScoredPairs, n_resamples: int) -> tuple[dict, np.ndarray | None]:
    """The model's calibration as the report records it, and the calibrated probabilities
    (None without a calibration)."""
    calibration = getattr(model, "calibration", None)
    threshold = model.config.decision_threshold
    probabilities = calibrated(model, scored.scores)
    return {
        "method": None if calibration is None else calibration.method,
        "fitted_on": None if calibration is None else calibration.fitted_on,
        "prior": None if calibration is None else calibration.prior,
        # the threshold is applied to the raw score; the same cut on the calibrated scale:
        "threshold_calibrated": None
        if calibration is None
        else float(calibration.apply([threshold])[0]),
        "intervals_95": calibration_intervals(
            scored.scores,
            scored.scores if probabilities is None else probabilities,
            scored.labels,
            n_resamples=n_resamples,
        ),
    }, probabilities


def _by_class(
    scored: ScoredPairs, train: str | Path, threshold: float, objective: str
) -> dict[str, dict]:
    """The metrics per C1/C2/C3 class: both, one or neither protein in `train`."""
    seen = {p for pair in read_pairs(train) for p in pair[:2]}
    pairs = zip(scored.protein_a, scored.protein_b, strict=True)
    classes = np.array([(a in seen) + (b in seen) for a, b in pairs])
    by_class = {}
    for k, name in CLASSES.items():
        keep = classes == k
        if keep.any():
            part = evaluate_at(
                scored.scores[keep], scored.labels[keep], threshold, objective=objective
            )
            by_class[name] = {"pairs": int(keep.sum()), **part.summary()}
    return by_class


def reusable_cache(
    model, pairs: Sequence[Pair], cache_dir: str | Path, windowing: Windowing
) -> EmbeddingCache:
    """The cache in `cache_dir` when it covers these pairs' proteins from this model's encoder
    weights and windowing (a frozen-encoder run's `embedding_cache`, or an earlier
    evaluation's); else these proteins encoded once into it, as `predict --cache_dir` does."""
    wanted = sequences_of(pairs)
    cache = covering_cache(Path(cache_dir), model, wanted, windowing)
    if cache is None:
        cache = encode_proteins(
            model, wanted, directory=cache_dir, windowing=windowing, progress=True
        )
    return cache


def _read_pairs(
    path: str | Path, fasta: str | Path | None, windowing: Windowing, allow_contradictory: bool
) -> list[Pair]:
    """The labelled pairs of `path`, refused before any scoring when they hold one class."""
    source = PairSource(
        path,
        fasta,
        labeled=True,
        max_residues=windowing.max_residues,
        allow_contradictory_labels=allow_contradictory,
    )
    classes = source.validate().classes
    if not classes[0] or not classes[1]:  # checked before scoring: nothing half-written
        only = 1 if classes[1] else 0
        raise DataError(
            path,
            f"every pair is labelled {only} ({classes[only]:,} pairs); AUROC, AUPR, the "
            "threshold metrics and their plots need both classes: evaluate on a file with "
            "positive and negative pairs (`ppi-dist predict` scores one class)",
        )
    return list(source.pair_rows())


def _score(
    model, pairs: list[Pair], cache: EmbeddingCache | None, windowing: Windowing, path
) -> ScoredPairs:
    name = Path(path).name
    return score_pairs(model, pairs, cache=cache, windowing=windowing, progress=name)


def describe(report: dict) -> str:
    result, encoding = report["_result"], report["encoding"]
    lines = [
        f"{report['pairs']}: {result.n} pairs; threshold {report['threshold']:.4f} "
        f"(saved with the model, objective {report['threshold_objective']})",
        "encoding: "
        + Windowing(
            encoding["max_residues"], encoding["window_overlap"], encoding["windows"]
        ).describe(),
        result.describe(),
        f"test accuracy: {result.accuracy:.3f}  AUROC: {result.auroc:.3f}  "
        f"AUPR: {result.aupr:.3f}  MCC: {result.mcc:.3f}",
        "95% bootstrap intervals (pairs resampled): "
        + ", ".join(f"{k} [{lo:.3f}, {hi:.3f}]" for k, (lo, hi) in report["intervals_95"].items()),
        *screen_lines(report.get("first_pass")),
        "trivial predictors: "
        + "; ".join(
            f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items())
            for name, values in report["trivial"].items()
        ),
    ]
    calibration = report["calibration"]
    measured = calibration["intervals_95"]
    after = calibration["method"] is not None
    for measure in ("ece", "brier"):
        raw = measured[f"{measure}_raw"]
        line = f"{measure.upper()} raw {raw['value']:.4f} [{raw['low']:.4f}, {raw['high']:.4f}]"
        if after:
            cal = measured[f"{measure}_calibrated"]
            line += (
                f" -> calibrated ({calibration['method']}, fitted on "
                f"{calibration['fitted_on']}) {cal['value']:.4f} [{cal['low']:.4f}, "
                f"{cal['high']:.4f}]"
            )
        lines.append(line)
    if not after:
        lines.append("no calibration.json in the model folder: probabilities are raw scores")
    else:
        prior = calibration["prior"]
        held = "the validation set's balance" if prior is None else f"{prior:g} positive"
        share = float(np.mean(report["_scored"].labels))
        lines.append(f"calibrated probabilities hold at {held}; this file is {share:.3f} positive")
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
    """predictions.tsv, metrics.json and the plots of `evaluate`'s report, into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scored, result = report["_scored"], report["_result"]
    scored.write_tsv(out_dir / "predictions.tsv", report["threshold"], report.get("_calibrated"))
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    (out_dir / "metrics.json").write_text(json.dumps(public, indent=2, default=float) + "\n")
    plots = plot_evaluation(
        scored.scores,
        scored.labels,
        result,
        out_dir / "plots",
        title_prefix=Path(report["pairs"]).name,
    )
    reliability_path = out_dir / "plots" / "reliability.png"
    title = Path(report["pairs"]).name
    calibrated = report.get("_calibrated")
    return [
        *plots,
        plot_reliability(scored.scores, calibrated, scored.labels, reliability_path, title),
    ]


def screen_lines(first_pass: dict | None) -> list[str]:
    """The first pass's ranking, then what each `predict --screen` share would keep."""
    if first_pass is None:
        return []
    lines = [f"first pass (screen): AUROC {first_pass['auroc']:.3f}  AUPR {first_pass['aupr']:.3f}"]
    for share, kept in first_pass["screens"].items():
        lines.append(
            f"  --screen {share}: two-stage AUROC {kept['auroc']:.4f}  AUPR {kept['aupr']:.4f}; "
            f"keeps {kept['top_1']:.3f} of SE-CAI's top 1%, {kept['top_5']:.3f} of its top 5%"
        )
    return lines
