"""The split on real data, over the same MMseqs2 clusters: the balanced graph cut as
`ppi-dist split` runs it, the plain cut (`--share_tolerance 1`), a random draw of the
PROTEINS and one of groups until each held-out block holds its fraction of the PAIRS; each
block's share and positive share, the pairs dropped, the highest identity to train, wall.

    python -m benchmarks.split --datasets c3 --fractions 0.1,0 --threads 2
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict

import torch

from benchmarks.core import SHARED
from ppi_dist.data import clusters
from ppi_dist.data.pairs import Pair, PairSource, sequences_of
from ppi_dist.data.split import (
    SplitOptions,
    _assign,
    _cut,
    _random_blocks,
    protein_groups,
    split_pairs,
)
from ppi_dist.tables import markdown_table
from ppi_dist.training.machine import library_version, machine_line

FILES = {
    "yeast": ("yeast-du2017/all_pairs.tsv", "yeast-du2017/sequences.fasta"),
    "bernett": ("bernett-gold/train.tsv", "bernett-gold/sequences.fasta"),
    "c3": ("yeast-du2017/c3/train.tsv", "yeast-du2017/sequences.fasta"),
}
NAMES = ("train", "valid", "test")
IDENTITY, SEED = 0.4, 0  # the clusters' MMseqs2 identity and every draw's seed
HEADER = ("method", *NAMES, "dropped", "highest identity to train", "split seconds")


def random_by_pairs(
    pairs: list[Pair], groups: list[list[str]], asked: dict[str, float], seed: int
) -> list[str]:
    """Groups in a seeded order, each into the first held-out block still short of its
    fraction of the input pairs (the rest stay in train)."""
    partners: dict[str, list[str]] = defaultdict(list)
    for pair in pairs:
        partners[pair.protein_a].append(pair.protein_b)
        partners[pair.protein_b].append(pair.protein_a)
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    block_of: dict[str, str] = {}
    blocks = ["train"] * len(groups)
    held = dict.fromkeys(asked, 0)
    for index in order:
        name = next((n for n in asked if held[n] < asked[n] * len(pairs)), None)
        if name is None:
            break
        members = set(groups[index])
        for protein in members:
            block_of[protein] = name
        inside = sum(
            1
            for protein in members
            for other in partners[protein]
            if block_of.get(other) == name and (other not in members or protein <= other)
        )
        held[name] += inside
        blocks[index] = name
    return blocks


def _highest(blocks: dict[str, list[Pair]], sequences: dict[str, str], threads: int) -> float:
    def proteins(rows: list[Pair]) -> dict[str, str]:
        return {p: sequences[p] for pair in rows for p in (pair.protein_a, pair.protein_b)}

    train = proteins(blocks["train"])
    return max(
        clusters.highest_identity(proteins(blocks[name]), train, threads=threads)
        for name in NAMES[1:]
        if blocks[name]
    )


def _row(label: str, blocks: dict[str, list[Pair]], n: int, highest: float, seconds) -> list:
    """One method's cells: each block's share of the `n` input pairs (and its positive
    share), the pairs dropped, the highest identity to train, the split's wall time."""

    def cell(rows: list[Pair]) -> str:
        if not rows:
            return "-"
        return f"{len(rows) / n:.1%} ({sum(p.label == 1 for p in rows) / len(rows):.1%} pos)"

    dropped = n - sum(len(rows) for rows in blocks.values())
    wall = "" if seconds is None else f"{seconds:.0f} s"
    cells = [cell(blocks[name]) for name in NAMES]
    return [label, *cells, f"{dropped / n:.1%} ({dropped:,})", f"{highest:.3f}", wall]


def _one(pairs, sequences, links, fractions: str, args) -> list[list]:
    """Every method's row at these fractions (valid,test)."""
    valid, test = (float(x) for x in fractions.split(","))
    started = time.perf_counter()
    how = {"seed": SEED, "threads": args.threads, "resample": args.resample_negatives}
    split = split_pairs(pairs, sequences, valid, test, clusters=links, **how)
    seconds = time.perf_counter() - started
    report, n = split.report, len(pairs)
    label = "graph, negatives resampled" if args.resample_negatives else "graph, balanced"
    rows = [_row(label, split.blocks, n, report.max_identity_between_blocks, seconds)]
    groups = protein_groups(sequences, links)
    asked = dict(report.asked)
    others = [("random draw, proteins", report.random)]
    if report.plain is not None:
        others.insert(0, ("graph, plain cut", report.plain))
    others.append(("random draw, pairs", None))
    for label, other in others:
        blocks = _blocks_again(pairs, groups, other, label, asked, SEED)
        rows.append(_row(label, blocks, n, _highest(blocks, sequences, args.threads), None))
    return rows


def _blocks_again(pairs, groups, other: dict | None, label: str, asked: dict, seed: int) -> dict:
    """The plain cut's or the protein draw's blocks made again (the report keeps counts)."""
    if other is None:  # no report to check against
        return _assign(pairs, groups, random_by_pairs(pairs, groups, asked, seed))[0]
    if label.startswith("random"):
        group_blocks = _random_blocks(groups, asked, seed)
    else:  # a share tolerance of 1 is the plain cut
        group_blocks, _ = _cut(pairs, groups, asked, SplitOptions(seed=seed, share_tolerance=1))
    blocks, _, _ = _assign(pairs, groups, group_blocks)
    assert {name: len(rows) for name, rows in blocks.items()} == {
        name: other["blocks"][name]["pairs"] for name in NAMES
    }, label
    return blocks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["yeast", "bernett"], choices=list(FILES))
    parser.add_argument("--fractions", nargs="+", default=["0.1,0.1", "0.2,0.2"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resample_negatives", action="store_true")
    args = parser.parse_args(argv)
    print(machine_line(torch.device("cpu")))
    print(
        f"mmseqs {clusters.mmseqs_version()}, kahip {library_version('kahip')}, "
        f"pymetis {library_version('pymetis')}; threads {args.threads}"
    )
    for name in args.datasets:
        pair_path, fasta = (SHARED / "data" / part for part in FILES[name])
        source = PairSource(pair_path, fasta, labeled=True, allow_contradictory_labels=True)
        pairs = list(source.pair_rows())
        sequences = sequences_of(pairs)
        started = time.perf_counter()
        links = clusters.similarity_links(sequences, IDENTITY, threads=args.threads)
        positive = sum(pair.label == 1 for pair in pairs) / len(pairs)
        print(
            f"{name}: {len(pairs):,} pairs ({positive:.1%} positive), {len(sequences):,} "
            f"proteins; MMseqs2 all-against-all {time.perf_counter() - started:.0f} s, "
            f"{len(links):,} links at {IDENTITY}",
            flush=True,
        )
        for fractions in args.fractions:
            rows = _one(pairs, sequences, links, fractions, args)
            print(f"{name} asked {fractions} (valid,test):")
            print("\n".join(markdown_table(HEADER, rows)), flush=True)


if __name__ == "__main__":
    main()
