"""The first pass and `predict --screen`: symmetry, equality with the full predict at 1.0,
tiling, refusal without a first pass, the kept share, and resume after SIGKILL."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from ppi_dist.data.pairs import Pair
from ppi_dist.errors import UserError
from ppi_dist.inference.predict import PredictFiles, PredictOptions, PredictRun, predict
from ppi_dist.inference.prediction_file import FIELDS
from ppi_dist.models.saving import from_pretrained, save_pretrained
from tests.helpers import PROCESS_LIMIT_S, REPO, tiny_model, wait_until
from tests.inference.test_predict import _proteins, _read_tsv, _write_fasta, spread_model


@pytest.fixture(scope="module")
def model():
    model = spread_model()
    for parameter in model.first_pass.parameters():  # spread the first pass's scores too
        parameter.data.normal_(0, 0.05)
    return model


@pytest.fixture
def fasta(tmp_path):
    path = tmp_path / "p.fasta"
    _write_fasta(path, _proteins(14))
    return path


def _screen(model, out, fasta, screen, tile=3, **run) -> dict:
    options = PredictOptions(tile=tile, cache_dtype="float32", screen=screen)
    return predict(
        model, PredictFiles(out, fasta=fasta), options, PredictRun(progress=False, **run)
    )


def test_the_first_pass_is_symmetric_and_its_tiles_are_its_pairs(model):
    vectors = torch.randn(9, model.first_pass.fc2.out_features)
    a, b = torch.randint(0, 9, (40,)), torch.randint(0, 9, (40,))
    forward = model.first_pass.pair_logits(vectors[a], vectors[b])
    backward = model.first_pass.pair_logits(vectors[b], vectors[a])
    assert torch.equal(forward, backward)
    assert forward.std() > 0.1  # the scores differ between pairs
    tile = model.first_pass.tile_logits(vectors, vectors)
    assert torch.allclose(tile[a, b], forward, atol=1e-5)
    # Through the model's own path, on the states of real tokens: the same score either way.
    sequences = ["MKTAYIAKQR", "GSHMLEDPVW", "ACDEFGHIKLMN"]
    states = torch.randn(3, 14, model.encoder.config.hidden_size)
    mask = torch.zeros(3, 14, dtype=torch.bool)
    for row, sequence in enumerate(sequences):
        mask[row, : len(sequence)] = True
    index_a, index_b = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    side = (states, mask)
    there = model.first_pass_logits(side, side, index_a, index_b)
    back = model.first_pass_logits(side, side, index_b, index_a)
    assert torch.equal(there, back)


def test_screen_one_writes_todays_predict_and_names_the_stage(model, fasta, tmp_path):
    predict(
        model,
        PredictFiles(tmp_path / "full.tsv", fasta=fasta),
        PredictOptions(tile=3, cache_dtype="float32"),
        PredictRun(progress=False),
    )
    summary = _screen(model, tmp_path / "screened.tsv", fasta, 1.0)
    full, screened = _read_tsv(tmp_path / "full.tsv"), _read_tsv(tmp_path / "screened.tsv")
    assert summary["screen"]["kept_pairs"] == summary["pairs"] == len(full) == 91
    # Every column of today's output, byte for byte; the screen's two beside them.
    assert [{k: row[k] for k in full[0]} for row in screened] == full
    assert {row["stage"] for row in screened} == {"cross_attention"}
    assert all(0 < float(row["first_pass"]) < 1 for row in screened)


def test_a_screen_keeps_the_first_passs_best_share_for_cross_attention(model, fasta, tmp_path):
    summary = _screen(model, tmp_path / "s.tsv", fasta, 0.2)
    rows = _read_tsv(tmp_path / "s.tsv")
    kept = [row for row in rows if row["stage"] == "cross_attention"]
    dropped = [row for row in rows if row["stage"] == "first_pass"]
    assert len(rows) == 91 and len(kept) == math.ceil(0.2 * 91) == summary["screen"]["kept_pairs"]
    assert min(float(r["first_pass"]) for r in kept) > max(float(r["first_pass"]) for r in dropped)
    assert all(r["probability"] == "" and r["predicted"] == "0" for r in dropped)
    # The kept pairs' probabilities are the full model's.
    predict(
        model,
        PredictFiles(tmp_path / "full.tsv", fasta=fasta),
        PredictOptions(tile=3, cache_dtype="float32"),
        PredictRun(progress=False),
    )
    full = {
        (r["protein_a"], r["protein_b"]): r["probability"] for r in _read_tsv(tmp_path / "full.tsv")
    }
    # (batched with other pairs than in the full run: equal up to float rounding)
    for row in kept:
        assert (
            abs(float(full[(row["protein_a"], row["protein_b"])]) - float(row["probability"]))
            < 1e-6
        )
    # --min_prob and --top_k apply to the final scores: rows the screen dropped never pass.
    options = PredictOptions(tile=3, cache_dtype="float32", screen=0.2, top_k=5)
    predict(
        model, PredictFiles(tmp_path / "top.tsv", fasta=fasta), options, PredictRun(progress=False)
    )
    top = _read_tsv(tmp_path / "top.tsv")
    best = sorted((float(r["probability"]) for r in kept), reverse=True)[:5]
    assert sorted((float(r["probability"]) for r in top), reverse=True) == best


def test_a_tiled_screen_equals_an_untiled_one(model, fasta, tmp_path):
    _screen(model, tmp_path / "tiled.tsv", fasta, 0.3, tile=2)
    _screen(model, tmp_path / "whole.tsv", fasta, 0.3, tile=100)

    def by_pair(path):
        return {(r["protein_a"], r["protein_b"]): r for r in _read_tsv(path)}

    tiled, whole = by_pair(tmp_path / "tiled.tsv"), by_pair(tmp_path / "whole.tsv")
    assert tiled.keys() == whole.keys()
    for pair, row in tiled.items():
        assert row["stage"] == whole[pair]["stage"], pair
        assert abs(float(row["first_pass"]) - float(whole[pair]["first_pass"])) < 1e-6
        if row["stage"] == "cross_attention":
            assert abs(float(row["probability"]) - float(whole[pair]["probability"])) < 1e-6


def test_a_pair_file_is_screened_pair_by_pair(model, fasta, tmp_path):
    proteins = list(_proteins(14))
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(
        "protein_a\tprotein_b\tlabel\n"
        + "".join(
            f"{a}\t{b}\t{(i + j) % 2}\n"
            for i, a in enumerate(proteins)
            for j, b in enumerate(proteins)
            if i < j < i + 4
        )
    )
    options = PredictOptions(cache_dtype="float32", screen=0.5, chunk_pairs=7)
    files = PredictFiles(tmp_path / "s.parquet", pairs=pairs, fasta=fasta)
    summary = predict(model, files, options, PredictRun(progress=False))
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "s.parquet").to_pydict()
    assert list(table) == [
        "protein_a",
        "protein_b",
        "probability",
        "predicted",
        "label",
        *FIELDS[-2:],
    ]
    kept = [s == "cross_attention" for s in table["stage"]]
    assert sum(kept) == summary["screen"]["kept_pairs"] == math.ceil(0.5 * len(kept))
    assert all((p is None) != k for p, k in zip(table["probability"], kept, strict=True))


def test_a_model_without_a_first_pass_refuses_screen_by_name(fasta, tmp_path):
    old = tiny_model(first_pass_width=None)
    save_pretrained(old, tmp_path / "old")
    config = json.loads((tmp_path / "old" / "secai_config.json").read_text())
    del config["first_pass_width"]  # a folder saved before the first pass existed
    (tmp_path / "old" / "secai_config.json").write_text(json.dumps(config))
    loaded = from_pretrained(tmp_path / "old")
    assert loaded.first_pass is None
    loaded.loaded_from = str(tmp_path / "old")
    with pytest.raises(UserError, match=r"old: --screen needs a model with a first pass"):
        _screen(loaded, tmp_path / "x.tsv", fasta, 0.1)
    assert not (tmp_path / "x.tsv.partial").exists()  # refused before any work


# Runs predict, and stops for good (until killed) when it reaches chunk STOP_AT.
_BLOCKING_PREDICT = """
import pathlib, sys, time
from ppi_dist.cli.predict import main
from ppi_dist.inference import predict as predicting
real, marker = predicting._scored_lines, pathlib.Path(sys.argv[1])
def blocking(model, cache, chunk_pairs, *rest):
    if chunk_pairs[0] == int(sys.argv[2]):
        marker.write_text("reached")
        while True:
            time.sleep(1)
    return real(model, cache, chunk_pairs, *rest)
predicting._scored_lines = blocking
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.multiprocess
def test_a_screen_killed_by_sigkill_resumes_to_the_same_file(model, fasta, tmp_path):
    save_pretrained(model, tmp_path / "model")
    args = ["--model", str(tmp_path / "model"), "--fasta", str(fasta), "--screen", "0.25"]
    args += ["--tile", "2", "--cache_dtype", "float32", "--no_progress", "--out"]
    marker = tmp_path / "reached"
    process = subprocess.Popen(
        [sys.executable, "-c", _BLOCKING_PREDICT, str(marker), "9", *args, str(tmp_path / "k.tsv")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(marker.exists, process, "predict reaching chunk 9")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=PROCESS_LIMIT_S)
    progress = json.loads((tmp_path / "k.tsv.partial" / "rank0-of-1.json").read_text())
    assert progress["next_chunk"] == 9 and not (tmp_path / "k.tsv").exists()
    for out in ("k.tsv", "whole.tsv"):  # the killed run resumed; one never interrupted
        result = subprocess.run(
            [sys.executable, "-m", "ppi_dist.predict", *args, str(tmp_path / out)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=PROCESS_LIMIT_S,
        )
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "k.tsv").read_text() == (tmp_path / "whole.tsv").read_text()
    rows = _read_tsv(tmp_path / "whole.tsv")
    assert len(rows) == 91 and sum(r["stage"] == "cross_attention" for r in rows) == 23


def test_first_pass_scores_come_with_every_scored_split(model):
    from ppi_dist.inference.scoring import score_pairs

    proteins = _proteins(6)
    pairs = [
        Pair(a, b, proteins[a], proteins[b], float(i % 2))
        for i, (a, b) in enumerate(zip(list(proteins)[:-1], list(proteins)[1:], strict=True))
    ]
    scored = score_pairs(model, pairs)
    assert scored.first_pass is not None and np.all(
        (scored.first_pass > 0) & (scored.first_pass < 1)
    )
    reversed_pairs = [
        Pair(p.protein_b, p.protein_a, p.sequence_b, p.sequence_a, p.label) for p in pairs
    ]
    assert np.array_equal(score_pairs(model, reversed_pairs).first_pass, scored.first_pass)


def test_ranks_compute_the_same_cut_and_merge_to_the_single_run(model, fasta, tmp_path):
    from ppi_dist.inference.prediction_file import finalize, output_columns
    from ppi_dist.inference.scoring import Ranks

    single = _screen(model, tmp_path / "one.tsv", fasta, 0.3, tile=2)
    out = tmp_path / "three.tsv"
    for rank in range(3):  # what `accelerate launch` runs, one process per rank
        summary = _screen(model, out, fasta, 0.3, tile=2, ranks=Ranks(rank, 3))
        assert summary["screen"] == single["screen"]  # every rank found the same cut
    finalize(out, 3, None, output_columns(calibrated=False, has_labels=False, screened=True))
    merged, alone = _read_tsv(out), _read_tsv(tmp_path / "one.tsv")
    assert [(r["protein_a"], r["protein_b"], r["stage"]) for r in merged] == [
        (r["protein_a"], r["protein_b"], r["stage"]) for r in alone
    ]
