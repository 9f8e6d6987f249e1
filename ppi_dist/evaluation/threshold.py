"""The decision threshold: searched on validation, applied elsewhere, and reported.

The threshold search maximises one of three objectives (`OBJECTIVES`):

- "weighted": w_acc*Acc + w_p*P + w_r*R + w_f1*F1, what the project's spec asks for. It can
  be gamed: "everything interacts" scores 0.667 with equal weights on balanced data, and a
  weak model's optimum sits next to it (a frozen 8M run on Bernett chose a threshold that
  called 99.9% of pairs positive);
- "accuracy": on balanced data a trivial predictor scores 0.5, so anything above it needs
  a real ranking;
- "mcc": a trivial predictor scores 0 at any class balance.

Whatever the objective, a searched threshold must predict both classes on the search set;
when no candidate does, the result says so (`two_class_found` False). Every result carries
the trivial predictors' scores beside it, the fraction it predicts positive, and the
threshold-free AUROC and AUPR. `compare_objectives` gives, for each objective, the
validation-chosen threshold and the test metrics at it; `selection_metric` is what the
trainer should rank checkpoints by ("auroc" rewards no trivial predictor).

One implementation serves the trainer, `evaluate`, the report and the `evaluate`-library
module in `evaluation/ppi_metric/`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ppi_dist.evaluation.metrics import (
    DEFAULT_WEIGHTS,
    auroc_aupr,
    check_scores_and_labels,
    confusion_counts,
    metrics_from_counts,
    weighted_score,
)

OBJECTIVES = ("weighted", "accuracy", "mcc")
SELECTION_METRICS = ("score", "aupr", "auroc", "mcc")
# A threshold that calls more than this fraction of pairs one class is reported as near-trivial.
NEAR_TRIVIAL_FRACTION = 0.95
FIXED_GRID = np.round(np.arange(1, 100) / 100, 2)  # 0.01 .. 0.99


@dataclass
class ThresholdResult:
    """The chosen threshold, its metrics, and what trivial predictors score on the same set."""

    threshold: float
    score: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    mcc: float
    auroc: float
    aupr: float
    n: int
    positive_fraction: float
    all_positive_score: float
    all_negative_score: float
    single_class: bool  # the chosen threshold predicts only one class
    beats_trivial: bool  # score above both trivial predictors' scores
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    # The curve behind the choice, for plots: one entry per candidate threshold.
    grid: dict[str, list[float]] = field(default_factory=dict, repr=False)
    # What the threshold maximised ("weighted", "accuracy", "mcc") and its value there.
    objective: str = "weighted"
    objective_value: float = float("nan")
    predicted_positive_fraction: float = float("nan")
    # False when no candidate threshold predicted both classes on the search set: the
    # threshold is then a trivial predictor's, kept only so that something is returned.
    two_class_found: bool = True

    @property
    def near_trivial(self) -> bool:
        """The threshold calls (nearly) every pair one class."""
        fraction = self.predicted_positive_fraction
        return bool(max(fraction, 1 - fraction) > NEAR_TRIVIAL_FRACTION)

    def summary(self) -> dict[str, float]:
        """Scalars only (for logging); the objective's name is left out (a string)."""
        out = asdict(self)
        out.pop("grid")
        out.pop("weights")
        out.pop("objective")
        for name in ("single_class", "beats_trivial", "two_class_found"):
            out[name] = float(out[name])
        return out

    def describe(self) -> str:
        lines = [
            f"threshold {self.threshold:.4f} (objective {self.objective}; predicts "
            f"{self.predicted_positive_fraction:.1%} positive): score {self.score:.4f} | accuracy "
            f"{self.accuracy:.4f} precision {self.precision:.4f} recall {self.recall:.4f} "
            f"F1 {self.f1:.4f} MCC {self.mcc:.4f} | AUROC {self.auroc:.4f} AUPR {self.aupr:.4f}",
            f"trivial predictors on the same {self.n:,} pairs ({self.positive_fraction:.1%} "
            f"positive): all positive {self.all_positive_score:.4f}, all negative "
            f"{self.all_negative_score:.4f}",
        ]
        if not self.two_class_found:
            lines.append(
                "WARNING: no candidate threshold predicts both classes on the set it was chosen "
                "on (constant scores?); this threshold is a trivial predictor's"
            )
        if self.single_class:
            lines.append(
                "WARNING: the chosen threshold predicts a single class; the score is that of a "
                "trivial predictor, not evidence of a working model"
            )
        elif not self.beats_trivial:
            lines.append(
                "WARNING: the weighted score does not beat the trivial predictors; judge the "
                "model by AUROC, AUPR and MCC"
            )
        if self.near_trivial and not self.single_class:
            majority = max(self.predicted_positive_fraction, 1 - self.predicted_positive_fraction)
            lines.append(
                f"WARNING: the threshold calls {majority:.1%} of pairs one class: close to a "
                "trivial predictor"
            )
        return "\n".join(lines)


def evaluate_at(
    scores,
    labels,
    threshold: float,
    weights: dict[str, float] | None = None,
    objective: str = "weighted",
) -> ThresholdResult:
    """All metrics at a given threshold (e.g. on test, at the one chosen on validation).

    Nothing is searched, so a threshold that predicts one class here is kept (and flagged).
    `objective` only names what `objective_value` reports.
    """
    return search_threshold(
        scores,
        labels,
        weights=weights,
        candidates=[threshold],
        objective=objective,
        require_both_classes=False,
    )


def candidate_thresholds(scores: np.ndarray, grid: str, candidates=None) -> np.ndarray:
    """The thresholds a search tries: `candidates` when given, else the `grid`'s."""
    if candidates is not None:
        return np.asarray(candidates, dtype=np.float64)
    if grid == "fixed":
        return FIXED_GRID
    if grid == "distinct":
        return np.unique(scores)
    if grid == "both":
        return np.union1d(FIXED_GRID, np.unique(scores))
    raise ValueError(f"grid must be 'fixed', 'distinct' or 'both', got {grid!r}")


def search_threshold(
    scores,
    labels,
    weights: dict[str, float] | None = None,
    grid: str = "fixed",
    candidates=None,
    objective: str = "weighted",
    require_both_classes: bool = True,
) -> ThresholdResult:
    """Threshold that maximises `objective` ("weighted", "accuracy" or "mcc").

    "weighted" is the weighted score of Acc, P, R and F1 (`weights`). `grid`: "fixed"
    (0.01 .. 0.99), "distinct" (every distinct score) or "both". Explicit `candidates`
    override it. Only thresholds that predict both classes on these pairs compete
    (`require_both_classes`); when none does, the best of all is returned with
    `two_class_found` False. Ties go to the lowest threshold, so results are reproducible.
    The `score` field is always the weighted score at the chosen threshold.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    scores, labels = check_scores_and_labels(scores, labels)
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)

    thresholds = candidate_thresholds(scores, grid, candidates)
    tp, fp, tn, fn = confusion_counts(scores, labels, thresholds)
    curves = metrics_from_counts(tp, fp, tn, fn)
    curve_scores = weighted_score(curves, weights)
    target = curve_scores if objective == "weighted" else curves[objective]
    n, n_pos = labels.size, int(labels.sum())
    predicted = tp + fp
    two_class = (predicted > 0) & (predicted < n)
    two_class_found = bool(two_class.any())
    if require_both_classes and two_class_found:
        # argmax over the two-class candidates only; -inf keeps the others out.
        best = int(np.argmax(np.where(two_class, target, -np.inf)))
    else:
        best = int(np.argmax(target))  # first maximum = lowest threshold among ties

    trivial = metrics_from_counts(
        tp=np.array([n_pos, 0]),
        fp=np.array([n - n_pos, 0]),
        tn=np.array([0, n - n_pos]),
        fn=np.array([0, n_pos]),
    )
    all_positive, all_negative = weighted_score(trivial, weights)
    auroc, aupr = auroc_aupr(scores, labels)
    predicted_positive = predicted[best]
    return ThresholdResult(
        threshold=float(thresholds[best]),
        score=float(curve_scores[best]),
        **{name: float(values[best]) for name, values in curves.items()},
        auroc=auroc,
        aupr=aupr,
        n=n,
        positive_fraction=n_pos / n,
        all_positive_score=float(all_positive),
        all_negative_score=float(all_negative),
        single_class=bool(predicted_positive in (0, n)),
        beats_trivial=bool(curve_scores[best] > max(all_positive, all_negative)),
        weights=weights,
        grid={
            "threshold": thresholds.tolist(),
            "score": curve_scores.tolist(),
            **{name: values.tolist() for name, values in curves.items()},
            "predicted_positive": (predicted / n).tolist(),
        },
        objective=objective,
        objective_value=float(target[best]),
        predicted_positive_fraction=float(predicted_positive / n),
        two_class_found=two_class_found or not require_both_classes,
    )


def selection_metric(result: ThresholdResult, name: str = "auroc") -> float:
    """The value a trainer ranks checkpoints by (higher is better), from a validation result.

    "auroc" (recommended) and "aupr" are threshold-free: a constant or random predictor gets
    0.5 and the positive fraction, so no trivial predictor wins. "mcc" is the MCC at the
    chosen threshold (0 for a trivial predictor). "score" is the weighted score, which the
    "all positive" predictor reaches (0.667 on balanced data with equal weights): kept for
    the spec, not recommended.
    """
    values = {"score": result.score, "aupr": result.aupr, "auroc": result.auroc, "mcc": result.mcc}
    if name not in values:
        raise ValueError(f"selection metric must be one of {SELECTION_METRICS}, got {name!r}")
    value = values[name]
    return float("-inf") if np.isnan(value) else float(value)


def compare_objectives(
    valid_scores,
    valid_labels,
    test_scores,
    test_labels,
    weights: dict[str, float] | None = None,
    grid: str = "fixed",
    objectives: tuple[str, ...] = OBJECTIVES,
) -> dict[str, dict[str, ThresholdResult]]:
    """For each objective: the threshold chosen on validation and the test metrics at it.

    Returns {objective: {"validation": ThresholdResult, "test": ThresholdResult}}; print it
    with `describe_objectives`. Test pairs never influence a threshold.
    """
    out = {}
    for objective in objectives:
        chosen = search_threshold(
            valid_scores, valid_labels, weights=weights, grid=grid, objective=objective
        )
        tested = evaluate_at(
            test_scores, test_labels, chosen.threshold, weights=weights, objective=objective
        )
        out[objective] = {"validation": chosen, "test": tested}
    return out


def describe_objectives(comparison: dict[str, dict[str, ThresholdResult]]) -> str:
    """A markdown table of `compare_objectives`: one row per objective, test metrics."""
    lines = [
        "| objective (chosen on validation) | threshold | test predicted positive | accuracy "
        "| precision | recall | F1 | MCC | weighted score | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for objective, results in comparison.items():
        chosen, tested = results["validation"], results["test"]
        note = []
        if not chosen.two_class_found:
            note.append("no two-class threshold on validation")
        if tested.single_class:
            note.append("one class on test")
        elif tested.near_trivial:
            note.append("near-trivial on test")
        lines.append(
            f"| {objective} | {chosen.threshold:.4g} | {tested.predicted_positive_fraction:.1%} | "
            + " | ".join(
                f"{getattr(tested, k):.4f}"
                for k in ("accuracy", "precision", "recall", "f1", "mcc", "score")
            )
            + f" | {'; '.join(note)} |"
        )
    return "\n".join(lines)


def final_report(
    results: dict[str, ThresholdResult], comparison: dict[str, dict] | None = None
) -> str:
    """What a run or `evaluate` prints: the shipped threshold, each split's metrics at it,
    and every objective's validation-chosen threshold with its test metrics."""
    chosen = results["validation"]
    lines = [
        f"decision threshold (chosen on validation, objective {chosen.objective}): "
        f"{chosen.threshold:.4f}"
    ]
    for split, result in results.items():
        lines.append(f"{split}: {result.describe()}")
        lines.append(
            f"{split} accuracy: {result.accuracy:.3f}  AUROC: {result.auroc:.3f}  "
            f"AUPR: {result.aupr:.3f}  MCC: {result.mcc:.3f}"
        )
    if comparison:
        lines += [
            "each objective, threshold chosen on validation, metrics on test:",
            describe_objectives(comparison),
        ]
    return "\n".join(lines)
