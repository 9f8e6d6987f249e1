"""Training speed of LoRA on every encoder layer, LoRA on the top layers (over the whole
encoder, and over the trunk cache) and a frozen encoder (over the embedding cache), each
through the trainer's own set-up and step on one list of the trainer's trunk-cache batches
(the frozen step on the same pairs as cache rows), alternating within every repeat; medians
as pairs/s, beside the FLOP model's ratio (`ppi_dist.training.flops`).

    python -m benchmarks.lora_layers                      # 8M, crop 256, last 2 of 6 layers
    python -m benchmarks.lora_layers --encoder_shape 650M --lora_layers 8 --max_residues 1022
"""

from __future__ import annotations

import argparse

import torch

from benchmarks import core
from ppi_dist.data.batching import CacheRowBatches
from ppi_dist.data.pairs import Pair, PairSource
from ppi_dist.models.secai import SECAI
from ppi_dist.tables import markdown_table
from ppi_dist.training.config import TrainConfig
from ppi_dist.training.flops import ModelShape, secai_step_flops, trunk_build_flops
from ppi_dist.training.machine import PeakMemory, machine_report


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = core.step_parser(__doc__)
    parser.add_argument("--batches", type=int, default=6, help="batches timed per repeat")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches per variant")
    parser.add_argument("--repeats", type=int, default=3)
    args, flags = parser.parse_known_args(argv)
    defaults = {"max_residues": 256, "lora_layers": 2, "max_tokens": 16384, "sort_buffer": 512}
    config = core.trainer_config(parser, flags, torch.device(args.device), **defaults)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, config


def model_of(
    config: TrainConfig, device: torch.device, **secai: object
) -> tuple[TrainConfig, SECAI]:
    """The benchmark's model with some of its SE-CAI settings replaced (same seed)."""
    changed = TrainConfig.from_dict({**config.to_dict(), **secai})
    return changed, core.build_model(changed, device)


def step_flops(config: TrainConfig, model: SECAI, batches: list[dict], encoder: str) -> float:
    """Model FLOPs of training on the batches (`ppi_dist.training.flops`), the encoder run as
    `encoder` says: "trunk" (the top LoRA layers only), "whole" (every layer forward, the
    backward down to the first LoRA layer) or "none" (cached last-layer states)."""
    shape = ModelShape.of(config.model.secai_config(), model.encoder.config)
    total = 0.0
    for batch in batches:
        mask = batch["attention_mask"]
        width, pairs = mask.shape[1], len(batch["index_a"])
        widths = [width] * len(mask)  # padded rows: an upper bound, the same for every variant
        calls = [] if encoder == "none" else [widths]
        total += secai_step_flops(shape, calls, [(width, width)] * pairs).model
        if encoder == "whole":
            total += trunk_build_flops(shape, widths)  # the layers below LoRA, forward
    return total


def build_variants(
    args: argparse.Namespace, config: TrainConfig, source: PairSource, pairs: list[Pair]
) -> list[core.Timed]:
    """The four variants on one list of batches, each with its model FLOPs on them."""
    device, top = torch.device(args.device), config.model.secai.lora_layers
    _, trunk_model = model_of(config, device)
    trunk = core.TrainerStep(trunk_model, config, device, pairs)  # builds the trunk cache
    batches = trunk.batches(source)[: args.warmup + args.batches]
    if len(batches) < args.warmup + args.batches:
        raise SystemExit(f"{len(batches)} batches, fewer than --warmup + --batches")
    frozen_config, frozen_model = model_of(config, device, freeze_encoder=True)
    frozen = core.TrainerStep(frozen_model, frozen_config, device, pairs)  # the embedding cache
    # The frozen step reads the same pairs as cache rows, each long protein cropped to a
    # window of its cached states as the trainer's frozen batches crop it (as tokens it
    # would cross-attend whole proteins).
    windowing = config.model.secai.windowing("train")
    rows = CacheRowBatches(source, frozen.prepare.cache.index, windowing=windowing)
    frozen_batches = [rows.collate(i, pairs_of(batch), 1.0) for i, batch in enumerate(batches)]
    every_config, every_model = model_of(config, device, lora_layers=None)
    every = core.TrainerStep(every_model, every_config, device)
    whole = core.TrainerStep(model_of(config, device)[1], config, device)  # no trunk cache
    plans = [  # label, settings, step, what the encoder runs
        ("LoRA on all layers", every_config, every, "trunk"),
        (f"LoRA on the last {top}, whole encoder", config, whole, "whole"),
        (f"LoRA on the last {top}, trunk cache", config, trunk, "trunk"),
        ("frozen, embedding cache", frozen_config, frozen, "none"),
    ]
    variants = []
    for label, settings, step, encoder in plans:
        read = frozen_batches if step is frozen else batches
        variant = core.Timed(label, step, read[: args.warmup], read[args.warmup :])
        variant.stats = [step_flops(settings, step.model, batches[args.warmup :], encoder)]
        variants.append(variant)
    return variants


def pairs_of(batch: dict) -> list[Pair]:
    labels = batch["labels"].tolist()
    sides = zip(batch["protein_a"], batch["protein_b"], labels, strict=True)
    return [Pair(a, b, label=y) for a, b, y in sides]


def run(args: argparse.Namespace, config: TrainConfig) -> None:
    device = torch.device(args.device)
    print("\n".join(machine_report(device)))
    pairs, secai = core.sampled(args, config), config.model.secai
    with core.sample_source(pairs, config) as source:
        variants = build_variants(args, config, source, pairs)
        core.warm_up(variants, device)
        core.time_in_turn(variants, args.repeats, PeakMemory(device))
        proteins = len(source.sequences)
    timed_pairs = sum(len(b["index_a"]) for b in variants[0].measured)
    print(
        f"\n{core.encoder_label(config)}, crop {secai.max_residues}, max_tokens "
        f"{config.data.max_tokens}: {args.batches} batches of {timed_pairs} pairs per repeat, "
        f"{args.repeats} repeats (medians); {proteins:,} proteins in the caches"
    )
    first = variants[0]
    rows = [
        (
            variant.name,
            f"{timed_pairs / variant.seconds:.1f}",
            f"{first.seconds / variant.seconds:.2f}x",
            f"{first.stats[0] / variant.stats[0]:.2f}x" if variant.stats[0] else "-",
        )
        for variant in variants
    ]
    header = ("variant", "training pairs/s", "speed-up", "FLOP model speed-up")
    print("\n".join(markdown_table(header, rows)))


def main(argv: list[str] | None = None) -> None:
    run(*parse_args(argv))


if __name__ == "__main__":
    main()
