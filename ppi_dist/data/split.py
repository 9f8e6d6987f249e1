"""Similarity-disjoint train / valid (/ test) split of a pair file that ships none.

    ppi-dist split --pairs train.tsv --fasta seqs.fasta --valid_fraction 0.1 \\
        [--test_fraction 0.1] [--identity 0.4] [--method graph|random] --out_dir DIR

`--method graph` (the default), as the Bernett gold standard was made:
1. proteins are joined when their sequences are identical or an MMseqs2 all-against-all
   search finds them at `identity` or more over `coverage` of both (`data/clusters.py`);
   `--clusters FILE` gives clusters instead (representative<TAB>member rows, as MMseqs2
   `easy-cluster` writes `*_cluster.tsv`);
2. the graph of these clusters is cut into blocks that hold the asked fractions of the
   PAIRS and that few pairs cross (METIS, KaHIP, `data/partition.py`), each held-out block
   at the input's positive share too (within `share_tolerance`, `data/balance.py`); what
   could not be met is reported (`relaxed`), and the cut that ignores the balance is put
   beside (`plain`);
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
from dataclasses import asdict, dataclass
from pathlib import Path

from ppi_dist.checks import MIN_VALIDATION_PAIRS_PER_CLASS, check_can_rank
from ppi_dist.data import clusters as mmseqs
from ppi_dist.data.balance import SHARE_TOLERANCE, balanced_partition, relaxations
from ppi_dist.data.fasta import write_fasta
from ppi_dist.data.pairs import Columns, Pair, PairSource, sequences_of, write_pairs
from ppi_dist.data.partition import cluster_graph, partition, partitioner_name, resample_negatives
from ppi_dist.data.split_report import BLOCKS, SplitReport
from ppi_dist.errors import ConfigError, DataError, MissingToolError
from ppi_dist.files import check_writable, remove_stale_partials, write_text_atomic

METHODS = ("graph", "random")


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


def _counts(blocks: dict[str, list[Pair]], groups: list[list[str]]) -> dict[str, dict]:
    group_of = {p: i for i, group in enumerate(groups) for p in group}
    counts = {}
    for name, pairs in blocks.items():
        proteins = {p for pair in pairs for p in (pair.protein_a, pair.protein_b)}
        positive = sum(pair.label == 1 for pair in pairs)
        counts[name] = {
            "pairs": len(pairs),
            "positive": positive,
            "positive_share": round(positive / max(len(pairs), 1), 4),
            "proteins": len(proteins),
            "clusters": len({group_of[p] for p in proteins}),
        }
    return counts


def _proteins(pairs: list[Pair], sequences: dict[str, str]) -> dict[str, str]:
    return {p: sequences[p] for pair in pairs for p in (pair.protein_a, pair.protein_b)}


@dataclass(frozen=True)
class SplitOptions:
    """The split's settings, the `ppi-dist split` flags of the same names (`split_pairs`
    and `split_file` take them as keywords)."""

    method: str = "graph"
    seed: int = 0
    identity: float = 0.4
    coverage: float = mmseqs.DEFAULT_COVERAGE
    resample: bool = False
    threads: int = 1
    share_tolerance: float = SHARE_TOLERANCE  # of a held-out block's positive share
    min_per_class: int = MIN_VALIDATION_PAIRS_PER_CLASS  # validation pairs of each class

    def held_out(self, valid_fraction: float, test_fraction: float) -> dict[str, float]:
        """The held-out blocks and their fractions; a named error for a bad setting."""
        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for flag, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
            if not 0 <= value < 1:
                raise ConfigError(f"--{flag} must be between 0 and 1, got {value}")
        if valid_fraction <= 0 or valid_fraction + test_fraction >= 1:
            raise ConfigError(
                f"--valid_fraction {valid_fraction} and --test_fraction {test_fraction}: valid "
                "must be above 0 and the two below 1 together"
            )
        if not 0 < self.identity <= 1:
            raise ConfigError(f"--identity must be in (0, 1], got {self.identity}")
        if not 0 < self.share_tolerance <= 1:
            raise ConfigError(f"--share_tolerance must be in (0, 1], got {self.share_tolerance}")
        return {"valid": valid_fraction, **({"test": test_fraction} if test_fraction else {})}

    @property
    def balanced(self) -> bool:
        """Whether held-out blocks aim at the input's positive share (the graph cut of all
        pairs; the resampled split draws its negatives after the cut)."""
        return self.method == "graph" and not self.resample and self.share_tolerance < 1


def split_pairs(
    pairs: list[Pair],
    sequences: dict[str, str],
    valid_fraction: float,
    test_fraction: float = 0.0,
    *,
    clusters: list[tuple[str, str]] | None = None,
    **settings,
) -> Split:
    """Split `pairs` (see the module docstring); `clusters` replaces the MMseqs2 clustering;
    `settings` are `SplitOptions` fields."""
    started = time.perf_counter()
    options = SplitOptions(**settings)
    asked = options.held_out(valid_fraction, test_fraction)
    tools: dict[str, str] = {}
    if options.method == "graph":
        tools["partitioner"] = partitioner_name()  # the named error before MMseqs2 runs
        if clusters is None:
            tools["mmseqs"] = mmseqs.mmseqs_version()
            clusters = mmseqs.similarity_links(
                sequences, options.identity, options.coverage, options.threads
            )
    groups = protein_groups(sequences, clusters)
    random_blocks = _random_blocks(groups, asked, options.seed)
    _, random_dropped, random_counts = _assign(pairs, groups, random_blocks)
    group_blocks, plain = _cut(pairs, groups, asked, options)
    blocks, dropped, counts = _assign(pairs, groups, group_blocks)
    resampled, unpaired = [], 0
    if options.resample:
        resampled, unpaired = _resample(
            pairs, sequences, groups, group_blocks, blocks, dropped, options.seed
        )
        counts = _counts(blocks, groups)
    _check_blocks(blocks, asked, options.min_per_class)
    positive_in = sum(pair.label == 1 for pair in pairs)
    report = SplitReport(
        method=options.method,
        seed=options.seed,
        asked=asked,
        pairs_in=len(pairs),
        positive_in=positive_in,
        proteins=len(sequences),
        clusters=len(groups),
        dropped_pairs=len(dropped) - len(resampled),
        crossing_pairs=len(dropped),
        dropped_positive=sum(pair.label == 1 for pair in dropped),
        blocks=counts,
        max_identity_between_blocks=_highest_identity(blocks, asked, sequences, options),
        fractions_of={"random": "proteins"}.get(options.method, "pairs")
        if not options.resample
        else "positives",
        identity=options.identity if options.method == "graph" else None,
        coverage=options.coverage,
        resampled_negatives=len(resampled),
        unpaired_negative_stubs=unpaired,
        random=None
        if options.method == "random"
        else {"dropped_pairs": len(random_dropped), "blocks": random_counts},
        positive_share_in=round(positive_in / max(len(pairs), 1), 4),
        tools=tools,
    )
    if plain is not None:  # the balanced cut: the plain one beside it, what was relaxed
        _, plain_dropped, plain_counts = _assign(pairs, groups, plain)
        report.plain = {"dropped_pairs": len(plain_dropped), "blocks": plain_counts}
        report.share_tolerance = options.share_tolerance
        report.relaxed = relaxations(
            asked,
            counts,
            len(pairs),
            positive_in,
            (len(dropped), len(plain_dropped)),
            options.share_tolerance,
        )
    report.wall_seconds = round(time.perf_counter() - started, 2)
    return Split(blocks, dropped, report)


def _cut(
    pairs: list[Pair], groups: list[list[str]], asked: dict[str, float], options: SplitOptions
) -> tuple[list[str], list[str] | None]:
    """The block of every group, and the plain cut's when the blocks are balanced."""
    if options.method == "random":
        return _random_blocks(groups, asked, options.seed), None
    group_of = {p: i for i, group in enumerate(groups) for p in group}
    graph = cluster_graph(pairs, group_of, len(groups), positives_only=options.resample)
    if not options.balanced:
        return partition(graph, asked, options.seed), None
    cut = balanced_partition(graph, asked, options.seed, options.share_tolerance)
    return cut.blocks, cut.plain


def _resample(
    pairs: list[Pair],
    sequences: dict[str, str],
    groups: list[list[str]],
    group_blocks: list[str],
    blocks: dict[str, list[Pair]],
    dropped: list[Pair],
    seed: int,
) -> tuple[list[Pair], int]:
    """Crossing negatives drawn anew inside the blocks (added to `blocks`)."""
    block_of = {p: group_blocks[i] for i, group in enumerate(groups) for p in group}
    taken = {tuple(sorted((pair.protein_a, pair.protein_b))) for pair in pairs}
    negatives = [pair for pair in dropped if pair.label != 1]
    resampled, unpaired = resample_negatives(negatives, block_of, sequences, taken, seed)
    for pair in resampled:
        blocks[block_of[pair.protein_a]].append(pair)
    return resampled, unpaired


def _check_blocks(blocks: dict[str, list[Pair]], asked: dict[str, float], low: int) -> None:
    """No empty block, and a validation block that can rank (`low` pairs of each class)."""
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
        low,
    )


def _highest_identity(
    blocks: dict[str, list[Pair]],
    asked: dict[str, float],
    sequences: dict[str, str],
    options: SplitOptions,
) -> float | None:
    """The highest identity MMseqs2 finds between a held-out block and train (None:
    `--clusters` given and no MMseqs2, so the report says unchecked)."""
    try:
        train = _proteins(blocks["train"], sequences)
        return max(
            mmseqs.highest_identity(
                _proteins(blocks[name], sequences), train, options.coverage, options.threads
            )
            for name in asked
        )
    except MissingToolError:
        return None


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
    **settings,
) -> SplitReport:
    """Read `pairs` (through PairSource, its `columns`), split, write train.tsv, valid.tsv
    (test.tsv when asked) and split_report.json into `out_dir`; return the report. Pairs with
    their sequences inline (no `fasta`) also get `out_dir/sequences.fasta`, which the written
    files need. `settings` are `SplitOptions` fields. `out_dir` is checked writable first,
    before MMseqs2 runs."""
    out_dir = prepare_out_dir(out_dir)
    rows = read_labelled(pairs, fasta, columns, allow_contradictory_labels)
    sequences = sequences_of(rows)
    cluster_rows = read_clusters(clusters) if clusters else None
    split = split_pairs(
        rows, sequences, valid_fraction, test_fraction, clusters=cluster_rows, **settings
    )
    split.report.inputs = {
        "pairs": str(pairs),
        "fasta": None if fasta is None else str(fasta),
        "clusters": None if clusters is None else str(clusters),
    }
    write_split(out_dir, split, sequences if fasta is None else None)
    return split.report


def prepare_out_dir(out_dir: str | Path) -> Path:
    """`out_dir` made and checked writable (an OutputError naming it otherwise), partial
    files that an earlier, failed split left there removed."""
    out_dir = check_writable(out_dir)
    remove_stale_partials(out_dir)
    return out_dir


def read_labelled(
    pairs: str | Path,
    fasta: str | Path | None,
    columns: Columns | None = None,
    allow_contradictory_labels: bool = False,
) -> list[Pair]:
    """Every labelled pair of `pairs`, read and validated through PairSource."""
    allow = allow_contradictory_labels
    source = PairSource(
        pairs, fasta, columns=columns, labeled=True, allow_contradictory_labels=allow
    )
    return list(source.pair_rows())


def write_split(out_dir: Path, split: Split, sequences: dict[str, str] | None = None) -> None:
    """train.tsv, valid.tsv (test.tsv), split_report.json (and `sequences` as
    sequences.fasta, for pairs whose sequences were inline) into `out_dir`."""
    for name in ("train", *split.report.asked):
        write_pairs(out_dir / f"{name}.tsv", split.blocks[name])
    if sequences is not None:
        write_fasta(out_dir / "sequences.fasta", sequences)
    report = json.dumps(asdict(split.report), indent=2) + "\n"
    write_text_atomic(out_dir / "split_report.json", report)
