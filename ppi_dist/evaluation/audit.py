"""Leakage audit of a train/test split of protein pairs.

    ppi-dist audit --train train.tsv --test test.tsv [--fasta seqs.fasta] [--json]

Reports the proteins and pairs (in either order) the two files share; how many test pairs
have both, one or neither protein seen in training (the C1/C2/C3 classes of Park & Marcotte,
Nature Methods 2012: a model scored on C1 pairs can win by remembering proteins); the class
balance of each file; and the AUROC on the test file of a baseline that reads nothing but
node degrees in the training graph:

    score(A, B) = (pos_deg(A) - neg_deg(A)) + (pos_deg(B) - neg_deg(B))

where pos_deg(X) / neg_deg(X) count the positive / negative training pairs X is part of (0
for unseen proteins). An AUROC well above 0.5 means the split can be "learned" without
looking at sequences. With `--fasta`, it also counts test proteins missing from the FASTA.
Contradictory labels (one pair, in either order, labelled 1 on one line and 0 on another)
are counted within each file and between the two (the trainer refuses them by default).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ppi_dist.data.fasta import read_fasta
from ppi_dist.data.pairs import Pair, PairSource
from ppi_dist.evaluation.metrics import auroc_aupr


def read_pairs(path: str | Path) -> list[Pair]:
    """The labelled pairs of a file, validated like training data (no sequences read);
    contradictory labels are kept (`read_source` counts them)."""
    return list(read_source(path).pair_rows())


def read_source(path: str | Path) -> PairSource:
    """A validated source of labelled pairs that keeps (and counts) contradictory labels."""
    source = PairSource(path, labeled=True, with_sequences=False, allow_contradictory_labels=True)
    source.validate()
    return source


def contradictions_between(train: list[Pair], test: list[Pair]) -> int:
    """Test rows whose pair (either order) is in the training file with the other label."""
    labels: dict[frozenset, set[float]] = {}
    for pair in train:
        labels.setdefault(frozenset(pair[:2]), set()).add(pair.label)
    return sum(
        1 for pair in test if any(y != pair.label for y in labels.get(frozenset(pair[:2]), ()))
    )


def degree_baseline_scores(train: list[Pair], test: list[Pair]) -> list[float]:
    """Per test pair, (pos_deg - neg_deg)(A) + (pos_deg - neg_deg)(B) in the training graph."""
    net_degree: Counter = Counter()
    for pair in train:
        sign = 1 if pair.label == 1.0 else -1
        net_degree[pair.protein_a] += sign
        net_degree[pair.protein_b] += sign
    return [net_degree[pair.protein_a] + net_degree[pair.protein_b] for pair in test]


def audit(train_path: str | Path, test_path: str | Path, fasta: str | Path | None = None) -> dict:
    """The audit figures as a dict (see the module docstring)."""
    sources = read_source(train_path), read_source(test_path)
    train, test = (list(source.pair_rows()) for source in sources)
    train_proteins = {p for pair in train for p in pair[:2]}
    test_proteins = {p for pair in test for p in pair[:2]}
    train_pairs = {frozenset(pair[:2]) for pair in train}
    test_pairs = {frozenset(pair[:2]) for pair in test}
    seen = Counter(sum(p in train_proteins for p in pair[:2]) for pair in test)
    labels = np.array([pair.label for pair in test])
    scores = np.array(degree_baseline_scores(train, test), dtype=np.float64)
    two_classes = labels.min() != labels.max()
    report = {
        "train": {"file": str(train_path), **_balance(train), "proteins": len(train_proteins)},
        "test": {"file": str(test_path), **_balance(test), "proteins": len(test_proteins)},
        "shared_proteins": len(train_proteins & test_proteins),
        "shared_pairs": len(train_pairs & test_pairs),
        "contradictory_labels": {
            "within_train": sources[0].report.contradictions,
            "within_test": sources[1].report.contradictions,
            "test_vs_train": contradictions_between(train, test),
        },
        "test_pairs_by_proteins_seen": {"C1_both": seen[2], "C2_one": seen[1], "C3_none": seen[0]},
        "degree_baseline_auroc": auroc_aupr(scores, labels)[0] if two_classes else None,
    }
    if fasta is not None:
        known = read_fasta(fasta)
        report["test_proteins_missing_from_fasta"] = len(test_proteins - known.keys())
    return report


def _balance(pairs: list[Pair]) -> dict:
    positives = sum(1 for pair in pairs if pair.label == 1.0)
    return {"pairs": len(pairs), "positive": positives, "negative": len(pairs) - positives}


def format_report(r: dict) -> str:
    n_test = r["test"]["pairs"]
    seen = r["test_pairs_by_proteins_seen"]
    contra = r["contradictory_labels"]

    def share(count: int, total: int) -> str:
        return f"{count:,} of {total:,} ({100 * count / total:.1f}%)" if total else "0"

    lines = [
        f"train: {r['train']['file']}",
        f"test:  {r['test']['file']}",
        "",
        "class balance (positive / negative):",
    ]
    for name in ("train", "test"):
        f = r[name]
        lines.append(
            f"  {name:5} {f['pairs']:,} pairs: {f['positive']:,} / {f['negative']:,} "
            f"({100 * f['positive'] / f['pairs']:.1f}% positive), {f['proteins']:,} proteins"
        )
    lines += [
        "",
        f"test proteins seen in training: {share(r['shared_proteins'], r['test']['proteins'])}",
        f"test pairs also in training (either order): {share(r['shared_pairs'], n_test)}",
        "contradictory labels (one pair, either order, labelled 1 and 0): "
        f"{contra['within_train']:,} rows in train, {contra['within_test']:,} in test, "
        f"{contra['test_vs_train']:,} test rows against train",
        "test pairs by proteins seen in training (Park & Marcotte):",
        f"  C1 both: {share(seen['C1_both'], n_test)}",
        f"  C2 one:  {share(seen['C2_one'], n_test)}",
        f"  C3 none: {share(seen['C3_none'], n_test)}",
        "",
    ]
    auroc = r["degree_baseline_auroc"]
    lines.append(
        "node-degree baseline AUROC on test: "
        + (f"{auroc:.3f}" if auroc is not None else "n/a (one class)")
        + "  (0.5 = no leakage through degrees)"
    )
    if "test_proteins_missing_from_fasta" in r:
        lines.append(
            f"test proteins missing from the FASTA: {r['test_proteins_missing_from_fasta']:,}"
        )
    return "\n".join(lines)
