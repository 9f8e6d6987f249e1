"""An epoch's FLOPs and wall time on N GPUs, for a pair file, an ESM-2 shape and a budget, by
the FLOP model of a training step (`ppi_dist.training.flops`; BENCHMARKS.md, FLOP model).

    ppi-dist estimate --pairs train.tsv --fasta seqs.fasta --shape 650M --gpus 1 8
    ppi-dist estimate --pairs train.tsv --fasta seqs.fasta --lora_layers 8 --mfu 0.12

The MFU is assumed, not measured: a run's own is its log's `train/mfu` (`--peak_tflops`).
"""

from __future__ import annotations

import argparse

from ppi_dist.cli.boundary import command
from ppi_dist.cli.flags import Parser, at_least, open_fraction
from ppi_dist.data.pairs import PairSource
from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.shapes import SHAPES, encoder_config_of
from ppi_dist.training.flops import (
    PEAK_TFLOPS,
    BatchStats,
    ModelShape,
    count_epoch,
    format_flops,
    trunk_build_flops,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ppi-dist estimate", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--pairs", required=True, help="the training pair file")
    add("--fasta", help="sequences (unless the pair file has them inline)")
    add("--shape", choices=SHAPES, default="650M")
    add("--lora_r", type=at_least(1), default=8)
    add("--lora_layers", type=at_least(1), default=None, help="LoRA on the last N layers only")
    add("--freeze_encoder", action="store_true", help="no LoRA: the embedding cache's steps")
    add("--max_residues", type=at_least(1), default=1022, help="the training crop")
    add("--max_tokens", type=at_least(1), default=16384, help="the per-GPU batch budget")
    add("--head_hidden", type=at_least(1), default=512)
    add("--no_checkpointing", action="store_true", help="executed FLOPs without recomputation")
    add("--gpus", type=at_least(1), nargs="+", default=[1, 8])
    add("--mfu", type=open_fraction, default=0.35, help="assumed model FLOP utilisation")
    add("--peak_tflops", type=float, default=PEAK_TFLOPS, help="one GPU's dense bf16 peak")
    add("--scaling", type=open_fraction, default=0.9, help="efficiency on more than one GPU")
    add("--skip_batching", action="store_true", help="only the count without batches")
    return parser


def run(args: argparse.Namespace) -> int:
    config = SECAIConfig(
        encoder=None,
        encoder_config=encoder_config_of(args.shape),
        lora_r=args.lora_r,
        lora_layers=args.lora_layers,
        freeze_encoder=args.freeze_encoder,
        max_residues=args.max_residues,
        head_hidden=args.head_hidden,
        activation_checkpointing=not args.no_checkpointing,
    )
    model = ModelShape.of(config, config.encoder_config)
    shape, source = model.encoder, PairSource(args.pairs, fasta=args.fasta)
    print(
        f"{args.shape} shape: d={shape.hidden}, {shape.layers} layers, f={shape.intermediate}, "
        f"{shape.matmul_params:,} matmul weights"
    )
    budgets = {"no dedup, no padding (conservative in dedup, optimistic in padding)": None}
    if not args.skip_batching:
        budgets[f"data layer batches, max_tokens {args.max_tokens} (as run)"] = args.max_tokens
    windowing = config.windowing("train")
    counts = {label: count_epoch(model, source, n, windowing) for label, n in budgets.items()}
    print(
        f"epoch of {args.pairs}: {next(iter(counts.values())).steps:,} pairs; assumed MFU "
        f"{100 * args.mfu:.0f}% of {args.peak_tflops:g} TFLOP/s (bf16 dense), "
        f"{100 * args.scaling:.0f}% scaling efficiency on more than one GPU"
    )
    for label, count in counts.items():
        print(f"- {label}:\n  {describe(count)}")
        for gpus in args.gpus:
            speed = args.peak_tflops * 1e12 * args.mfu * (args.scaling if gpus > 1 else 1.0)
            wall = count.flops.model / (speed * gpus) / 3600
            print(f"  {gpus} GPU(s): {wall:.2f} h wall, {wall * gpus:.2f} GPU-hours per epoch")
    if model.step_layers < shape.layers:  # the trunk cache's build, once per run
        scoring = config.windowing("scoring")
        widths = [
            w.stop - w.start + 2 for s in source.sequences.values() for w in scoring.windows(len(s))
        ]
        build = format_flops(trunk_build_flops(model, widths))
        print(f"trunk cache build over {len(widths):,} windows: {build}")
    return 0


def describe(count: BatchStats) -> str:
    return (
        f"{count.steps:,} steps, pair tokens {count.pair_tokens:,}, encoded real "
        f"{count.encoded_real:,} (dedup x{count.pair_tokens / count.encoded_real:.2f}), "
        f"padded/real {count.encoded_padded / count.encoded_real:.2f}; model FLOPs "
        f"{format_flops(count.flops.model)}, executed {format_flops(count.flops.executed)}"
    )


main = command(build_parser, run)
