"""Similarity-disjoint train / valid (/ test) split of a pair file that ships none.

    ppi-dist split --pairs train.tsv --fasta seqs.fasta --valid_fraction 0.1 \\
        [--test_fraction 0.1] [--identity 0.4] [--method graph|random] --out_dir DIR

`--method graph` (the default), as the Bernett gold standard was made:
1. proteins are joined when their sequences are identical or an MMseqs2 all-against-all
   search finds them at `identity` or more over `coverage` of both (`data/clusters.py`);
   `--clusters FILE` gives clusters instead (representative<TAB>member rows, as MMseqs2
   `easy-cluster` writes `*_cluster.tsv`);
2. the graph of these clusters is cut into blocks that hold the asked fractions of the
   PAIRS and that few pairs cross (KaHIP, `data/partition.py`);
3. pairs inside a block go to its file; pairs across blocks are dropped and counted (with
   `resample_negatives`, crossing negatives are replaced by negatives inside the blocks);
   an MMseqs2 search of each held-out block against training gives the highest identity
   left between them (`max_identity_between_blocks`, below `identity` by construction).

`--method random` is the earlier split: a seeded random fraction of the proteins (by count,
groups whole) per held-out block, exact duplicates and `--clusters` grouped, no MMseqs2.
Holding out a fraction f of the proteins leaves about f^2 of the pairs and drops about
2f(1-f) of them, which is why it is no longer the default; the graph method's report puts
a random split at the same fractions, seed and clusters beside its own (`random`).

DIR/split_report.json holds every count. Pair files are read through `pairs.PairSource`.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ppi_dist.checks import check_can_rank
from ppi_dist.data import clusters as mmseqs
from ppi_dist.data.fasta import write_fasta
from ppi_dist.data.pairs import Columns, Pair, PairSource, sequences_of, write_pairs
from ppi_dist.data.partition import cluster_graph, partition, partitioner_name, resample_negatives
from ppi_dist.errors import ConfigError, DataError, MissingToolError

BLOCKS = ("train", "valid", "test")
METHODS = ("graph", "random")
LOPSIDED = 0.15  # a held-out block's positive share this far from the input's gets a note


@dataclass
class SplitReport:
    """Counts of one split: `pairs_in == the blocks' pairs + dropped_pairs`."""

    method: str
    seed: int
    asked: dict[str, float]  # held-out block -> fraction of the `fractions_of`
    pairs_in: int
    positive_in: int
    proteins: int
    clusters: int
    dropped_pairs: int  # pairs lost: those across blocks, less the negatives drawn anew
    dropped_positive: int
    blocks: dict[str, dict[str, int]]  # block -> pairs, positive, proteins, clusters
    max_identity_between_blocks: float | None = None
    fractions_of: str = "pairs"  # or "positives" (resample_negatives), "proteins" (random)
    identity: float | None = None
    coverage: float | None = None
    crossing_pairs: int = 0  # input pairs across blocks
    resampled_negatives: int = 0  # new negatives drawn inside blocks (resample_negatives)
    unpaired_negative_stubs: int = 0
    random: dict | None = None  # the random split beside it: dropped_pairs, blocks
    tools: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    inputs: dict[str, str | None] = field(default_factory=dict)

    def describe(self) -> str:
        def fraction(blocks: dict, name: str) -> str:
            return f"{blocks[name]['pairs'] / self.pairs_in:.1%}"

        held = [name for name in BLOCKS[1:] if name in self.asked]
        lines = [
            f"proteins: {self.proteins:,} in {self.clusters:,} clusters"
            + (
                f" (MMseqs2 at identity {self.identity}, coverage {self.coverage})"
                if self.identity is not None
                else ""
            ),
            f"{'':26}" + "".join(f"{name:>12}" for name in (*BLOCKS[:1], *held)) + "     dropped",
        ]
        rows = [(self.method, {"dropped_pairs": self.dropped_pairs, "blocks": self.blocks})]
        if self.random is not None:
            rows.append(("random (same seed)", self.random))
        for label, split in rows:
            blocks = split["blocks"]
            lines.append(
                f"{label + ' pairs':26}"
                + "".join(f"{blocks[n]['pairs']:>12,}" for n in (*BLOCKS[:1], *held))
                + f"{split['dropped_pairs']:>12,}"
            )
            lines.append(
                f"{'  of the input':26}"
                + "".join(f"{fraction(blocks, n):>12}" for n in (*BLOCKS[:1], *held))
                + f"{split['dropped_pairs'] / self.pairs_in:>12.1%}"
            )
        for name in (*BLOCKS[:1], *held):
            block = self.blocks[name]
            lines.append(
                f"{name}: {block['positive']:,} positive, {block['proteins']:,} proteins, "
                f"{block['clusters']:,} clusters"
                + (
                    f", asked {self.asked[name]:.0%} of the {self.fractions_of}"
                    if name in self.asked
                    else ""
                )
            )
        balance = self.positive_in / max(self.pairs_in, 1)
        for name in held:
            block = self.blocks[name]
            share = block["positive"] / max(block["pairs"], 1)
            if abs(share - balance) > LOPSIDED:
                lines.append(
                    f"note: {name} is {share:.1%} positive against {balance:.1%} of the input: "
                    "a threshold chosen on it favours that balance (calibration weighs its "
                    "classes 1:1); --resample_negatives keeps the negatives in every block"
                )
        if self.random is not None and self.dropped_pairs > self.random["dropped_pairs"]:
            lines.append(
                "note: the cut dropped more pairs than the random draw (whose held-out blocks "
                "hold far less than asked): the graph has little structure to cut along; "
                "--resample_negatives keeps the negatives"
            )
        if self.resampled_negatives:
            lines.append(
                f"negatives resampled inside blocks: {self.resampled_negatives:,} "
                f"({self.unpaired_negative_stubs:,} stubs unpaired)"
            )
        lines.append(
            "highest identity between a held-out block and train (MMseqs2 search): "
            + (
                "not checked (MMseqs2 not installed)"
                if self.max_identity_between_blocks is None
                else f"{self.max_identity_between_blocks:.3f}"
            )
        )
        return "\n".join(lines)


@dataclass
class Split:
    blocks: dict[str, list[Pair]]  # train, valid, test (empty when not asked)
    dropped: list[Pair]
    report: SplitReport


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
    """Identifiers grouped by identical sequence (and by `clusters`, any linked pairs),
    each group sorted, groups in order of their first identifier."""
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


def _random_blocks(groups: list[list[str]], fractions: dict[str, float], seed: int) -> list[str]:
    """Groups shuffled with `random.Random(seed)`, taken into each held-out block until it
    holds its fraction of the proteins."""
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    total = sum(len(group) for group in groups)
    blocks = ["train"] * len(groups)
    position = 0
    for name, fraction in fractions.items():
        held = 0
        while position < len(order) and held < fraction * total:
            blocks[order[position]] = name
            held += len(groups[order[position]])
            position += 1
    return blocks


def _assign(
    pairs: list[Pair], groups: list[list[str]], group_blocks: list[str]
) -> tuple[dict[str, list[Pair]], list[Pair], dict[str, dict[str, int]]]:
    block_of = {p: group_blocks[i] for i, group in enumerate(groups) for p in group}
    blocks: dict[str, list[Pair]] = {name: [] for name in BLOCKS}
    dropped = []
    for pair in pairs:
        a, b = block_of[pair.protein_a], block_of[pair.protein_b]
        (blocks[a] if a == b else dropped).append(pair)
    return blocks, dropped, _counts(blocks, groups)


def _counts(blocks: dict[str, list[Pair]], groups: list[list[str]]) -> dict[str, dict[str, int]]:
    group_of = {p: i for i, group in enumerate(groups) for p in group}
    counts = {}
    for name, pairs in blocks.items():
        proteins = {p for pair in pairs for p in (pair.protein_a, pair.protein_b)}
        counts[name] = {
            "pairs": len(pairs),
            "positive": sum(pair.label == 1 for pair in pairs),
            "proteins": len(proteins),
            "clusters": len({group_of[p] for p in proteins}),
        }
    return counts


def _proteins(pairs: list[Pair], sequences: dict[str, str]) -> dict[str, str]:
    return {p: sequences[p] for pair in pairs for p in (pair.protein_a, pair.protein_b)}


def split_pairs(
    pairs: list[Pair],
    sequences: dict[str, str],
    valid_fraction: float,
    test_fraction: float = 0.0,
    *,
    method: str = "graph",
    seed: int = 0,
    clusters: list[tuple[str, str]] | None = None,
    identity: float = 0.4,
    coverage: float = mmseqs.DEFAULT_COVERAGE,
    resample: bool = False,
    threads: int = 1,
) -> Split:
    """Split `pairs` (see the module docstring); `clusters` replaces the MMseqs2 clustering."""
    started = time.perf_counter()
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    for flag, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ConfigError(f"--{flag} must be between 0 and 1, got {value}")
    if valid_fraction <= 0 or valid_fraction + test_fraction >= 1:
        raise ConfigError(
            f"--valid_fraction {valid_fraction} and --test_fraction {test_fraction}: valid "
            "must be above 0 and the two below 1 together"
        )
    if not 0 < identity <= 1:
        raise ConfigError(f"--identity must be in (0, 1], got {identity}")
    asked = {"valid": valid_fraction, **({"test": test_fraction} if test_fraction else {})}
    tools: dict[str, str] = {}
    if method == "graph":
        tools["partitioner"] = partitioner_name()  # the named error before MMseqs2 runs
        if clusters is None:
            tools["mmseqs"] = mmseqs.mmseqs_version()
            clusters = mmseqs.similarity_links(sequences, identity, coverage, threads)
    groups = protein_groups(sequences, clusters)
    _, random_dropped, random_counts = _assign(pairs, groups, _random_blocks(groups, asked, seed))
    if method == "random":
        group_blocks = _random_blocks(groups, asked, seed)
    else:
        group_of = {p: i for i, group in enumerate(groups) for p in group}
        graph = cluster_graph(pairs, group_of, len(groups), positives_only=resample)
        group_blocks = partition(graph, asked, seed)
    blocks, dropped, counts = _assign(pairs, groups, group_blocks)
    resampled, unpaired = [], 0
    if resample:
        block_of = {p: group_blocks[i] for i, group in enumerate(groups) for p in group}
        taken = {tuple(sorted((pair.protein_a, pair.protein_b))) for pair in pairs}
        negatives = [pair for pair in dropped if pair.label != 1]
        resampled, unpaired = resample_negatives(negatives, block_of, sequences, taken, seed)
        for pair in resampled:
            blocks[block_of[pair.protein_a]].append(pair)
        counts = _counts(blocks, groups)
    if not blocks["train"] or any(not blocks[name] for name in asked):
        raise ConfigError(
            "the split left "
            + ", ".join(f"{len(blocks[name]):,} {name}" for name in ("train", *asked))
            + " pairs: change --valid_fraction / --test_fraction (or --seed)"
        )
    positives = sum(p.label == 1 for p in blocks["valid"])
    check_can_rank(
        "the validation split",
        positives,
        len(blocks["valid"]) - positives,
        "raise --valid_fraction (or try another --seed)",
    )
    highest = None
    try:
        train_proteins = _proteins(blocks["train"], sequences)
        highest = max(
            mmseqs.highest_identity(
                _proteins(blocks[name], sequences), train_proteins, coverage, threads
            )
            for name in asked
        )
    except MissingToolError:  # --clusters given and no MMseqs2: the report says unchecked
        highest = None
    report = SplitReport(
        method=method,
        seed=seed,
        asked=asked,
        pairs_in=len(pairs),
        positive_in=sum(pair.label == 1 for pair in pairs),
        proteins=len(sequences),
        clusters=len(groups),
        dropped_pairs=len(dropped) - len(resampled),
        crossing_pairs=len(dropped),
        dropped_positive=sum(pair.label == 1 for pair in dropped),
        blocks=counts,
        max_identity_between_blocks=highest,
        fractions_of="proteins" if method == "random" else "positives" if resample else "pairs",
        identity=identity if method == "graph" else None,
        coverage=coverage,
        resampled_negatives=len(resampled),
        unpaired_negative_stubs=unpaired,
        random=None
        if method == "random"
        else {"dropped_pairs": len(random_dropped), "blocks": random_counts},
        tools=tools,
    )
    report.wall_seconds = round(time.perf_counter() - started, 2)
    return Split(blocks, dropped, report)


def split_file(
    pairs: str | Path,
    fasta: str | Path | None,
    out_dir: str | Path,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.0,
    *,
    clusters: str | Path | None = None,
    allow_contradictory_labels: bool = False,
    columns: Columns | None = None,
    **options,
) -> SplitReport:
    """Read `pairs` (through PairSource, its `columns`), split, write train.tsv, valid.tsv
    (test.tsv when asked) and split_report.json into `out_dir`; return the report. Pairs with
    their sequences inline (no `fasta`) also get `out_dir/sequences.fasta`, which the written
    files need. `options` are `split_pairs`'s keywords."""
    allow = allow_contradictory_labels
    source = PairSource(
        pairs, fasta, columns=columns, labeled=True, allow_contradictory_labels=allow
    )
    rows = list(source.pair_rows())
    sequences = sequences_of(rows)
    cluster_rows = read_clusters(clusters) if clusters else None
    split = split_pairs(
        rows, sequences, valid_fraction, test_fraction, clusters=cluster_rows, **options
    )
    split.report.inputs = {
        "pairs": str(pairs),
        "fasta": None if fasta is None else str(fasta),
        "clusters": None if clusters is None else str(clusters),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("train", *split.report.asked):
        write_pairs(out_dir / f"{name}.tsv", split.blocks[name])
    if fasta is None:
        write_fasta(out_dir / "sequences.fasta", sequences)
    (out_dir / "split_report.json").write_text(json.dumps(asdict(split.report), indent=2) + "\n")
    return split.report
