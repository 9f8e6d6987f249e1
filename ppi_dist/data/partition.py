"""Protein clusters into train / valid / test blocks that few pairs cross.

The graph: one node per cluster (identical sequences and MMseqs2 hits joined,
`data/clusters.py`), weighted by its pairs' endpoints (a pair inside a cluster counts 2);
one edge between two clusters, weighted by the pairs between them. A block with endpoint
weight W and c pairs leaving it holds (W - c) / 2 pairs: to hold a fraction f of the P
input pairs it needs W = 2fP + c, more than its share, by the pairs it loses.

The blocks come from one k-way cut (train and each held-out block) with target weights,
corrected from the pairs the last cut actually left inside each block (a few rounds), over
several seeds; the cut that meets every fraction (within `TOLERANCE`) and loses the fewest
pairs wins (one cut for all blocks: carving valid first and test from the rest lost more,
the first carve taking the densest region). KaHIP (`kahip.kaffpa`, mode ECOSOCIAL, the
mode for skewed degrees: on the yeast graph it held twice the pairs of mode ECO at the same
weight)
cuts into equal blocks only, so an unequal cut is made with isolated dummy nodes: a
held-out block that should hold weight a, beside a train block of weight c, gets a dummy
of weight c - a. METIS (`pymetis`) takes the target weights itself and is
used when KaHIP is not installed.

`resample_negatives`: Bernett et al. partitioned the POSITIVE graph and then drew
negatives inside each block. With it, the graph is the positive pairs' (the blocks aim at
fractions of the positives), and each negative that crosses blocks is replaced by a
negative inside a block: its two proteins each leave one "stub" in their own block, and a
block's stubs are paired at random (no self pair, no pair already in the data), so each
protein keeps its number of negatives and none is lost (an odd stub out, or one that
finds no free partner, is counted).
"""

from __future__ import annotations

import importlib.util
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from ppi_dist.data.clusters import INSTALL_HINT
from ppi_dist.data.pairs import Pair
from ppi_dist.errors import MissingToolError

TOLERANCE = 0.01  # of the input pairs: a carve this close to its fraction counts as met
ROUNDS = 6
SEEDS = 6
IMBALANCE = 0.005
REFINE_PASSES = 20


@dataclass
class ClusterGraph:
    """`weights[i]`: pair endpoints of cluster i; `edges[(i, j)]` (i < j): pairs between
    clusters i and j that a cut would lose; `pairs`: the input pairs (P). The `positive_`
    fields count the positive pairs alone, the same way (the class balance, `data/balance.py`)."""

    weights: list[int]
    edges: dict[tuple[int, int], int]
    pairs: int
    positive_weights: list[int] = field(default_factory=list)
    positive_edges: dict[tuple[int, int], int] = field(default_factory=dict)
    positives: int = 0

    def neighbours(self) -> list[dict[int, int]]:
        around: list[dict[int, int]] = [{} for _ in self.weights]
        for (i, j), weight in self.edges.items():
            around[i][j] = around[j][i] = weight
        return around


def cluster_graph(
    pairs: list[Pair], cluster_of: dict[str, int], n_clusters: int, positives_only: bool
) -> ClusterGraph:
    """With `positives_only` the graph is the positive pairs' alone (weights, edges and P):
    the blocks then aim at fractions of the positives, and negatives are drawn after."""
    weights, positive_weights = [0] * n_clusters, [0] * n_clusters
    edges: dict[tuple[int, int], int] = defaultdict(int)
    positive_edges: dict[tuple[int, int], int] = defaultdict(int)
    counted = [pair for pair in pairs if pair.label == 1 or not positives_only]
    for pair in counted:
        a, b = cluster_of[pair.protein_a], cluster_of[pair.protein_b]
        positive = pair.label == 1
        for node in (a, b):
            weights[node] += 1
            positive_weights[node] += positive
        if a != b:
            edges[(min(a, b), max(a, b))] += 1
            positive_edges[(min(a, b), max(a, b))] += positive
    positives = sum(pair.label == 1 for pair in counted)
    return ClusterGraph(
        weights, dict(edges), len(counted), positive_weights, dict(positive_edges), positives
    )


def partitioner_name() -> str:
    """'kahip' or 'metis', whichever is installed (KaHIP first); a named error otherwise."""
    for module, name in (("kahip", "kahip"), ("pymetis", "metis")):
        if importlib.util.find_spec(module) is not None:
            return name
    raise MissingToolError(
        f"no graph partitioner is installed: {INSTALL_HINT}, or pymetis; or use --method random"
    )


Cut = Callable[[list[int], list[int], list[int], list[int], list[float], int], list[int]]


def _kahip_cut(
    weights: list[int],
    xadj: list[int],
    adjncy: list[int],
    adjwgt: list[int],
    shares: list[float],
    seed: int,
) -> list[int]:
    """Two blocks holding `shares` of the weight: KaHIP's blocks are equal, so block 0 gets
    an isolated dummy node of the weight it should leave empty. (With more blocks KaHIP put
    two dummies in one block, over its balance bound, so more blocks are carved in turn.)"""
    import kahip

    total = sum(weights)
    block = shares[-1] * total
    dummies = [round(block - share * total) for share in shares[:-1]]
    vwgt = [*weights, *dummies]
    xadj = xadj + [xadj[-1]] * len(dummies)  # dummies have no edge
    _, blocks = kahip.kaffpa(
        vwgt, xadj, adjwgt, adjncy, len(shares), IMBALANCE, True, seed, kahip.ECOSOCIAL
    )
    # Block ids are KaHIP's: renumber so the block holding dummy i is i, the other is last.
    order = [blocks[len(weights) + i] for i in range(len(dummies))]
    rest = [b for b in range(len(shares)) if b not in order]
    rename = {b: i for i, b in enumerate([*order, *rest])}
    return [rename[b] for b in blocks[: len(weights)]]


def _metis_cut(
    weights: list[int],
    xadj: list[int],
    adjncy: list[int],
    adjwgt: list[int],
    shares: list[float],
    seed: int,
) -> list[int]:
    import pymetis

    options = pymetis.Options(seed=seed, ufactor=round(IMBALANCE * 1000))
    result = pymetis.part_graph(
        len(shares),
        pymetis.CSRAdjacency(xadj, adjncy),
        vweights=weights,
        eweights=adjwgt or None,
        tpwgts=shares,
        options=options,
    )
    return list(result[1])


def _held_and_cut(graph: ClusterGraph, blocks: list[int], k: int) -> tuple[list[float], int]:
    """Pairs left inside each block, and the pairs across blocks."""
    weight = [0] * k
    leaving = [0] * k
    for node, block in enumerate(blocks):
        weight[block] += graph.weights[node]
    cut = 0
    for (i, j), pairs in graph.edges.items():
        if blocks[i] != blocks[j]:
            leaving[blocks[i]] += pairs
            leaving[blocks[j]] += pairs
            cut += pairs
    return [(weight[b] - leaving[b]) / 2 for b in range(k)], cut


def csr_of(graph: ClusterGraph, nodes: list[int]) -> tuple[list[int], list[int], list[int]]:
    """The subgraph on `nodes` in the CSR arrays both partitioners take."""
    index = {node: i for i, node in enumerate(nodes)}
    around = graph.neighbours()
    xadj, adjncy, adjwgt = [0], [], []
    for node in nodes:
        for other, pairs in sorted(around[node].items()):
            if other in index:
                adjncy.append(index[other])
                adjwgt.append(pairs)
        xadj.append(len(adjncy))
    return xadj, adjncy, adjwgt


def _search(
    graph: ClusterGraph,
    nodes: list[int],
    wanted: list[float],
    settled: list[int],
    cut_with: Cut,
    seed: int,
) -> tuple[tuple[bool, float], list[int]]:
    """The best cut of `nodes` into len(wanted) held-out blocks and a last one, with
    targets corrected round by round; `settled[node]` is the block (>= 0) of a node
    placed before (held apart, numbered after the new blocks) or -1 for `nodes`."""
    weights = [max(graph.weights[node], 1) for node in nodes]  # KaHIP wants weights > 0
    total = sum(weights)
    xadj, adjncy, adjwgt = csr_of(graph, nodes)
    k = len(wanted) + 1
    placed = [k + block if block >= 0 else -1 for block in settled]
    blocks_in_all = k + max(settled, default=-1) + 1
    best: tuple[tuple[bool, float], list[int]] | None = None
    for attempt in range(SEEDS):
        targets = [2 * w for w in wanted]
        for _ in range(ROUNDS):
            shares = [min(max(t / total, 1e-4), 0.45) for t in targets]
            shares.append(1 - sum(shares))
            cut = cut_with(weights, xadj, adjncy, adjwgt, shares, seed * 1000 + attempt)
            blocks = list(placed)
            for node, block in zip(nodes, cut, strict=True):
                blocks[node] = block
            held, lost = _held_and_cut(graph, blocks, blocks_in_all)
            missed = max(abs(h - w) for h, w in zip(held, wanted, strict=False)) / graph.pairs
            score = (missed > TOLERANCE, lost if missed <= TOLERANCE else missed)
            if best is None or score < best[0]:
                best = (score, blocks)
            if missed <= TOLERANCE / 4:
                break
            targets = [t + 2 * (w - h) for t, w, h in zip(targets, wanted, held, strict=False)]
    assert best is not None
    return best


def _refine(graph: ClusterGraph, blocks: list[int], wanted: list[float], seed: int) -> list[int]:
    """Greedy moves of single clusters to the block they have more pairs with, while every
    held-out block stays within `TOLERANCE` of its fraction: the partitioners balance
    weight, not held pairs, so moves their refinement could not make still lose fewer."""
    blocks = list(blocks)
    k = len(wanted) + 1
    around = graph.neighbours()
    inside = [(w - sum(o.values())) / 2 for w, o in zip(graph.weights, around, strict=True)]
    held, _ = _held_and_cut(graph, blocks, k)
    slack = TOLERANCE * graph.pairs

    def fits(block: int, value: float) -> bool:
        return block == k - 1 or abs(value - wanted[block]) <= slack

    order = list(range(len(blocks)))
    rng = random.Random(seed)
    for _ in range(REFINE_PASSES):
        rng.shuffle(order)
        moved = 0
        for node in order:
            here = blocks[node]
            links: dict[int, int] = defaultdict(int)
            for other, pairs in around[node].items():
                links[blocks[other]] += pairs
            choice, gain = None, 0
            for there in range(k):
                if there == here or links[there] - links[here] <= gain:
                    continue
                left = held[here] - links[here] - inside[node]
                arrived = held[there] + links[there] + inside[node]
                if fits(here, left) and fits(there, arrived):
                    choice, gain = there, links[there] - links[here]
            if choice is not None:
                held[here] -= links[here] + inside[node]
                held[choice] += links[choice] + inside[node]
                blocks[node] = choice
                moved += 1
        if not moved:
            break
    return blocks


def partition(graph: ClusterGraph, fractions: dict[str, float], seed: int = 0) -> list[str]:
    """The block ('train' or a key of `fractions`) of every cluster, each held-out block
    aiming at its fraction of the input pairs (see the module docstring)."""
    names = [name for name, fraction in fractions.items() if fraction > 0]
    wanted = [fractions[name] * graph.pairs for name in names]
    n = len(graph.weights)
    candidates = []
    if importlib.util.find_spec("pymetis") is not None:  # one k-way cut, all blocks at once
        candidates.append(_search(graph, list(range(n)), wanted, [-1] * n, _metis_cut, seed))
    if importlib.util.find_spec("kahip") is not None:  # one held-out block at a time
        placed = [-1] * n
        for b in range(len(names)):
            rest = [node for node in range(n) if placed[node] == -1]
            _, found = _search(graph, rest, [wanted[b]], placed, _kahip_cut, seed)
            for node in rest:
                if found[node] == 0:
                    placed[node] = b
        blocks = [block if block >= 0 else len(names) for block in placed]
        held, lost = _held_and_cut(graph, blocks, len(names) + 1)
        missed = max(abs(h - w) for h, w in zip(held, wanted, strict=False)) / graph.pairs
        candidates.append(((missed > TOLERANCE, lost if missed <= TOLERANCE else missed), blocks))
    if not candidates:
        partitioner_name()  # raises the error that says what to install
    _, blocks = min(candidates, key=lambda candidate: candidate[0])
    blocks = _refine(graph, blocks, wanted, seed)
    return [names[b] if b < len(names) else "train" for b in blocks]


def resample_negatives(
    crossing: list[Pair],
    block_of: dict[str, str],
    sequences: dict[str, str],
    taken: set[tuple[str, str]],
    seed: int,
) -> tuple[list[Pair], int]:
    """(new negatives inside blocks, stubs left unpaired) for the negatives in `crossing`;
    `taken` (sorted identifier pairs already in the data) grows by the new pairs."""
    rng = random.Random(seed)
    stubs: dict[str, list[str]] = defaultdict(list)
    for pair in crossing:
        for protein in (pair.protein_a, pair.protein_b):
            stubs[block_of[protein]].append(protein)
    new, unpaired = [], 0
    for block in sorted(stubs):
        pool = stubs[block]
        rng.shuffle(pool)
        while len(pool) >= 2:
            a = pool.pop()
            for _ in range(100):  # random partners; give the stub up after that many
                j = rng.randrange(len(pool))
                b = pool[j]
                key = (a, b) if a < b else (b, a)
                if a != b and key not in taken:
                    break
            else:
                unpaired += 1
                continue
            pool[j] = pool[-1]
            pool.pop()
            taken.add(key)
            new.append(Pair(a, b, sequences[a], sequences[b], 0.0))
        unpaired += len(pool)
    return new, unpaired
