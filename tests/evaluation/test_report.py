"""The report of a predictions file: at a threshold chosen elsewhere, or searched when asked."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ppi_dist.cli.report import main as report_main
from ppi_dist.evaluation import plots
from ppi_dist.evaluation.threshold import evaluate_at, search_threshold
from ppi_dist.models.saving import save_pretrained
from tests.evaluation.score_sets import logistic_scores as _scores
from tests.helpers import tiny_model


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
    assert report_main(arguments) == 2  # a usage error: one line, exit 2
    assert "--threshold" in capsys.readouterr().err
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


def test_report_needs_labels(tmp_path, capsys):
    (tmp_path / "p.tsv").write_text("protein_a\tprotein_b\tprobability\nA\tB\t0.3\n")
    arguments = ["--predictions", str(tmp_path / "p.tsv"), "--out", str(tmp_path / "r")]
    assert report_main([*arguments, "--threshold", "0.5"]) == 2
    assert "no column 'label'" in capsys.readouterr().err


def test_report_uses_the_models_saved_threshold(tmp_path):
    model = tiny_model()
    model.config.decision_threshold = 0.37
    save_pretrained(model, tmp_path / "model")
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


def test_a_calibrated_file_is_thresholded_on_its_raw_score(tmp_path):
    # predict's output of a calibrated model: the threshold (0.5 here) is on raw_score.
    rows = ["A\tB\t0.30\t0.55\t1\t1", "C\tD\t0.20\t0.45\t0\t0", "E\tF\t0.28\t0.52\t1\t0"]
    header = "protein_a\tprotein_b\tprobability\traw_score\tpredicted\tlabel\n"
    (tmp_path / "p.tsv").write_text(header + "\n".join(rows) + "\n")
    arguments = ["--predictions", str(tmp_path / "p.tsv"), "--threshold", "0.5"]
    assert report_main([*arguments, "--out", str(tmp_path / "raw")]) == 0
    raw = json.loads((tmp_path / "raw" / "metrics.json").read_text())
    assert raw["recall"] == 1.0 and raw["precision"] == 0.5  # A and E called, as predict did
    named = ["--score_column", "probability", "--out", str(tmp_path / "p")]
    assert report_main([*arguments, *named]) == 0  # the calibrated column, when asked for
    assert json.loads((tmp_path / "p" / "metrics.json").read_text())["recall"] == 0.0
