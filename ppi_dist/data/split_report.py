"""The report of a split (`data/split.py`): every count, what was relaxed, and its text.

`split_report.json` is this dataclass as JSON; `describe` is what `ppi-dist split` and the
trainer print.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BLOCKS = ("train", "valid", "test")
LOPSIDED = 0.15  # without a balance target, a held-out block this far off gets a note


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
    blocks: dict[str, dict]  # block -> pairs, positive, positive_share, proteins, clusters
    max_identity_between_blocks: float | None = None
    fractions_of: str = "pairs"  # or "positives" (resample_negatives), "proteins" (random)
    identity: float | None = None
    coverage: float | None = None
    crossing_pairs: int = 0  # input pairs across blocks
    resampled_negatives: int = 0  # new negatives drawn inside blocks (resample_negatives)
    unpaired_negative_stubs: int = 0
    random: dict | None = None  # the random split beside it: dropped_pairs, blocks
    positive_share_in: float = 0.0
    share_tolerance: float | None = None  # None: no balance target (random, resampled)
    plain: dict | None = None  # the cut that ignores the balance: dropped_pairs, blocks
    relaxed: list[dict] = field(default_factory=list)  # `balance.relaxations`
    tools: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    inputs: dict[str, str | None] = field(default_factory=dict)

    def describe(self) -> str:
        shown = (*BLOCKS[:1], *(name for name in BLOCKS[1:] if name in self.asked))
        lines = [
            f"proteins: {self.proteins:,} in {self.clusters:,} clusters"
            + (
                f" (MMseqs2 at identity {self.identity}, coverage {self.coverage})"
                if self.identity is not None
                else ""
            ),
            f"{'':30}" + "".join(f"{name:>12}" for name in shown) + "     dropped",
        ]
        rows = [(self.method, {"dropped_pairs": self.dropped_pairs, "blocks": self.blocks})]
        if self.plain is not None:
            rows.append(("cut ignoring balance", self.plain))
        if self.random is not None:
            rows.append(("random (same seed)", self.random))
        for label, split in rows:
            blocks, dropped = split["blocks"], split["dropped_pairs"]
            lines.append(
                f"{label + ' pairs':30}"
                + "".join(f"{blocks[n]['pairs']:>12,}" for n in shown)
                + f"{dropped:>12,}"
            )
            lines.append(
                f"{'  of the input':30}"
                + "".join(f"{blocks[n]['pairs'] / self.pairs_in:>12.1%}" for n in shown)
                + f"{dropped / self.pairs_in:>12.1%}"
            )
        for name in shown:
            block = self.blocks[name]
            lines.append(
                f"{name}: {block['positive']:,} positive "
                f"({block['positive'] / max(block['pairs'], 1):.1%}; the input "
                f"{self.positive_in / max(self.pairs_in, 1):.1%}), {block['proteins']:,} proteins, "
                f"{block['clusters']:,} clusters"
                + (
                    f", asked {self.asked[name]:.0%} of the {self.fractions_of}"
                    if name in self.asked
                    else ""
                )
            )
        return "\n".join([*lines, *self._notes()])

    def _notes(self) -> list[str]:
        """What was relaxed, what looks wrong, and the identity check."""
        notes = [f"relaxed: {describe_relaxed(item, self.pairs_in)}" for item in self.relaxed]
        share_in = self.positive_in / max(self.pairs_in, 1)
        for name in (name for name in BLOCKS[1:] if name in self.asked):
            share = self.blocks[name]["positive"] / max(self.blocks[name]["pairs"], 1)
            if self.share_tolerance is None and abs(share - share_in) > LOPSIDED:
                notes.append(
                    f"note: {name} is {share:.1%} positive against {share_in:.1%} "
                    "of the input: a threshold chosen on it favours that balance (calibration "
                    "weighs its classes 1:1); --resample_negatives keeps the negatives in every "
                    "block"
                )
        if self.random is not None and self.dropped_pairs > self.random["dropped_pairs"]:
            notes.append(
                "note: the cut dropped more pairs than the random draw (whose held-out blocks "
                "hold far less than asked): the graph has little structure to cut along, or "
                "its negatives are scattered; --resample_negatives keeps the negatives"
            )
        if self.resampled_negatives:
            notes.append(
                f"negatives resampled inside blocks: {self.resampled_negatives:,} "
                f"({self.unpaired_negative_stubs:,} stubs unpaired)"
            )
        highest = self.max_identity_between_blocks
        notes.append(
            "highest identity between a held-out block and train (MMseqs2 search): "
            + ("not checked (MMseqs2 not installed)" if highest is None else f"{highest:.3f}")
        )
        return notes


def describe_relaxed(item: dict, pairs_in: int) -> str:
    """One line for an entry of `SplitReport.relaxed` (`balance.relaxations`)."""
    if item["constraint"] == "dropped_pairs":
        return (
            f"dropped {item['got']:,} pairs ({item['got'] / max(pairs_in, 1):.1%}), "
            f"{item['by']:,} more than the cut that ignores the class balance "
            f"({item['asked']:,}): the held-out blocks need negatives, which cross blocks "
            "here; `ppi-dist split --resample_negatives` draws negatives inside the blocks instead"
        )
    what = "positive share" if item["constraint"] == "positive_share" else "share of the pairs"
    against = "of the input" if item["constraint"] == "positive_share" else "asked"
    return (
        f"{item['block']} {what} {item['got']:.1%} against {item['asked']:.1%} {against}, "
        f"{item['by']:.1%} beyond the {item['tolerance']:.0%} allowed"
    )
