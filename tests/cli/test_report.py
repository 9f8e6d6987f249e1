"""`ppi-dist report`: bad thresholds, columns, scores and outputs refused in one line naming the
file, row or flag (exit 2, no traceback); a bad value never reaches metrics.json."""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import pytest

from ppi_dist.cli.report import main
from tests.cli.expect import in_process, refused


def _predictions(path: Path, rows: list[str], header="protein_a\tprotein_b\tprobability\tlabel"):
    path.write_text(header + "\n" + "".join(rows))
    return path


GOOD = ["A\tB\t0.9\t1\n", "C\tD\t0.2\t0\n", "E\tF\t0.7\t1\n", "G\tH\t0.4\t0\n"]

BAD_FLAGS = [
    (["--threshold", "1.7"], "argument --threshold: must lie in [0, 1], got 1.7"),
    (["--threshold", "nan"], "argument --threshold"),
    (["--threshold", "-0.1"], "argument --threshold"),
    (["--threshold", "half"], "argument --threshold: expected a number"),
    ([], "one of the arguments --threshold --model --search_threshold is required"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS)
def test_bad_thresholds_are_refused(capsys, tmp_path, flags, message):
    pred = _predictions(tmp_path / "p.tsv", GOOD)
    out = tmp_path / "r"
    refused(*in_process(capsys, main, "--predictions", pred, "--out", out, *flags), message)
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize(
    ("saved", "message"),
    [
        (1.7, "saved decision_threshold 1.7 is not in [0, 1]"),
        (math.nan, "saved decision_threshold nan is not in [0, 1]"),
        ("0.5", "saved decision_threshold is the string '0.5', not a number"),
        (None, "no decision_threshold saved"),
    ],
)
def test_a_models_saved_threshold_is_checked_as_predict_checks_it(
    capsys, model_folder, tmp_path, saved, message
):
    config_path = model_folder / "secai_config.json"
    config = json.loads(config_path.read_text())
    config["decision_threshold"] = saved
    config_path.write_text(json.dumps(config))
    pred, out = _predictions(tmp_path / "p.tsv", GOOD), tmp_path / "r"
    args = ["--predictions", pred, "--out", out, "--model", model_folder]
    refused(*in_process(capsys, main, *args), str(config_path), message)
    assert not (out / "metrics.json").exists()


def test_a_models_threshold_is_reported_with_the_objective_it_records(
    capsys, model_folder, tmp_path
):
    config_path = model_folder / "secai_config.json"
    config = json.loads(config_path.read_text())
    pred = _predictions(tmp_path / "p.tsv", GOOD)
    args = ["--predictions", pred, "--out", tmp_path / "r", "--model", model_folder]
    config_path.write_text(json.dumps({**config, "threshold_objective": "mcc"}))
    capsys.readouterr()
    assert main([str(a) for a in args]) == 0
    assert "threshold 0.5000 (objective mcc;" in capsys.readouterr().out
    config_path.write_text(json.dumps({**config, "threshold_objective": "f2"}))
    message = "threshold_objective must be one of ('weighted', 'accuracy', 'mcc'), got 'f2'"
    refused(*in_process(capsys, main, *args), str(config_path), message)


BAD_FILES = {
    "NaN score": ([*GOOD[:1], "C\tD\tnan\t0\n"], None, [":3: field 'probability'", "nan"]),
    "score 1.5": (["A\tB\t1.5\t1\n"], None, [":2: field 'probability'", "1.5"]),
    "text score": (["A\tB\thigh\t1\n"], None, [":2: field 'probability'", "'high'"]),
    "label 2": (["A\tB\t0.5\t2\n"], None, [":2: field 'label'", "expected 0 or 1"]),
    "empty label": (["A\tB\t0.5\t\n"], None, [":2: field 'label'", "empty label"]),
    "no score column": (
        ["A\tB\t1\n"],
        "protein_a\tprotein_b\tlabel",
        ["no column 'probability'", "--score_column"],
    ),
    "no label column": (
        ["A\tB\t0.3\n"],
        "protein_a\tprotein_b\tprobability",
        ["no column 'label'", "--label_column"],
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_prediction_files_are_located(capsys, tmp_path, case):
    rows, header, needles = BAD_FILES[case]
    pred = tmp_path / "p.tsv"
    _predictions(pred, rows, *([header] if header else []))
    args = ["--predictions", pred, "--out", tmp_path / "r", "--threshold", "0.5"]
    refused(*in_process(capsys, main, *args), str(pred), *needles)


def test_missing_predictions_file_is_named(capsys, tmp_path):
    args = ["--predictions", tmp_path / "nope.tsv", "--out", tmp_path / "r", "--threshold", "0.5"]
    refused(*in_process(capsys, main, *args), "nope.tsv")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_read_only_or_full_output_names_the_path(capsys, tmp_path, monkeypatch, code):
    pred, out = _predictions(tmp_path / "p.tsv", GOOD), tmp_path / "r"
    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == out:
            raise OSError(code, "Read-only file system", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    args = ["--predictions", pred, "--out", out, "--threshold", "0.5"]
    refused(*in_process(capsys, main, *args), f"{out}: cannot write")
