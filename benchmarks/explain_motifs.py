"""Do the hotspot maps find the synthetic task's planted motifs? Per pair, the share of each
protein's top-k residues (k = motif length) in its motif, for the trained model and an
untrained copy (cross-attention and head re-initialised, LoRA update zeroed), beside chance
(k / L), with 95% bootstrap intervals over pairs. Run `bash scripts/train_default.sh` first.

    python -m benchmarks.explain_motifs --model outputs/synthetic_tiny/model
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.core import REPO
from ppi_dist.data.pairs import Pair, PairSource, sequences_of
from ppi_dist.data.synthetic import planted_motif
from ppi_dist.hub.loading import load_model
from ppi_dist.inference.explain import HOTSPOT_SCORES, explain_pair
from ppi_dist.inference.scoring import encode_proteins
from ppi_dist.models.secai import SECAI
from ppi_dist.training.machine import machine_line

DEFAULT_RUN = REPO / "outputs" / "synthetic_tiny"
MOTIF_LENGTH = 4  # the synthetic task's


def untrained_copy(folder: Path) -> SECAI:
    model = load_model(folder)
    torch.manual_seed(0)
    for part in (model.cross_attention, model.head):
        for module in part.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    for name, parameter in model.encoder.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: the adapted encoder is the base one
            parameter.data.zero_()
    return model.eval()


def hit_rates(model: SECAI, pairs: list[Pair]) -> dict[str, np.ndarray]:
    cache = encode_proteins(model, sequences_of(pairs))
    rates = {name: [] for name in (*HOTSPOT_SCORES, "chance")}
    for pair in pairs:
        explanation = explain_pair(
            model, pair.protein_a, pair.sequence_a, pair.protein_b, pair.sequence_b, cache=cache
        )
        per_protein = {name: [] for name in rates}
        for side, sequence in (("a", pair.sequence_a), ("b", pair.sequence_b)):
            motif = set(planted_motif(sequence, MOTIF_LENGTH))
            for name in HOTSPOT_SCORES:
                top = explanation.top_residues(side, MOTIF_LENGTH, name)
                per_protein[name].append(sum(p - 1 in motif for p, _, _ in top) / MOTIF_LENGTH)
            per_protein["chance"].append(MOTIF_LENGTH / len(sequence))
        for name, values in per_protein.items():
            rates[name].append(float(np.mean(values)))
    return {name: np.array(values) for name, values in rates.items()}


def mean_interval(values: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_RUN / "model"))
    parser.add_argument("--data", default=str(DEFAULT_RUN / "synthetic_data"))
    args = parser.parse_args(argv)
    data = Path(args.data)
    pairs = list(PairSource(data / "test.tsv", data / "sequences.fasta", labeled=True).pair_rows())
    positive = np.array([p.label == 1 for p in pairs])
    print(machine_line(torch.device("cpu")))
    print(f"{len(pairs)} test pairs of {data}; top-k with k = {MOTIF_LENGTH}")
    for label, model in (
        ("trained", load_model(args.model).eval()),
        ("untrained", untrained_copy(Path(args.model))),
    ):
        started = time.perf_counter()
        for name, values in hit_rates(model, pairs).items():
            if name == "chance" and label == "untrained":
                continue
            mean, low, high = mean_interval(values)
            pos_mean, pos_low, pos_high = mean_interval(values[positive])
            who = "chance (k / L)" if name == "chance" else f"{label} {name}"
            print(
                f"  {who:<32} top-k in motif {mean:.3f} [{low:.3f}, {high:.3f}]; "
                f"interacting pairs {pos_mean:.3f} [{pos_low:.3f}, {pos_high:.3f}]"
            )
        print(f"  ({label}: {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
