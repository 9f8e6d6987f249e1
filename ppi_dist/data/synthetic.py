"""The embedded default task: synthetic PPI data with planted complementary motifs.

Every protein is a random background chain plus interface letters. Motifs come in
complementary families: family i has a "ligand" letter and a "receptor" letter, and a
protein of family i and role "ligand" carries its letter as one contiguous run of
`motif_length` residues. A pair interacts when one protein carries the ligand run and the
other the receptor run of the SAME family; negatives pair a ligand with a receptor of
another family, so every protein appears in positives and negatives alike (no degree
shortcut). Train, validation and test use disjoint proteins.

Two designs (`composition_leak`):

- True (the default run's task): each protein carries only its own motif letter, and motif
  letters never occur in the background. Composition alone (which letters A and B contain)
  decides the label: `composition_baseline`, a logistic regression on the pair's
  amino-acid composition, reaches test AUROC 1.0. The default run therefore shows that the
  pipeline trains and evaluates end to end, NOT that the model learns residue-level
  interaction.
- False (composition-free): every ligand carries EVERY ligand letter exactly
  `motif_length` times (every receptor every receptor letter): its own family's letter as
  the run, the others scattered as decoys, never two of a letter side by side. All ligands
  then have the same motif-letter counts, as do all receptors, and the background is drawn
  independently of the family, so composition carries no label signal (the composition
  baseline is at chance, test AUROC about 0.5). Only where the letters sit (the run) tells
  the family. The default recipe's tiny random-init encoder with LoRA does not learn it
  (BENCHMARKS.md), so it is not the default. Generate it with
  `python -m ppi_dist.synthetic DIR --composition_free` and train on the files.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppi_dist.data.fasta import read_fasta, write_fasta
from ppi_dist.data.pairs import Pair, write_pairs
from ppi_dist.data.sequences import STANDARD_RESIDUES

# Family i: ligand letter LIGAND_LETTERS[i], receptor letter RECEPTOR_LETTERS[i]. The ten
# motif letters occur only as motifs and decoys (never in the background).
LIGAND_LETTERS = "WCHMY"
RECEPTOR_LETTERS = "FKEDR"
BACKGROUND = "".join(sorted(set(STANDARD_RESIDUES) - set(LIGAND_LETTERS) - set(RECEPTOR_LETTERS)))


def make_families(n_families: int, motif_length: int) -> list[tuple[str, str]]:
    """(ligand, receptor) motifs of each family."""
    if not 2 <= n_families <= len(LIGAND_LETTERS):
        raise ValueError(f"n_families must be 2 to {len(LIGAND_LETTERS)}, got {n_families}")
    return [
        (LIGAND_LETTERS[i] * motif_length, RECEPTOR_LETTERS[i] * motif_length)
        for i in range(n_families)
    ]


def make_protein(
    motif: str,
    rng: random.Random,
    min_length: int,
    max_length: int,
    decoys: str = "",
) -> str:
    """A random background with its own composition, `motif` planted at a random place, and
    each letter of `decoys` scattered at random places, none next to the same letter."""
    length = rng.randint(min_length, max_length)
    n_background = length - len(motif) - len(decoys)
    if n_background < 1:
        raise ValueError(
            f"a protein of {length} residues cannot hold a {len(motif)}-residue motif and "
            f"{len(decoys)} decoy residues: raise min_length or lower motif_length"
        )
    weights = [rng.random() + 0.2 for _ in BACKGROUND]  # per-protein composition
    chain = rng.choices(BACKGROUND, weights=weights, k=n_background)
    for letter in decoys:
        # Insert where neither neighbour is the same letter (a decoy must not form a run).
        for _ in range(1000):
            at = rng.randint(0, len(chain))
            left = chain[at - 1] if at > 0 else ""
            right = chain[at] if at < len(chain) else ""
            if letter not in (left, right):
                chain.insert(at, letter)
                break
        else:
            raise RuntimeError(f"no place for decoy {letter!r} in a chain of {len(chain)}")
    # The run goes between residues, never next to a decoy of its own letter.
    places = [
        at
        for at in range(len(chain) + 1)
        if motif[:1] not in ((chain[at - 1] if at else ""), (chain[at] if at < len(chain) else ""))
    ]
    at = rng.choice(places)
    return "".join(chain[:at]) + motif + "".join(chain[at:])


def _decoys(motif: str, role_letters: str, n_families: int, motif_length: int) -> str:
    """The other families' letters of this role, `motif_length` times each."""
    return "".join(c * motif_length for c in role_letters[:n_families] if c != motif[:1])


def make_split(
    name: str,
    n_pairs: int,
    families: list[tuple[str, str]],
    rng: random.Random,
    proteins_per_family: int,
    min_length: int,
    max_length: int,
    composition_leak: bool = True,
) -> tuple[dict[str, str], list[tuple[str, str, int]]]:
    """Proteins of this split only, and balanced distinct pairs among them.

    Pairs are drawn without replacement from every possible (ligand, receptor) pair, so the
    split stops with an error, never loops, when it holds fewer than `n_pairs`.
    `composition_leak=True` builds the earlier design (no decoys), for comparison only.
    """
    n_families = len(families)
    motif_length = len(families[0][0])
    n_positive, n_negative = n_pairs // 2, n_pairs - n_pairs // 2
    per_family_pairs = proteins_per_family**2
    available = (n_families * per_family_pairs, n_families * (n_families - 1) * per_family_pairs)
    if n_positive > available[0] or n_negative > available[1]:
        raise ValueError(
            f"the {name} split asks for {n_pairs:,} pairs ({n_positive:,} positive) but "
            f"{n_families} families x {proteins_per_family} proteins per family hold only "
            f"{available[0]:,} distinct positive and {available[1]:,} negative pairs: ask for "
            f"fewer pairs (--synthetic_train_pairs / --synthetic_eval_pairs) or more proteins "
            f"per family (at least {proteins_needed(n_pairs, n_families)})"
        )
    sequences: dict[str, str] = {}
    ligands: list[list[str]] = []
    receptors: list[list[str]] = []
    for family, (ligand, receptor) in enumerate(families):
        for role, motif, holders, letters in (
            ("L", ligand, ligands, LIGAND_LETTERS),
            ("R", receptor, receptors, RECEPTOR_LETTERS),
        ):
            decoys = "" if composition_leak else _decoys(motif, letters, n_families, motif_length)
            ids = [f"{name}_{role}{family}_{k}" for k in range(proteins_per_family)]
            for protein in ids:
                sequences[protein] = make_protein(motif, rng, min_length, max_length, decoys)
            holders.append(ids)

    k = proteins_per_family
    pairs = []
    for index in rng.sample(range(available[0]), n_positive):
        family, rest = divmod(index, per_family_pairs)
        pairs.append((ligands[family][rest // k], receptors[family][rest % k], 1))
    for index in rng.sample(range(available[1]), n_negative):
        family, rest = divmod(index, (n_families - 1) * per_family_pairs)
        other, rest = divmod(rest, per_family_pairs)
        partner = other + (other >= family)  # any family but this one
        pairs.append((ligands[family][rest // k], receptors[partner][rest % k], 0))
    # Either order: the task is symmetric.
    pairs = [(b, a, y) if rng.random() < 0.5 else (a, b, y) for a, b, y in pairs]
    rng.shuffle(pairs)
    return sequences, pairs


def proteins_needed(n_pairs: int, n_families: int) -> int:
    """Fewest proteins per family and role whose distinct pairs cover `n_pairs`."""
    return max(1, math.ceil(math.sqrt(math.ceil(n_pairs / 2) / n_families)))


def synthetic_task_paths(out_dir: str | Path) -> dict[str, Path]:
    """Where `write_synthetic_task` puts the train/valid/test TSVs and the FASTA."""
    out_dir = Path(out_dir)
    paths = {split: out_dir / f"{split}.tsv" for split in ("train", "valid", "test")}
    return {**paths, "fasta": out_dir / "sequences.fasta"}


@dataclass(frozen=True)
class SyntheticTask:
    """The task's settings: the files are deterministic in them (in `seed` especially)."""

    seed: int = 0
    n_families: int = 5
    motif_length: int = 4
    train_pairs: int = 3000
    eval_pairs: int = 600  # each of validation and test
    proteins_per_family: int = 60
    min_length: int = 40
    max_length: int = 150
    composition_leak: bool = True  # False: the composition-free design (module docstring)


def write_synthetic_task(out_dir: str | Path, task: SyntheticTask | None = None) -> dict[str, Path]:
    """Write train/valid/test TSVs and one FASTA; return their paths. Deterministic in `task`.

    Validation and test get max(8, proteins_per_family // 4) proteins per family and role,
    more when the requested pairs need them (distinct pairs are finite), and training gets
    `proteins_per_family`, also raised when `train_pairs` needs it.

    Each file is written beside its place and renamed into it (`write_pairs`, `write_fasta`),
    so a reader (another rank resuming on the same folder) sees the old file or the new one,
    never half of one.
    """
    task = task or SyntheticTask()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(task.seed)
    families = make_families(task.n_families, task.motif_length)
    paths = synthetic_task_paths(out_dir)
    all_sequences: dict[str, str] = {}
    sizes = (("train", task.train_pairs), ("valid", task.eval_pairs), ("test", task.eval_pairs))
    for split, n in sizes:
        per_family = task.proteins_per_family
        per_family = per_family if split == "train" else max(8, per_family // 4)
        per_family = max(per_family, proteins_needed(n, task.n_families))
        lengths, leak = (task.min_length, task.max_length), task.composition_leak
        sequences, pairs = make_split(split, n, families, rng, per_family, *lengths, leak)
        all_sequences.update(sequences)
        write_pairs(paths[split], [Pair(a, b, label=label) for a, b, label in pairs])
    write_fasta(paths["fasta"], all_sequences)
    return paths


def composition_features(sequence_a: str, sequence_b: str):
    """Symmetric pair features from amino-acid composition only: cA + cB and the upper
    triangle of cA cB^T + cB cA^T (which letters co-occur across the pair), 230 numbers."""

    def composition(sequence: str):
        counts = np.array([sequence.count(c) for c in STANDARD_RESIDUES], dtype=np.float64)
        return counts / max(1, len(sequence))

    a, b = composition(sequence_a), composition(sequence_b)
    outer = np.outer(a, b) + np.outer(b, a)
    return np.concatenate([a + b, outer[np.triu_indices(len(STANDARD_RESIDUES))]])


def composition_baseline(paths: dict[str, Path], seed: int = 0) -> dict[str, float]:
    """Test AUROC of a logistic regression trained on composition features of the training
    pairs (`composition_features`): what a model that ignores residue order can reach."""
    # scikit-learn takes a second to import; only this baseline needs it, not the trainer.
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sequences = read_fasta(paths["fasta"])

    def load(split: str):
        rows = [line.split("\t") for line in Path(paths[split]).read_text().splitlines()[1:]]
        x = np.stack([composition_features(sequences[a], sequences[b]) for a, b, _ in rows])
        return x, np.array([int(y) for *_, y in rows])

    x_train, y_train = load("train")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    model.fit(x_train, y_train)
    out = {"train_auroc": float(roc_auc_score(y_train, model.predict_proba(x_train)[:, 1]))}
    for split in ("valid", "test"):
        x, y = load(split)
        out[f"{split}_auroc"] = float(roc_auc_score(y, model.predict_proba(x)[:, 1]))
    return out


def planted_motif(sequence: str, motif_length: int) -> range:
    """Where a synthetic protein's interface motif sits: its run of `motif_length` copies of
    one interface letter (decoys never stand side by side), as 0-based positions."""
    interface = set(LIGAND_LETTERS + RECEPTOR_LETTERS)
    for start in range(len(sequence) - motif_length + 1):
        window = sequence[start : start + motif_length]
        if window[0] in interface and window == window[0] * motif_length:
            return range(start, start + motif_length)
    raise ValueError(f"no run of {motif_length} interface letters: not a synthetic protein")
