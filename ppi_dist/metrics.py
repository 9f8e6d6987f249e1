"""Metrics, the decision-threshold search, bootstrap intervals and trivial predictors.

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

One implementation serves the trainer, the report and the `evaluate` module in
`ppi_dist/ppi_metric/`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_WEIGHTS = {"accuracy": 0.25, "precision": 0.25, "recall": 0.25, "f1": 0.25}
OBJECTIVES = ("weighted", "accuracy", "mcc")
SELECTION_METRICS = ("score", "aupr", "auroc", "mcc")
# A threshold that calls more than this fraction of pairs one class is reported as near-trivial.
NEAR_TRIVIAL_FRACTION = 0.95
FIXED_GRID = np.round(np.arange(1, 100) / 100, 2)  # 0.01 .. 0.99


def confusion_counts(
    scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(TP, FP, TN, FN) per threshold, predicting positive where score >= threshold.

    Sort once, then one binary search per threshold: O((N + T) log N), no N x T matrix.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    # positives_below[k] = positives among the k lowest scores.
    positives_below = np.concatenate([[0], np.cumsum(labels[order])])
    n, n_pos = len(scores), int(positives_below[-1])
    below = np.searchsorted(sorted_scores, thresholds, side="left")
    tp = n_pos - positives_below[below]
    fp = (n - below) - tp
    fn = n_pos - tp
    tn = (n - n_pos) - fp
    return tp, fp, tn, fn


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (sklearn's zero_division=0)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def metrics_from_counts(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """Accuracy, precision, recall, F1 and MCC from confusion counts (arrays or scalars)."""
    tp, fp, tn, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, tn, fn))
    precision = _safe_divide(tp, tp + fp)
    recall = _safe_divide(tp, tp + fn)
    mcc_denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "accuracy": _safe_divide(tp + tn, tp + fp + tn + fn),
        "precision": precision,
        "recall": recall,
        "f1": _safe_divide(2 * tp, 2 * tp + fp + fn),
        "mcc": _safe_divide(tp * tn - fp * fn, mcc_denominator),
    }


def weighted_score(metrics: dict, weights: dict[str, float]) -> np.ndarray:
    """sum_k w_k * metric_k over accuracy, precision, recall and F1."""
    unknown = set(weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown score weights {sorted(unknown)}; use {sorted(DEFAULT_WEIGHTS)}")
    return sum(w * np.asarray(metrics[name]) for name, w in weights.items())


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


def ranking_curves(scores: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """ROC and precision-recall points at every distinct score, highest first.

    The same curves as sklearn's `roc_curve` / `precision_recall_curve` (tests check), from
    one sort; the report plots them and `search_threshold` integrates them.
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_tie = np.flatnonzero(np.diff(sorted_scores)) if scores.size > 1 else np.array([], int)
    last_of_tie = np.append(last_of_tie, scores.size - 1)
    tps = np.cumsum(sorted_labels)[last_of_tie].astype(np.float64)
    fps = (last_of_tie + 1) - tps
    n_pos, n_neg = tps[-1], fps[-1]
    return {
        "threshold": sorted_scores[last_of_tie],
        "tpr": _safe_divide(tps, n_pos),
        "fpr": _safe_divide(fps, n_neg),
        "precision": tps / (tps + fps),
        "recall": _safe_divide(tps, n_pos),
    }


def auroc_aupr(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """AUROC (trapezoids) and AUPR as average precision; NaN when only one class is present."""
    if labels.min() == labels.max():
        return float("nan"), float("nan")
    curves = ranking_curves(scores, labels)
    fpr = np.concatenate([[0.0], curves["fpr"]])
    tpr = np.concatenate([[0.0], curves["tpr"]])
    auroc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    recall_steps = np.diff(np.concatenate([[0.0], curves["recall"]]))
    aupr = float(np.sum(recall_steps * curves["precision"]))
    return auroc, aupr


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


def _check_inputs(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape or scores.size == 0:
        raise ValueError(
            f"need equally many scores and labels, got {scores.size} and {labels.size}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    return scores, labels.astype(np.int64)


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
    scores, labels = _check_inputs(scores, labels)
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)

    if candidates is not None:
        thresholds = np.asarray(candidates, dtype=np.float64)
    elif grid == "fixed":
        thresholds = FIXED_GRID
    elif grid == "distinct":
        thresholds = np.unique(scores)
    elif grid == "both":
        thresholds = np.union1d(FIXED_GRID, np.unique(scores))
    else:
        raise ValueError(f"grid must be 'fixed', 'distinct' or 'both', got {grid!r}")

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


def trivial_predictors(labels, weights: dict[str, float] | None = None) -> dict[str, dict]:
    """What predictors that ignore the proteins score on these labels.

    "all_positive" / "all_negative": accuracy, precision, recall, F1, MCC and the weighted
    score; "random_ranking": the expected AUROC (0.5) and AUPR (the positive fraction) of a
    ranking that ignores the input.
    """
    labels = np.asarray(labels).ravel()
    if labels.size == 0 or not np.isin(labels, (0, 1)).all():
        raise ValueError("need labels, all 0 or 1")
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    n, n_pos = labels.size, int(labels.sum())
    out = {}
    for name, (tp, fp, tn, fn) in {
        "all_positive": (n_pos, n - n_pos, 0, 0),
        "all_negative": (0, 0, n - n_pos, n_pos),
    }.items():
        values = {k: float(v) for k, v in metrics_from_counts(tp, fp, tn, fn).items()}
        values["score"] = float(weighted_score(values, weights))
        out[name] = values
    out["random_ranking"] = {"auroc": 0.5, "aupr": n_pos / n}
    return out


BOOTSTRAP_METRICS = ("accuracy", "precision", "recall", "f1", "mcc", "auroc", "aupr")


def _bootstrap_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """(resamples, n): how often each pair is drawn in each resample (n draws with
    replacement), from one integer draw and one bincount."""
    draws = rng.integers(0, n, size=(resamples, n))
    draws += np.arange(resamples)[:, None] * n
    return np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n)


def _weighted_ranking_metrics(
    weights: np.ndarray, labels_sorted: np.ndarray, group_starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision per row of `weights` (counts per pair, pairs sorted by
    ascending score; `group_starts` opens each run of tied scores). Ties count half in
    AUROC and as one step in AUPR, as in sklearn."""
    positive = np.add.reduceat(weights * labels_sorted, group_starts, axis=1)
    negative = np.add.reduceat(weights * (1 - labels_sorted), group_starts, axis=1)
    n_pos, n_neg = positive.sum(axis=1), negative.sum(axis=1)
    negatives_below = np.cumsum(negative, axis=1) - negative
    pairs_won = np.sum(positive * (negatives_below + 0.5 * negative), axis=1)
    auroc = _safe_divide(pairs_won, n_pos * n_neg)
    # Average precision: walk from the highest score down.
    tp = np.cumsum(positive[:, ::-1], axis=1)
    fp = np.cumsum(negative[:, ::-1], axis=1)
    precision = _safe_divide(tp, tp + fp)
    aupr = _safe_divide(np.sum(positive[:, ::-1] * precision, axis=1), n_pos)
    one_class = (n_pos == 0) | (n_neg == 0)
    auroc[one_class] = np.nan
    aupr[one_class] = np.nan
    return auroc, aupr


def bootstrap_intervals(
    scores,
    labels,
    threshold: float,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals over pairs for accuracy, precision, recall, F1 and MCC
    at `threshold`, and for AUROC and AUPR.

    Each resample draws len(scores) pairs with replacement; the interval is the
    ((1 - confidence) / 2, (1 + confidence) / 2) percentiles of the metric over resamples.
    Resamples holding one class only are left out of AUROC and AUPR (NaN when all are).
    Vectorised in chunks: 50,000 pairs x 1,000 resamples takes seconds. Pairs are treated
    as independent; pairs that share proteins are not, so the intervals are optimistic on
    sets where proteins recur.
    """
    scores, labels = _check_inputs(scores, labels)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    n = labels.size
    rng = np.random.default_rng(seed)
    order = np.argsort(scores, kind="stable")
    sorted_scores, labels_sorted = scores[order], labels[order].astype(np.float64)
    group_starts = np.flatnonzero(np.r_[True, np.diff(sorted_scores) != 0])
    predicted = (sorted_scores >= threshold).astype(np.float64)
    columns = np.stack(
        [
            predicted * labels_sorted,
            predicted * (1 - labels_sorted),
            (1 - predicted) * labels_sorted,
        ]
    ).T  # (n, 3): true positive, false positive, false negative
    values = {name: [] for name in BOOTSTRAP_METRICS}
    chunk = max(1, min(n_resamples, 4_000_000 // n))
    done = 0
    while done < n_resamples:
        size = min(chunk, n_resamples - done)
        counts = _bootstrap_counts(rng, n, size).astype(np.float64)
        tp, fp, fn = (counts @ columns).T
        tn = n - tp - fp - fn
        for name, metric in metrics_from_counts(tp, fp, tn, fn).items():
            values[name].append(metric)
        auroc, aupr = _weighted_ranking_metrics(counts, labels_sorted, group_starts)
        values["auroc"].append(auroc)
        values["aupr"].append(aupr)
        done += size
    tail = (1 - confidence) / 2 * 100
    out = {}
    for name, chunks in values.items():
        samples = np.concatenate(chunks)
        samples = samples[~np.isnan(samples)]
        if samples.size == 0:
            out[name] = (float("nan"), float("nan"))
        else:
            low, high = np.percentile(samples, [tail, 100 - tail])
            out[name] = (float(low), float(high))
    return out


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
