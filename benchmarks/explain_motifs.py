"""Do the hotspot maps find the synthetic task's planted motifs? Per pair, the share of each
protein's top-k residues (k = motif length) in its motif, for the trained model and an
untrained copy (cross-attention and head re-initialised, LoRA update zeroed), beside chance
(k / L), with 95% bootstrap intervals over pairs. Run `bash scripts/train_default.sh` first.

    python -m benchmarks.explain_motifs --model outputs/synthetic_tiny/model
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.core import REPO, append_json_line, machine_line
from ppi_dist.data.pairs import PairSource, sequences_of
from ppi_dist.data.synthetic import planted_motif
from ppi_dist.hub.loading import load_model
from ppi_dist.inference.explain import HOTSPOT_SCORES, explain_pair
from ppi_dist.inference.scoring import encode_proteins
from ppi_dist.models.secai import SECAI

DEFAULT_RUN = REPO / "outputs" / "synthetic_tiny"


def untrained_copy(folder: Path, seed: int) -> SECAI:
    model = load_model(folder)
    torch.manual_seed(seed)
    for part in (model.cross_attention, model.head):
        for module in part.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    for name, parameter in model.encoder.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: the adapted encoder is the base one
            parameter.data.zero_()
    return model.eval()


def hit_rates(model: SECAI, pairs, motif_length: int) -> dict[str, np.ndarray]:
    cache = encode_proteins(model, sequences_of(pairs))
    rates = {name: [] for name in (*HOTSPOT_SCORES, "chance")}
    for pair in pairs:
        explanation = explain_pair(
            model, pair.protein_a, pair.sequence_a, pair.protein_b, pair.sequence_b, cache=cache
        )
        per_protein = {name: [] for name in rates}
        for side, sequence in (("a", pair.sequence_a), ("b", pair.sequence_b)):
            motif = set(planted_motif(sequence, motif_length))
            for name in HOTSPOT_SCORES:
                top = explanation.top_residues(side, motif_length, name)
                per_protein[name].append(sum(p - 1 in motif for p, _, _ in top) / motif_length)
            per_protein["chance"].append(motif_length / len(sequence))
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
    parser.add_argument("--split", default="test", choices=["valid", "test"])
    parser.add_argument("--motif_length", type=int, default=4, help="the task's (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="of the untrained model")
    parser.add_argument("--json_out", help="append the result as a JSON line here")
    args = parser.parse_args(argv)
    data = Path(args.data)
    source = PairSource(data / f"{args.split}.tsv", data / "sequences.fasta", labeled=True)
    pairs = list(source.pair_rows())
    print(machine_line(torch.device("cpu")))
    print(f"{len(pairs)} {args.split} pairs of {data}; top-k with k = {args.motif_length}")
    result = {"pairs": len(pairs), "split": args.split, "model": args.model}
    for label, model in (
        ("trained", load_model(args.model).eval()),
        ("untrained", untrained_copy(Path(args.model), args.seed)),
    ):
        started = time.perf_counter()
        rates = hit_rates(model, pairs, args.motif_length)
        positive = np.array([p.label == 1 for p in pairs])
        for name, values in rates.items():
            if name == "chance" and label == "untrained":
                continue
            mean, low, high = mean_interval(values)
            pos_mean, pos_low, pos_high = mean_interval(values[positive])
            who = "chance (k / L)" if name == "chance" else f"{label} {name}"
            print(
                f"  {who:<32} top-k in motif {mean:.3f} [{low:.3f}, {high:.3f}]; "
                f"interacting pairs {pos_mean:.3f} [{pos_low:.3f}, {pos_high:.3f}]"
            )
            key = "chance" if name == "chance" else f"{label}_{name}"
            result[key] = {"all": [mean, low, high], "positive": [pos_mean, pos_low, pos_high]}
        print(f"  ({label}: {time.perf_counter() - started:.1f} s)")
    append_json_line(args.json_out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
