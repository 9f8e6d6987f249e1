"""Training speed of LoRA on every encoder layer against LoRA on the top layers (with and
without the trunk cache) and a frozen encoder, on the same batches, in one process.

    python -m benchmarks.lora_layers                      # 8M, crop 256, last 2 of 6 layers
    python -m benchmarks.lora_layers --encoder_shape 650M --lora_layers 8 --max_residues 1022

Pairs are drawn (seeded) from a real pair file with their real lengths; one list of training
batches (`TokenBatches` over the trunk cache: the crops are the cache's windows) serves every
variant, each through the trainer's own step and batch preparation
(`benchmarks.core.trainer_step`):

* all layers: LoRA on every layer, the whole encoder every step (the trunk rows unread);
* last N, whole encoder: LoRA on the last N layers, the whole encoder every step;
* last N, trunk cache: the same model, the layers below read from the trunk cache
  (`BatchPreparation` with the trunk), built once first (its wall time is printed);
* frozen: no LoRA, last-layer states from the embedding cache (`training.frozen`), the
  same pairs as cache-row batches with the trainer's crops.

The variants alternate within every repeat (drift hits all); medians over repeats are
reported as pairs/s, beside the FLOP model's step FLOPs (`benchmarks.flops`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks import core
from benchmarks.flops import ModelShape, secai_step_flops, trunk_build_flops
from benchmarks.tables import markdown_table
from ppi_dist.data.batching import CacheRowBatches, TokenBatches
from ppi_dist.data.pairs import Pair
from ppi_dist.data.planner import BatchOptions
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.trunk import TrunkCache
from ppi_dist.training.config import TrainConfig


@dataclass
class Variant:
    """One way of training on the batches, and its step times (one list per repeat)."""

    label: str
    step: Callable[[dict], object]
    flops: float  # model FLOPs of all the batches, by the FLOP model
    batches: list[dict]  # the shared batches in the form its step reads (frozen: cache rows)
    repeats: list[list[float]] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=core.TRAINER_FLAGS,
        formatter_class=argparse.RawTextHelpFormatter,
        allow_abbrev=False,
    )
    core.add_sample_flags(parser)
    parser.add_argument("--batches", type=int, default=6, help="batches timed per repeat")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches per variant")
    parser.add_argument("--repeats", type=int, default=3)
    core.add_run_flags(parser)
    args, flags = parser.parse_known_args(argv)
    device = torch.device(args.device)
    defaults = {"max_residues": 256, "lora_layers": 2, "max_tokens": 16384, "sort_buffer": 512}
    return args, core.trainer_config(parser, flags, device, **defaults)


def model_of(config: TrainConfig, device: torch.device, **secai: object):
    """The benchmark's model with some of its SE-CAI settings replaced (same seed)."""
    changed = TrainConfig.from_dict({**config.to_dict(), **secai})
    return changed, core.build_model(changed, device)


def step_flops(config: TrainConfig, model, batches: list[dict], encoder: str) -> float:
    """Model FLOPs of training on the batches (`benchmarks.flops`), the encoder run as
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


def build_variants(args, config: TrainConfig, source, work: Path) -> tuple[list, list, dict]:
    """The four variants on one list of batches; the caches' build seconds."""
    device = torch.device(args.device)
    accelerator = core.benchmark_accelerator(config, device)
    top = config.model.secai.lora_layers
    windowing = config.model.secai.windowing("scoring")
    sequences = dict(source.sequences)
    built = {}

    _, trunk_model = model_of(config, device)
    started = time.perf_counter()
    trunk = TrunkCache.build(trunk_model, sequences, work / "trunk", windowing, progress=True)
    built[f"trunk cache, layers below the last {top}"] = time.perf_counter() - started
    batches = list(
        TokenBatches(
            source,
            BatchOptions(
                seed=config.optimization.seed,
                max_tokens=config.data.max_tokens,
                sort_buffer=config.data.sort_buffer,
            ),
            windowing=config.model.secai.windowing("train"),
            trunk_index=trunk.index,
        )
    )
    needed = args.warmup + args.batches
    batches = batches[:needed]
    if len(batches) < needed:
        raise SystemExit(f"{len(batches)} batches, fewer than --warmup + --batches {needed}")

    frozen_config, frozen_model = model_of(config, device, freeze_encoder=True)
    started = time.perf_counter()
    cache = EmbeddingCache.build(
        frozen_model, sequences, directory=work / "frozen", windowing=windowing
    )
    built["embedding cache, last layer (frozen)"] = time.perf_counter() - started

    every_config, every_model = model_of(config, device, lora_layers=None)
    _, whole_model = model_of(config, device)
    plans = [  # label, settings, model, cached states (embedding, trunk), what the encoder runs
        ("LoRA on all layers", every_config, every_model, (None, None), "trunk"),
        (f"LoRA on the last {top}, whole encoder", config, whole_model, (None, None), "whole"),
        (f"LoRA on the last {top}, trunk cache", config, trunk_model, (None, trunk), "trunk"),
        ("frozen, embedding cache", frozen_config, frozen_model, (cache, None), "none"),
    ]
    variants = []
    for label, variant_config, model, (states, trunk_states), encoder in plans:
        step = core.trainer_step(model, variant_config, accelerator, states, trunk_states)
        flops = step_flops(variant_config, model, batches[args.warmup :], encoder)
        variants.append(Variant(label, step, flops, batches))
    # The frozen step reads the same pairs as cache rows, each long protein cropped to a
    # window of its cached states as the trainer's frozen batches crop it (as tokens it
    # would cross-attend whole proteins).
    rows = CacheRowBatches(source, cache.index, windowing=config.model.secai.windowing("train"))
    variants[-1].batches = [rows.collate(i, _pairs_of(b), 1.0) for i, b in enumerate(batches)]
    return variants, batches, built


def _pairs_of(batch: dict) -> list[Pair]:
    labels = batch["labels"].tolist()
    sides = zip(batch["protein_a"], batch["protein_b"], labels, strict=True)
    return [Pair(a, b, label=y) for a, b, y in sides]


def run(args: argparse.Namespace, config: TrainConfig) -> None:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print("\n".join(core.machine_report(device)))
    pairs, _ = core.sample_pairs(core.sample_from(args, config))
    secai = config.model.secai
    with (
        core.sample_source(pairs, secai.max_residues) as source,
        tempfile.TemporaryDirectory() as work,
    ):
        variants, batches, built = build_variants(args, config, source, Path(work))
        timed = batches[args.warmup :]
        for variant in variants:
            core.time_steps(variant.step, variant.batches[: args.warmup], device)
        for repeat in range(args.repeats):
            for variant in variants:
                timed_here = variant.batches[args.warmup :]
                variant.repeats.append(core.time_steps(variant.step, timed_here, device))
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    timed_pairs = sum(len(b["index_a"]) for b in timed)
    print(
        f"\n{core.encoder_label(config)}, crop {secai.max_residues}, max_tokens "
        f"{config.data.max_tokens}: {len(timed)} batches of {timed_pairs} pairs per repeat, "
        f"{args.repeats} repeats (medians)"
    )
    reference = statistics.median(sum(r) for r in variants[0].repeats)
    rows = []
    for variant in variants:
        seconds = statistics.median(sum(r) for r in variant.repeats)
        rows.append(
            (
                variant.label,
                f"{timed_pairs / seconds:.1f}",
                f"{reference / seconds:.2f}x",
                f"{variants[0].flops / variant.flops:.2f}x" if variant.flops else "-",
            )
        )
    header = ("variant", "training pairs/s", "speed-up", "FLOP model speed-up")
    print("\n".join(markdown_table(header, rows)))
    for what, seconds in built.items():
        print(f"built once: {what}: {seconds:.1f} s for {len(source.sequences):,} proteins")


def main(argv: list[str] | None = None) -> None:
    run(*parse_args(argv))


if __name__ == "__main__":
    main()
