"""Prediction: all-vs-all, A x B and pair files equal pair-by-pair scoring; resume; ranks."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from ppi_dist.cli.predict import main as predict_main
from ppi_dist.data.batching import collate_pairs
from ppi_dist.data.pairs import Pair
from ppi_dist.errors import ProgressMismatchError, UserError
from ppi_dist.inference import cache as embeddings
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.plans import AllPairsPlan
from ppi_dist.inference.predict import PredictFiles, PredictOptions, PredictRun, predict
from ppi_dist.inference.prediction_file import finalize, output_columns
from ppi_dist.inference.scoring import Ranks, score_cached
from ppi_dist.models.calibration import Calibration
from ppi_dist.models.saving import save_pretrained
from tests.helpers import PROCESS_LIMIT_S, REPO, random_sequence, tiny_model


def _write_fasta(path, proteins: dict[str, str]) -> None:
    path.write_text("".join(f">{p} some description\n{s}\n" for p, s in proteins.items()))


def _proteins(n: int, seed: int = 0, prefix: str = "P") -> dict[str, str]:
    rng = random.Random(seed)
    return {f"{prefix}{i:02d}": random_sequence(rng, 6, 50) for i in range(n)}


def _read_tsv(path) -> list[dict]:
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def _predict_all(model, out, fasta, tile: int, **options) -> dict:
    """`predict` of every pair in `fasta`, tiled by `tile`, without a progress bar."""
    return predict(
        model,
        PredictFiles(out, fasta=fasta),
        PredictOptions(tile=tile),
        PredictRun(progress=False, **options),
    )


def _one_by_one(model, sequences: dict[str, str], a: str, b: str) -> float:
    """The reference: the full model on a batch of exactly this pair."""
    batch = collate_pairs([Pair(a, b, sequences[a], sequences[b])])
    return float(model.predict_proba(batch)[0])


def spread_model() -> torch.nn.Module:
    """A tiny model whose head has random BatchNorm statistics, so probabilities spread out."""
    torch.manual_seed(0)
    model = tiny_model()
    model.head.norm.running_mean.normal_()
    model.head.norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return spread_model()


def test_all_vs_all_equals_pair_by_pair_and_names_each_pair_once(model, tmp_path):
    proteins = _proteins(11)
    _write_fasta(tmp_path / "p.fasta", proteins)
    out = tmp_path / "scores.tsv"
    summary = predict(
        model,
        PredictFiles(out, fasta=tmp_path / "p.fasta"),
        PredictOptions(tile=3, cache_dtype="float32"),
        PredictRun(progress=False),
    )
    rows = _read_tsv(out)
    assert summary["complete"] and summary["rows_written"] == len(rows) == 55
    seen = [(r["protein_a"], r["protein_b"]) for r in rows]
    assert sorted(seen) == list(itertools.combinations(proteins, 2))  # once each, FASTA order
    for row in rows:
        expected = _one_by_one(model, proteins, row["protein_a"], row["protein_b"])
        assert abs(float(row["probability"]) - expected) <= 1e-5
        assert row["predicted"] == str(int(float(row["probability"]) >= 0.5))
        assert "label" not in row
    assert not (tmp_path / "scores.tsv.partial").exists()


def test_include_self_and_fp16_cache_is_close(model, tmp_path):
    proteins = _proteins(6)
    _write_fasta(tmp_path / "p.fasta", proteins)
    out = tmp_path / "s.tsv"
    predict(
        model,
        PredictFiles(out, fasta=tmp_path / "p.fasta"),
        PredictOptions(include_self=True, tile=4),
        PredictRun(progress=False),
    )
    rows = _read_tsv(out)
    assert len(rows) == 21
    assert sum(r["protein_a"] == r["protein_b"] for r in rows) == 6
    for row in rows:  # fp16 states (the default) stay close to the fp32 model
        expected = _one_by_one(model, proteins, row["protein_a"], row["protein_b"])
        assert abs(float(row["probability"]) - expected) <= 2e-3


def test_two_sets_score_every_cross_pair(model, tmp_path):
    set_a, set_b = _proteins(4, seed=1, prefix="A"), _proteins(5, seed=2, prefix="B")
    set_b["A01"] = set_a["A01"]  # a protein in both sets: no (A01, A01) pair
    _write_fasta(tmp_path / "a.fasta", set_a)
    _write_fasta(tmp_path / "b.fasta", set_b)
    out = tmp_path / "x.parquet"
    predict(
        model,
        PredictFiles(out, fasta=tmp_path / "a.fasta", fasta_b=tmp_path / "b.fasta"),
        PredictOptions(tile=2, cache_dtype="float32"),
        PredictRun(progress=False),
    )
    table = pq.read_table(out).to_pylist()
    expected_pairs = {(a, b) for a in set_a for b in set_b if a != b}
    assert {(r["protein_a"], r["protein_b"]) for r in table} == expected_pairs
    assert len(table) == len(expected_pairs) == 23
    both = set_a | set_b
    for row in table:
        expected = _one_by_one(model, both, row["protein_a"], row["protein_b"])
        assert abs(row["probability"] - expected) <= 1e-5


def test_pair_file_keeps_order_and_labels(model, tmp_path):
    proteins = _proteins(8)
    _write_fasta(tmp_path / "p.fasta", proteins)
    rng = random.Random(3)
    ids = list(proteins)
    pairs = [(rng.choice(ids), rng.choice(ids), rng.randint(0, 1)) for _ in range(30)]
    lines = ["protein_a\tprotein_b\tlabel", *(f"{a}\t{b}\t{y}" for a, b, y in pairs)]
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "pred.tsv"
    predict(
        model,
        PredictFiles(out, pairs=tmp_path / "pairs.tsv", fasta=tmp_path / "p.fasta"),
        PredictOptions(chunk_pairs=7, cache_dtype="float32", threshold=0.3),
        PredictRun(progress=False),
    )
    rows = _read_tsv(out)
    assert [(r["protein_a"], r["protein_b"], int(r["label"])) for r in rows] == pairs
    for row in rows:
        p = float(row["probability"])
        assert abs(p - _one_by_one(model, proteins, row["protein_a"], row["protein_b"])) <= 1e-5
        assert row["predicted"] == str(int(p >= 0.3))


def test_top_k_and_min_prob(model, tmp_path):
    proteins = _proteins(10)
    _write_fasta(tmp_path / "p.fasta", proteins)
    fasta = tmp_path / "p.fasta"
    predict(
        model,
        PredictFiles(tmp_path / "all.tsv", fasta=fasta),
        PredictOptions(tile=3),
        PredictRun(progress=False),
    )
    everything = _read_tsv(tmp_path / "all.tsv")
    ranked = sorted(everything, key=lambda r: -float(r["probability"]))
    predict(
        model,
        PredictFiles(tmp_path / "top.tsv", fasta=fasta),
        PredictOptions(tile=3, top_k=7),
        PredictRun(progress=False),
    )
    top = _read_tsv(tmp_path / "top.tsv")
    assert [float(r["probability"]) for r in top] == [float(r["probability"]) for r in ranked[:7]]
    cut = float(ranked[20]["probability"])
    predict(
        model,
        PredictFiles(tmp_path / "min.tsv", fasta=fasta),
        PredictOptions(tile=3, min_prob=cut),
        PredictRun(progress=False),
    )
    kept = _read_tsv(tmp_path / "min.tsv")
    assert kept == [r for r in everything if float(r["probability"]) >= cut]


def test_a_calibrated_model_writes_its_probability_beside_the_raw_score(model, tmp_path):
    proteins = _proteins(9)
    _write_fasta(tmp_path / "p.fasta", proteins)
    names = sorted(proteins)
    lines = ["protein_a\tprotein_b\tlabel"]
    lines += [f"{a}\t{b}\t{(i + j) % 2}" for i, a in enumerate(names) for j, b in enumerate(names)]
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n")
    common = {"pairs": tmp_path / "pairs.tsv", "fasta": tmp_path / "p.fasta"}
    quiet = PredictRun(progress=False)
    raw = _read_tsv_after(model, tmp_path / "raw.tsv", common, PredictOptions())
    assert "raw_score" not in raw[0]  # no calibration: the probability is the raw score
    # A calibration that pulls the scores towards 0.27: sigmoid(0.25 logit(s) - 1).
    calibration = Calibration(slope=0.25, offset=-1.0, pairs=50)
    model.calibration = calibration
    try:
        cut = float(np.median(calibration.apply([float(r["probability"]) for r in raw])))
        options = PredictOptions(threshold=0.5, min_prob=cut)
        rows = _read_tsv_after(model, tmp_path / "cal.tsv", common, options)
        summary = predict(model, PredictFiles(tmp_path / "cal.parquet", **common), options, quiet)
        screen = PredictOptions(threshold=0.5, prior=0.01)  # one pair in a hundred interacts
        screened = _read_tsv_after(model, tmp_path / "screen.tsv", common, screen)
    finally:
        model.calibration = None
    assert list(rows[0]) == [
        "protein_a",
        "protein_b",
        "probability",
        "raw_score",
        "predicted",
        "label",
    ]
    by_pair = {(r["protein_a"], r["protein_b"]): r for r in raw}
    kept = [r for r in raw if calibration.apply([float(r["probability"])])[0] >= cut]
    assert 0 < len(rows) == len(kept) < len(raw)  # --min_prob reads the calibrated column
    for row in rows:
        score = float(row["raw_score"])
        assert score == float(by_pair[row["protein_a"], row["protein_b"]]["probability"])
        assert float(row["probability"]) == calibration.apply([score])[0]
        assert row["predicted"] == str(int(score >= 0.5))  # the threshold is on the raw score
    assert summary["probability"] == "platt scaling fitted on 50 validation pairs, at 0.5 positive"
    for row in screened:  # Bayes' rule to the stated balance; decisions stay on the raw score
        score = float(row["raw_score"])
        assert float(row["probability"]) == calibration.apply([score], prior=0.01)[0]
        assert float(row["probability"]) < calibration.apply([score])[0]
        assert row["predicted"] == str(int(score >= 0.5))
    with pytest.raises(UserError, match="--prior needs the model's calibration"):
        predict(model, PredictFiles(tmp_path / "x.tsv", **common), screen, quiet)  # none now
    assert summary["threshold_calibrated"] == calibration.apply([0.5])[0]
    table = pq.read_table(tmp_path / "cal.parquet").to_pylist()
    assert [r["raw_score"] for r in table] == [float(r["raw_score"]) for r in rows]


def _read_tsv_after(model, out, files: dict, options: PredictOptions) -> list[dict]:
    predict(model, PredictFiles(out, **files), options, PredictRun(progress=False))
    return _read_tsv(out)


def test_interrupted_run_resumes_to_the_same_output(model, tmp_path):
    proteins = _proteins(13)
    _write_fasta(tmp_path / "p.fasta", proteins)
    fasta = tmp_path / "p.fasta"
    _predict_all(model, tmp_path / "whole.tsv", fasta, 3)
    out = tmp_path / "resumed.tsv"
    first = _predict_all(model, out, fasta, 3, max_chunks=4)
    assert not first["complete"] and not out.exists()
    progress = json.loads((tmp_path / "resumed.tsv.partial" / "rank0-of-1.json").read_text())
    assert progress["next_chunk"] == 4 and not progress["done"]
    # A crash mid-chunk leaves half-written rows after the recorded size: they are dropped.
    with open(tmp_path / "resumed.tsv.partial" / "rank0-of-1.tsv", "a") as handle:
        handle.write("4\tP00\tP99\t0.5\t1\t\n5\tP0")
    second = _predict_all(model, out, fasta, 3, max_chunks=3)
    assert not second["complete"]
    third = _predict_all(model, out, fasta, 3)
    assert third["complete"]
    assert out.read_text() == (tmp_path / "whole.tsv").read_text()
    # Other options against the same progress files are refused.
    _predict_all(model, tmp_path / "x.tsv", fasta, 3, max_chunks=1)
    with pytest.raises(ProgressMismatchError, match="other inputs"):
        _predict_all(model, tmp_path / "x.tsv", fasta, 4)
    with pytest.raises(FileExistsError):
        _predict_all(model, out, fasta, 3)


def test_ranks_score_disjoint_slices_that_merge_to_the_single_run(model, tmp_path):
    proteins = _proteins(12)
    _write_fasta(tmp_path / "p.fasta", proteins)
    fasta = tmp_path / "p.fasta"
    _predict_all(model, tmp_path / "one.tsv", fasta, 2)
    out = tmp_path / "three.tsv"
    for rank in range(3):  # what `accelerate launch` runs, one process per rank
        summary = _predict_all(model, out, fasta, 2, ranks=Ranks(rank, 3))
        assert summary["complete"]
    parts = [(out.parent / "three.tsv.partial" / f"rank{r}-of-3.tsv").read_text() for r in range(3)]
    chunks = [{int(line.split("\t")[0]) for line in p.splitlines()} for p in parts]
    assert all(c == {k for k in range(21) if k % 3 == r} for r, c in enumerate(chunks))
    finalize(out, 3, None, output_columns(calibrated=False, has_labels=False))
    # Each rank encodes only its own proteins, so encoder batches differ from the single
    # run's: the same rows, probabilities equal to float rounding.
    merged, single = _read_tsv(out), _read_tsv(tmp_path / "one.tsv")
    assert [(r["protein_a"], r["protein_b"]) for r in merged] == [
        (r["protein_a"], r["protein_b"]) for r in single
    ]
    for got, want in zip(merged, single, strict=True):
        assert abs(float(got["probability"]) - float(want["probability"])) <= 1e-6


def _options_of(model):
    return PredictOptions(threshold=model.config.decision_threshold, tile=2)


def test_plan_counts_and_orientation():
    lengths = {p: len(p) + i for i, p in enumerate(["z", "y", "x", "w", "v"])}
    plan = AllPairsPlan(lengths, list(lengths), tile=2)
    pairs = [pair for c in range(plan.num_chunks) for pair in plan.pairs_of(c)]
    assert len(pairs) == plan.total_pairs == 10
    order = list(lengths)
    assert all(order.index(pair.protein_a) < order.index(pair.protein_b) for pair in pairs)


@pytest.mark.multiprocess
def test_cli_on_a_saved_model_in_a_fresh_process(model, tmp_path):
    save_pretrained(model, tmp_path / "model")
    proteins = _proteins(5)
    _write_fasta(tmp_path / "p.fasta", proteins)
    out = tmp_path / "cli.tsv"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ppi_dist.predict",
            "--model",
            str(tmp_path / "model"),
            "--fasta",
            str(tmp_path / "p.fasta"),
            "--out",
            str(out),
            "--cache_dtype",
            "float32",
            "--no_progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=PROCESS_LIMIT_S,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["rows_written"] == 10
    for row in _read_tsv(out):
        expected = _one_by_one(model, proteins, row["protein_a"], row["protein_b"])
        assert abs(float(row["probability"]) - expected) <= 1e-5


def test_cli_refuses_bad_arguments(tmp_path):
    assert predict_main(["--model", str(tmp_path), "--out", "x.tsv", "--bogus"]) == 2
    with pytest.raises(ValueError, match="output must end"):
        predict(tiny_model(), PredictFiles(tmp_path / "x.csv", fasta=tmp_path / "p.fasta"))


def test_order_dependent_model_keeps_each_pairs_orientation(tmp_path):
    model = tiny_model(seed=4, symmetric="none").eval()
    model.head.norm.running_mean.normal_()
    proteins = _proteins(6, seed=5)
    cache = EmbeddingCache.build(model, proteins, dtype="float32")
    pairs = [Pair(a, b) for a in proteins for b in proteins if a != b]
    got = score_cached(model, cache, pairs, max_tokens=300)
    for pair, p in zip(pairs, got, strict=True):
        assert abs(p - _one_by_one(model, proteins, pair.protein_a, pair.protein_b)) <= 1e-5
    swapped = pairs.index(Pair(pairs[0].protein_b, pairs[0].protein_a))
    assert abs(got[0] - got[swapped]) > 1e-4  # order matters here


def test_ranks_sharing_a_cache_dir_encode_once(model, tmp_path, monkeypatch):
    """Two ranks with one --cache_dir: rank 0 encodes every protein once, rank 1 waits and
    reads the same folder (two writers of one memory map would corrupt it); the merged
    output is the single-process one."""
    proteins = _proteins(10)
    _write_fasta(tmp_path / "p.fasta", proteins)
    fasta = tmp_path / "p.fasta"
    predict(
        model,
        PredictFiles(tmp_path / "one.tsv", fasta=fasta),
        PredictOptions(tile=3),
        PredictRun(progress=False),
    )
    builds: list[str] = []
    real_build = embeddings.EmbeddingCache.build.__func__

    def counted(cls, *args, **kwargs):
        builds.append(threading.current_thread().name)
        return real_build(cls, *args, **kwargs)

    monkeypatch.setattr(embeddings.EmbeddingCache, "build", classmethod(counted))
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def rank(r: int) -> None:
        try:
            predict(
                model,
                PredictFiles(tmp_path / "two.tsv", fasta=fasta),
                PredictOptions(tile=3),
                PredictRun(
                    cache_dir=tmp_path / "cache",
                    progress=False,
                    ranks=Ranks(r, 2, barrier=barrier.wait),
                ),
            )
        except BaseException as error:  # surfaced below, not lost in the thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,), name=f"rank{r}") for r in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert builds == ["rank0"]
    merged, single = _read_tsv(tmp_path / "two.tsv"), _read_tsv(tmp_path / "one.tsv")
    assert [(r["protein_a"], r["protein_b"]) for r in merged] == [
        (r["protein_a"], r["protein_b"]) for r in single
    ]
    for got, want in zip(merged, single, strict=True):
        assert abs(float(got["probability"]) - float(want["probability"])) <= 1e-6
