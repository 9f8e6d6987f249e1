"""Plots carry labelled axes, the chosen threshold and the baselines."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from ppi_dist.evaluation import plots
from ppi_dist.evaluation.threshold import evaluate_at, search_threshold
from tests.evaluation.score_sets import logistic_scores as _scores

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def kept_figures(monkeypatch):
    """Keep the figures open (plots close them after saving) so tests can inspect them."""
    close = plt.close  # plots.plt is this same module: keep the real close for cleanup
    close("all")
    monkeypatch.setattr(plots.plt, "close", lambda figure: None)
    yield lambda: [plt.figure(n) for n in plt.get_fignums()]
    close("all")


def _lines(axes):
    return [
        (line.get_label(), np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
        for line in axes.get_lines()
    ]


def test_plot_evaluation_draws_labelled_curves_threshold_and_baselines(tmp_path, kept_figures):
    scores, labels = _scores()
    result = search_threshold(scores, labels)
    paths = plots.plot_evaluation(scores, labels, result, tmp_path, title_prefix="valid, epoch 2")
    assert [p.name for p in paths] == list(plots.PLOT_NAMES)
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000
    pr, roc, threshold = (figure.axes[0] for figure in kept_figures())
    for axes in (pr, roc, threshold):
        assert axes.get_xlabel() and axes.get_ylabel()
        assert axes.get_title().startswith("valid, epoch 2: ")
    legend = " ".join(t.get_text() for t in pr.get_legend().get_texts())
    assert f"AUPR {result.aupr:.3f}" in legend
    baseline = [y for label, _, y in _lines(pr) if label.startswith("random")]
    assert np.allclose(baseline[0], result.positive_fraction)
    legend = " ".join(t.get_text() for t in roc.get_legend().get_texts())
    assert f"AUROC {result.auroc:.3f}" in legend
    diagonal = next((x, y) for label, x, y in _lines(roc) if label.startswith("random"))
    assert np.allclose(diagonal[0], diagonal[1])
    lines = {label: (x, y) for label, x, y in _lines(threshold)}
    chosen = next(x for label, (x, _) in lines.items() if label.startswith("chosen threshold"))
    assert np.allclose(chosen, result.threshold)  # the vertical line
    trivial = {label.split("'")[1]: y for label, (_, y) in lines.items() if label.startswith("'")}
    assert np.allclose(trivial["all interact"], result.all_positive_score)
    assert np.allclose(trivial["none interact"], result.all_negative_score)
    assert {"weighted score", "accuracy", "f1", "precision", "recall"} <= set(lines)


def test_a_single_threshold_result_still_gets_full_curves(tmp_path, kept_figures):
    scores, labels = _scores()
    result = evaluate_at(scores, labels, 0.42)
    plots.plot_evaluation(scores, labels, result, tmp_path)
    threshold_axes = kept_figures()[2].axes[0]
    score_line = next(x for label, x, _ in _lines(threshold_axes) if label == "weighted score")
    assert len(score_line) == 99  # the fixed grid, not one point
    chosen = next(x for label, x, _ in _lines(threshold_axes) if label.startswith("chosen"))
    assert np.allclose(chosen, 0.42)


def test_one_class_is_refused(tmp_path):
    scores = np.linspace(0, 1, 10)
    labels = np.ones(10, dtype=int)
    with pytest.raises(ValueError, match="both classes"):
        plots.plot_evaluation(scores, labels, search_threshold(scores, labels), tmp_path)
