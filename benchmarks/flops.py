"""An epoch's FLOPs and wall time on N GPUs, by the FLOP model of one training step
(`ppi_dist.training.flops`, BENCHMARKS.md's FLOP model table).

    python -m benchmarks.flops --mfu 0.35 --peak_tflops 989 --scaling 0.9 --gpus 1 8 \
        --max_tokens 16384
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.core import DEFAULT_FASTA, DEFAULT_PAIRS, trainer_config
from ppi_dist.data.batching import TokenBatches
from ppi_dist.data.pairs import PairSource
from ppi_dist.data.planner import BatchOptions
from ppi_dist.data.sequences import ESM2_MAX_RESIDUES
from ppi_dist.training.flops import (
    NO_BATCHES,
    PEAK_TFLOPS,
    BatchStats,
    ModelShape,
    batch_stats,
    secai_step_flops,
    trunk_build_flops,
)


def format_flops(value: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} FLOP"


def count_epoch(model: ModelShape, source: PairSource, max_tokens: int | None) -> BatchStats:
    """An epoch as the data layer batches it at `max_tokens`; None: every pair's two
    sequences at their own length (no dedup, no padding), one step per pair."""
    count = NO_BATCHES
    if max_tokens is None:
        for pair in source.pair_rows():
            a, b = (min(len(s), ESM2_MAX_RESIDUES) + 2 for s in (pair.sequence_a, pair.sequence_b))
            flops = secai_step_flops(model, [[a, b]], [(a, b)])
            count = count + BatchStats(1, a + b, a + b, a + b, flops)
        return count
    for batch in TokenBatches(source, BatchOptions(max_tokens=max_tokens)):
        count = count + batch_stats(model, batch)
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    add = parser.add_argument
    add("--pairs", default=str(DEFAULT_PAIRS))
    add("--fasta", default=str(DEFAULT_FASTA))
    add("--peak_tflops", type=float, default=PEAK_TFLOPS)
    add("--mfu", type=float, default=0.35, help="assumed MFU until measured")
    add("--scaling", type=float, default=0.9, help="efficiency on several GPUs")
    add("--gpus", type=int, nargs="+", default=[1, 8])
    add("--skip_batching", action="store_true", help="only the conservative count")
    args, flags = parser.parse_known_args(argv)
    cpu = torch.device("cpu")
    config = trainer_config(parser, flags, cpu, encoder_shape="650M", activation_checkpointing=True)
    secai = config.model.secai_config()
    if secai.encoder_config is None:
        parser.error("the FLOP model counts a named shape: give --encoder_shape")
    model = ModelShape.of(secai, secai.encoder_config)
    shape, source = model.encoder, PairSource(args.pairs, fasta=args.fasta)
    print(
        f"{config.model.encoder_shape} shape: d={shape.hidden}, {shape.layers} layers, "
        f"f={shape.intermediate}, {shape.matmul_params:,} matmul weights"
    )
    budgets = {"no dedup, no padding (conservative in dedup, optimistic in padding)": None}
    if not args.skip_batching:
        tokens = config.data.max_tokens
        budgets[f"data layer batches, max_tokens {tokens} (as run)"] = tokens
    counts = {label: count_epoch(model, source, tokens) for label, tokens in budgets.items()}
    print(
        f"epoch of {args.pairs}: {len(list(source.pair_rows())):,} pairs; assumed MFU "
        f"{100 * args.mfu:.0f}% of {args.peak_tflops:g} TFLOP/s (bf16 dense), "
        f"{100 * args.scaling:.0f}% scaling efficiency on more than one GPU"
    )
    for label, count in counts.items():
        print(
            f"- {label}:\n  {count.steps:,} steps, pair tokens {count.pair_tokens:,}, encoded "
            f"real {count.encoded_real:,} (dedup x{count.pair_tokens / count.encoded_real:.2f}),"
            f" padded/real {count.encoded_padded / count.encoded_real:.2f}; model FLOPs "
            f"{format_flops(count.flops.model)}, executed {format_flops(count.flops.executed)}"
        )
        for gpus in args.gpus:
            speed = args.peak_tflops * 1e12 * args.mfu * (args.scaling if gpus > 1 else 1.0)
            wall = count.flops.model / (speed * gpus) / 3600
            print(f"  {gpus} GPU(s): {wall:.2f} h wall, {wall * gpus:.2f} GPU-hours per epoch")
    if model.step_layers < shape.layers:  # the trunk cache's build, once per run
        windowing = secai.windowing("scoring")
        lengths = [len(s) for s in source.sequences.values()]
        widths = [w.stop - w.start + 2 for n in lengths for w in windowing.windows(n)]
        build = trunk_build_flops(model, widths)
        print(f"trunk cache build over {len(widths):,} windows: {format_flops(build)}")


if __name__ == "__main__":
    main()
