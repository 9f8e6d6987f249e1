"""The embedded default task: synthetic PPI data whose label only residue-level
interaction reveals.

Every protein is a random background chain with one planted interface motif at a random
position. Motifs come in complementary families: family i has a "ligand" motif and a
"receptor" motif. A pair interacts when one protein carries the ligand and the other the
receptor of the SAME family; negatives pair a ligand with a receptor of another family, so
every protein appears in positives and negatives alike (no degree shortcut) and both
classes have the same overall composition.

Why mean pooling struggles: a motif is a few residues in a chain of up to 150, and each
protein's background has its own random composition, so the protein's average is
dominated by background noise. Cross-attention can learn that ligand residues of family i
attend to receptor residues of family i, and max pooling then picks up the match.

Train, validation and test use disjoint proteins (fresh backgrounds, fresh motif positions):
only the interaction rule carries over, as in a protein-disjoint benchmark.
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

STANDARD = "ACDEFGHIKLMNPQRSTVWY"
# Family i: ligand motif = LIGAND_LETTERS[i] x motif_length, receptor = RECEPTOR_LETTERS[i] x
# motif_length. The ten motif letters never occur in the background, so a motif is a sharp
# residue-level signal that only a model comparing A's and B's residues can pair up.
LIGAND_LETTERS = "WCHMY"
RECEPTOR_LETTERS = "FKEDR"
BACKGROUND = "".join(sorted(set(STANDARD) - set(LIGAND_LETTERS) - set(RECEPTOR_LETTERS)))


def make_families(n_families: int, motif_length: int) -> list[tuple[str, str]]:
    """(ligand, receptor) motifs of each family."""
    if n_families > len(LIGAND_LETTERS):
        raise ValueError(f"at most {len(LIGAND_LETTERS)} families")
    return [
        (LIGAND_LETTERS[i] * motif_length, RECEPTOR_LETTERS[i] * motif_length)
        for i in range(n_families)
    ]


def make_protein(motif: str, rng: random.Random, min_length: int, max_length: int) -> str:
    """A random background with its own composition and `motif` planted at a random place."""
    length = rng.randint(min_length, max_length)
    weights = [rng.random() + 0.2 for _ in BACKGROUND]  # per-protein composition
    background = rng.choices(BACKGROUND, weights=weights, k=length - len(motif))
    at = rng.randint(0, len(background))
    return "".join(background[:at]) + motif + "".join(background[at:])


def make_split(
    name: str,
    n_pairs: int,
    families: list[tuple[str, str]],
    rng: random.Random,
    proteins_per_family: int,
    min_length: int,
    max_length: int,
) -> tuple[dict[str, str], list[tuple[str, str, int]]]:
    """Proteins of this split only, and balanced pairs among them."""
    sequences: dict[str, str] = {}
    ligands: list[list[str]] = []
    receptors: list[list[str]] = []
    for family, (ligand, receptor) in enumerate(families):
        for role, motif, holders in (("L", ligand, ligands), ("R", receptor, receptors)):
            ids = [f"{name}_{role}{family}_{k}" for k in range(proteins_per_family)]
            for protein in ids:
                sequences[protein] = make_protein(motif, rng, min_length, max_length)
            holders.append(ids)

    pairs: set[tuple[str, str, int]] = set()
    while len(pairs) < n_pairs:
        label = len(pairs) % 2
        family = rng.randrange(len(families))
        partner = family if label else rng.choice([f for f in range(len(families)) if f != family])
        a, b = rng.choice(ligands[family]), rng.choice(receptors[partner])
        if rng.random() < 0.5:  # either order: the task is symmetric
            a, b = b, a
        pairs.add((a, b, label))
    ordered = sorted(pairs)
    rng.shuffle(ordered)
    return sequences, ordered


def synthetic_task_paths(out_dir: str | Path) -> dict[str, Path]:
    """Where `write_synthetic_task` puts the train/valid/test TSVs and the FASTA."""
    out_dir = Path(out_dir)
    paths = {split: out_dir / f"{split}.tsv" for split in ("train", "valid", "test")}
    return {**paths, "fasta": out_dir / "sequences.fasta"}


def write_synthetic_task(
    out_dir: str | Path,
    seed: int = 0,
    n_families: int = 5,
    motif_length: int = 4,
    train_pairs: int = 3000,
    eval_pairs: int = 600,
    proteins_per_family: int = 60,
    min_length: int = 40,
    max_length: int = 150,
) -> dict[str, Path]:
    """Write train/valid/test TSVs and one FASTA; return their paths. Deterministic in `seed`.

    Each file is written beside its place and renamed into it, so a reader (another rank
    resuming on the same folder) sees the old file or the new one, never half of one.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    families = make_families(n_families, motif_length)
    paths = synthetic_task_paths(out_dir)
    all_sequences: dict[str, str] = {}
    for split, n in (("train", train_pairs), ("valid", eval_pairs), ("test", eval_pairs)):
        per_family = proteins_per_family if split == "train" else max(8, proteins_per_family // 4)
        sequences, pairs = make_split(split, n, families, rng, per_family, min_length, max_length)
        all_sequences.update(sequences)
        lines = ["protein_a\tprotein_b\tlabel\n"]
        lines += [f"{a}\t{b}\t{label}\n" for a, b, label in pairs]
        _write_atomically(paths[split], lines)
    lines = []
    for protein, sequence in all_sequences.items():
        lines.append(f">{protein}\n")
        lines += [sequence[i : i + 60] + "\n" for i in range(0, len(sequence), 60)]
    _write_atomically(paths["fasta"], lines)
    return paths


def _write_atomically(path: Path, lines: list[str]) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(partial, "w") as handle:
        handle.writelines(lines)
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train_pairs", type=int, default=3000)
    parser.add_argument("--eval_pairs", type=int, default=600)
    args = parser.parse_args(argv)
    paths = write_synthetic_task(
        args.out_dir, seed=args.seed, train_pairs=args.train_pairs, eval_pairs=args.eval_pairs
    )
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()


def prepare_synthetic_task(
    out_dir: Path, *, seed: int, train_pairs: int, eval_pairs: int, accelerator
) -> dict[str, Path]:
    """The trainer's default data: written once per machine (the folder may be node-local),
    to temporary names renamed into place; the other processes wait, then read it."""
    if accelerator.is_local_main_process:
        write_synthetic_task(out_dir, seed=seed, train_pairs=train_pairs, eval_pairs=eval_pairs)
    accelerator.wait_for_everyone()
    return synthetic_task_paths(out_dir)
