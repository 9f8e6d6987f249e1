"""Plots carry labelled axes, the chosen threshold and the baselines; the report CLI."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ppi_dist import plots
from ppi_dist.metrics import evaluate_at, search_threshold
from ppi_dist.report import main as report_main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _scores(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.4).astype(int)
    scores = 1 / (1 + np.exp(-rng.normal(labels - 0.5, 1.0)))
    return scores, labels


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


def _write_predictions(path, scores, labels) -> None:
    rows = [
        f"A{i}\tB{i}\t{s!r}\t{int(s >= 0.5)}\t{y}"
        for i, (s, y) in enumerate(zip(scores.tolist(), labels.tolist(), strict=True))
    ]
    path.write_text("protein_a\tprotein_b\tprobability\tpredicted\tlabel\n" + "\n".join(rows))


def test_report_cli_writes_metrics_and_plots(tmp_path, capsys):
    scores, labels = _scores()
    _write_predictions(tmp_path / "pred.tsv", scores, labels)
    arguments = ["--predictions", str(tmp_path / "pred.tsv"), "--out", str(tmp_path / "r")]
    # The threshold is never searched on the reported file unless asked.
    with pytest.raises(SystemExit) as refused:
        report_main(arguments)
    assert refused.value.code == 2 and "--threshold" in capsys.readouterr().err
    assert report_main([*arguments, "--search_threshold"]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    expected = search_threshold(scores, labels)
    assert metrics["threshold"] == expected.threshold and metrics["aupr"] == expected.aupr
    assert metrics["threshold_chosen_on_this_data"] is True
    assert sorted(p.name for p in (tmp_path / "r").glob("*.png")) == sorted(plots.PLOT_NAMES)
    assert "trivial predictors" in capsys.readouterr().out
    # At a given threshold, from Parquet.
    table = pa.table({"probability": scores, "label": labels})
    pq.write_table(table, tmp_path / "pred.parquet")
    report_main(
        [
            "--predictions",
            str(tmp_path / "pred.parquet"),
            "--out",
            str(tmp_path / "t"),
            "--threshold",
            "0.6",
        ]
    )
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["threshold"] == 0.6
    assert metrics["f1"] == pytest.approx(evaluate_at(scores, labels, 0.6).f1)


def test_report_needs_labels(tmp_path):
    (tmp_path / "p.tsv").write_text("protein_a\tprotein_b\tprobability\nA\tB\t0.3\n")
    with pytest.raises(ValueError, match="no column 'label'"):
        report_main(
            [
                "--predictions",
                str(tmp_path / "p.tsv"),
                "--out",
                str(tmp_path / "r"),
                "--threshold",
                "0.5",
            ]
        )


def test_report_uses_the_models_saved_threshold(tmp_path):
    from tests.conftest import tiny_model

    model = tiny_model()
    model.config.decision_threshold = 0.37
    model.save_pretrained(tmp_path / "model")
    scores, labels = _scores()
    _write_predictions(tmp_path / "pred.tsv", scores, labels)
    report_main(
        [
            "--predictions",
            str(tmp_path / "pred.tsv"),
            "--out",
            str(tmp_path / "r"),
            "--model",
            str(tmp_path / "model"),
        ]
    )
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["threshold"] == 0.37 and metrics["threshold_chosen_on_this_data"] is False
