"""What ppi_dist saved at commit 60fab62 still loads and scores the same.

`tests/fixtures/saved_60fab62` (see its README) holds a model folder and a mid-run
checkpoint written by that code, with what its run printed at the end. Probabilities are
compared to 1e-5: the fixture's are printed to 6 decimals, and another CPU may round a
matmul differently in the last bits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from ppi_dist.evaluation.evaluate import EvaluateOptions, evaluate
from ppi_dist.hub.loading import load_model
from tests.helpers import REPO
from tests.integration.runs import run_python

FIXTURE = REPO / "tests" / "fixtures" / "saved_60fab62"


def predictions(path: Path) -> tuple[list[list[str]], np.ndarray]:
    """(protein_a, protein_b, predicted, label) rows and the raw scores of a predictions file
    (`raw_score` where the run calibrated its probabilities; 60fab62 wrote raw scores only)."""
    header, *lines = path.read_text().splitlines()
    rows = [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]
    raw = "raw_score" if "raw_score" in header.split("\t") else "probability"
    kept = [[r["protein_a"], r["protein_b"], r["predicted"], r["label"]] for r in rows]
    return kept, np.array([float(r[raw]) for r in rows])


def test_the_saved_model_folder_scores_its_test_pairs_as_its_run_did():
    model = load_model(FIXTURE / "model")
    assert model.config.decision_threshold == 0.51
    data, options = FIXTURE / "data", EvaluateOptions(n_resamples=10)
    report = evaluate(model, data / "test.tsv", data / "test.fasta", options)
    scored = report["_scored"]
    rows, expected = predictions(FIXTURE / "predictions_test.tsv")
    assert [[a, b] for a, b, *_ in rows] == [
        list(pair) for pair in zip(scored.protein_a, scored.protein_b, strict=True)
    ]
    np.testing.assert_allclose(scored.scores, expected, atol=1e-5, rtol=0)
    trained = json.loads((FIXTURE / "metrics.json").read_text())["test"]
    for name in ("auroc", "aupr", "accuracy", "mcc", "threshold"):
        assert report["metrics"][name] == pytest.approx(trained[name], abs=1e-5), name


@pytest.mark.multiprocess
def test_the_saved_checkpoint_resumes_to_the_uninterrupted_runs_end(tmp_path):
    """Resumed at step 3 with the settings the checkpoint holds, the run ends where the
    uninterrupted run of 60fab62 ended: the same test probabilities and decisions."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURE / "checkpoint", run / "checkpoints")
    saved = json.loads((run / "checkpoints" / "step_00000003" / "trainer_state.json").read_text())
    recipe = tmp_path / "saved_config.yaml"  # the checkpoint's settings, as a recipe
    # 60fab62 stepped AdamW with torch's CPU default, the per-parameter loop (fused AdamW,
    # the default since, rounds differently): the same update, as that run made it.
    recipe.write_text(yaml.safe_dump({**saved["config"], "adamw_implementation": "for_loop"}))
    command = ["ppi_dist/train.py", "--config", str(recipe), "--output_dir", str(run)]
    result = run_python([*command, "--resume_from", "latest"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "resumed from" in result.stdout and "at step 3" in result.stdout
    rows, probabilities = predictions(run / "predictions_test.tsv")
    expected_rows, expected = predictions(FIXTURE / "predictions_test.tsv")
    assert rows == expected_rows
    # Three training steps carry the last-bit differences between CPUs into the weights:
    # seen 2e-5 on an AVX-512 EPYC against the machine that wrote the fixture.
    np.testing.assert_allclose(probabilities, expected, atol=1e-4, rtol=0)
    ended = json.loads((run / "metrics.json").read_text())
    trained = json.loads((FIXTURE / "metrics.json").read_text())
    # Probabilities within 1e-4 can swap two near-tied pairs: the ranking metrics may move
    # by a pair or two (1/900 each on validation), the chosen threshold not at all.
    for split in ("validation", "test"):
        for name in ("auroc", "aupr", "mcc"):
            assert ended[split][name] == pytest.approx(trained[split][name], abs=3e-3), name
        assert ended[split]["threshold"] == pytest.approx(trained[split]["threshold"], abs=1e-5)
