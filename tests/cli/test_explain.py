"""`ppi-dist explain`: per pair a hotspot TSV and an attention PNG, `predict`'s probability,
the model folder's own encoding, and a long protein through its windows."""

from __future__ import annotations

import csv
import os
import random

import numpy as np
import pytest

from ppi_dist.cli import explain, predict
from ppi_dist.cli.boundary import EXIT_USER_ERROR
from ppi_dist.hub.folder import save_for_hub
from ppi_dist.models.calibration import Calibration
from tests.cli.expect import in_process, refused
from tests.helpers import random_sequence, tiny_model


def _inputs(tmp_path):
    rng = random.Random(2)
    sequences = {"LONG": random_sequence(rng, 130, 130), "S1": random_sequence(rng, 20, 30)}
    sequences["S2"] = random_sequence(rng, 35, 45)
    fasta = tmp_path / "p.fasta"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in sequences.items()))
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("protein_a\tprotein_b\nLONG\tS1\nS2\tS1\nS2\tLONG\n")
    model = tiny_model(max_residues=48, decision_threshold=0.5)
    model.calibration = Calibration(slope=0.5, offset=0.3, pairs=100)  # saved with the model
    return save_for_hub(model, tmp_path / "model"), fasta, pairs, sequences


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_explain_writes_maps_with_predicts_probabilities(tmp_path, capsys):
    folder, fasta, pairs, sequences = _inputs(tmp_path)
    scores = tmp_path / "scores.tsv"
    common = ["--model", str(folder), "--fasta", str(fasta), "--pairs", str(pairs)]
    assert predict.main([*common, "--out", str(scores), "--no_progress"]) == 0
    out = tmp_path / "explain"
    assert explain.main([*common, "--out", str(out), "--top_k", "3"]) == 0
    printed = capsys.readouterr().out
    assert "windows of 48" in printed  # the model folder's window, not ESM-2's 1,022
    assert "probability: platt scaling fitted on 100 validation pairs" in printed
    card = (folder / "README.md").read_text()  # the model card says how, and how to move it
    assert "calibrated (platt scaling fitted on 100 validation pairs, at 0.5 positive)" in card
    predicted = _rows(scores)
    explained = _rows(out / "explanations.tsv")
    assert [(r["protein_a"], r["protein_b"]) for r in explained] == [
        (r["protein_a"], r["protein_b"]) for r in predicted
    ]
    for mine, theirs in zip(explained, predicted, strict=True):
        # Both report the calibrated probability, the raw score beside it. One pair alone and
        # three in one batch are padded differently: equal to float32 rounding.
        assert abs(float(mine["probability"]) - float(theirs["probability"])) < 1e-6
        assert abs(float(mine["raw_score"]) - float(theirs["raw_score"])) < 1e-6
        calibrated = Calibration(0.5, 0.3).apply([float(mine["raw_score"])])[0]
        assert float(mine["probability"]) == calibrated != float(mine["raw_score"])
        assert len(mine["top_a"].split()) == 3
        hotspots = _rows(out / mine["folder"] / "hotspots.tsv")
        assert (out / mine["folder"] / "attention.png").stat().st_size > 10_000
        for side, protein in (("a", mine["protein_a"]), ("b", mine["protein_b"])):
            rows = [r for r in hotspots if r["side"] == side]
            # Every residue, the 130-residue one too (through its windows), in order.
            assert "".join(r["residue"] for r in rows) == sequences[protein]
            assert [int(r["position"]) for r in rows] == list(range(1, len(rows) + 1))
            shares = np.array([float(r["maxpool_share"]) for r in rows])
            assert abs(shares.sum() - 1) < 1e-4  # every channel's max-pool has one winner
            received = np.array([float(r["attention_received"]) for r in rows])
            assert np.all(received >= 0) and abs(received.sum() - 1) < 1e-4


def test_explain_reads_the_centred_crop_when_told_and_refuses_bad_input(tmp_path, capsys):
    folder, fasta, _, sequences = _inputs(tmp_path)
    common = ["--model", str(folder), "--fasta", str(fasta), "--no_plots"]
    out = tmp_path / "crop"
    assert (
        explain.main([*common, "--a", "LONG", "--b", "S1", "--out", str(out), "--windows", "crop"])
        == 0
    )
    (row,) = _rows(out / "explanations.tsv")
    rows = [r for r in _rows(out / row["folder"] / "hotspots.tsv") if r["side"] == "a"]
    start = (130 - 48) // 2
    assert "".join(r["residue"] for r in rows) == sequences["LONG"][start : start + 48]
    capsys.readouterr()
    bad = [*common, "--a", "NOPE", "--b", "S1", "--out", str(tmp_path / "x")]
    assert explain.main(bad) == EXIT_USER_ERROR
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and "NOPE" in error and "p.fasta" in error
    again = [*common, "--a", "LONG", "--b", "S1", "--out", str(out)]
    assert explain.main(again) == EXIT_USER_ERROR
    assert "--overwrite" in capsys.readouterr().err


def test_max_residues_alone_reads_windows_overlapping_a_quarter_of_it(tmp_path, capsys):
    folder, fasta, _, _ = _inputs(tmp_path)  # a model trained at 48, overlap left to default
    args = ["--model", folder, "--fasta", fasta, "--a", "LONG", "--b", "S1", "--no_plots"]
    assert (
        explain.main([str(a) for a in [*args, "--out", tmp_path / "x", "--max_residues", 64]]) == 0
    )
    assert "encoding: proteins over 64 residues read as windows of 64 overlapping >= 16," in (
        capsys.readouterr().out
    )


def test_an_output_that_is_a_file_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    folder, fasta, _, _ = _inputs(tmp_path)
    monkeypatch.setattr(explain, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    taken = tmp_path / "taken.txt"
    taken.write_text("a file")
    for out, said in ((taken, f"--out {taken}: is a file"), (taken / "x", f"{taken} is a file")):
        args = ["--model", folder, "--fasta", fasta, "--a", "S1", "--b", "S2", "--out", out]
        refused(*in_process(capsys, explain.main, *args), said, "not a folder")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only disk, as root
    args = ["--model", folder, "--fasta", fasta, "--a", "S1", "--b", "S2", "--out", tmp_path / "x"]
    refused(*in_process(capsys, explain.main, *args), f"{tmp_path} cannot be written")
