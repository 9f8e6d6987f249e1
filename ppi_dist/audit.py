"""Leakage audit of a train/test split of protein pairs.

    python -m ppi_dist.audit --train train.tsv --test test.tsv [--fasta seqs.fasta] [--json]

Reports the proteins and pairs (in either order) the two files share; how many test pairs
have both, one or neither protein seen in training (the C1/C2/C3 classes of Park & Marcotte,
Nature Methods 2012: a model scored on C1 pairs can win by remembering proteins); the class
balance of each file; and the AUROC on the test file of a baseline that reads nothing but
node degrees in the training graph:

    score(A, B) = (pos_deg(A) - neg_deg(A)) + (pos_deg(B) - neg_deg(B))

where pos_deg(X) / neg_deg(X) count the positive / negative training pairs X is part of (0
for unseen proteins). An AUROC well above 0.5 means the split can be "learned" without
looking at sequences. With `--fasta`, it also counts test proteins missing from the FASTA.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from sklearn.metrics import roc_auc_score

from ppi_dist.cli import run_tool
from ppi_dist.data import DataError, PairSource, read_fasta


def read_pairs(path: str | Path) -> list[tuple[str, str, float]]:
    """(protein_a, protein_b, label) of a labelled pair file, validated like training data."""
    source = PairSource(path, labeled=True, with_sequences=False)
    return [(r.protein_a, r.protein_b, r.label) for r in source.pair_rows()]


def degree_baseline_scores(
    train: list[tuple[str, str, float]], test: list[tuple[str, str, float]]
) -> list[float]:
    """Per test pair, (pos_deg - neg_deg)(A) + (pos_deg - neg_deg)(B) in the training graph."""
    net_degree: Counter = Counter()
    for a, b, label in train:
        sign = 1 if label == 1.0 else -1
        net_degree[a] += sign
        net_degree[b] += sign
    return [net_degree[a] + net_degree[b] for a, b, _ in test]


def audit(train_path: str | Path, test_path: str | Path, fasta: str | Path | None = None) -> dict:
    """The audit figures as a dict (see the module docstring)."""
    train, test = read_pairs(train_path), read_pairs(test_path)
    train_proteins = {p for a, b, _ in train for p in (a, b)}
    test_proteins = {p for a, b, _ in test for p in (a, b)}
    train_pairs = {frozenset((a, b)) for a, b, _ in train}
    test_pairs = {frozenset((a, b)) for a, b, _ in test}
    seen = Counter(int(a in train_proteins) + int(b in train_proteins) for a, b, _ in test)
    labels = [label for _, _, label in test]
    scores = degree_baseline_scores(train, test)
    report = {
        "train": {"file": str(train_path), **_balance(train), "proteins": len(train_proteins)},
        "test": {"file": str(test_path), **_balance(test), "proteins": len(test_proteins)},
        "shared_proteins": len(train_proteins & test_proteins),
        "shared_pairs": len(train_pairs & test_pairs),
        "test_pairs_by_proteins_seen": {"C1_both": seen[2], "C2_one": seen[1], "C3_none": seen[0]},
        "degree_baseline_auroc": roc_auc_score(labels, scores) if len(set(labels)) == 2 else None,
    }
    if fasta is not None:
        known = read_fasta(fasta)
        report["test_proteins_missing_from_fasta"] = len(test_proteins - known.keys())
    return report


def _balance(pairs: list[tuple[str, str, float]]) -> dict:
    positives = sum(1 for *_, label in pairs if label == 1.0)
    return {"pairs": len(pairs), "positive": positives, "negative": len(pairs) - positives}


def format_report(r: dict) -> str:
    n_test = r["test"]["pairs"]
    seen = r["test_pairs_by_proteins_seen"]

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


def main(argv: list[str] | None = None) -> int:
    """The command line; user errors print one line and exit 2 (`--debug`: traceback)."""
    return run_tool(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, help="training pair file")
    parser.add_argument("--test", required=True, help="test pair file")
    parser.add_argument("--fasta", help="FASTA to check the test proteins against")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    try:
        report = audit(args.train, args.test, args.fasta)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
