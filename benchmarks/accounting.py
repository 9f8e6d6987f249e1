"""What throughput.py counts per batch and reports per method: pairs, tokens asked for and
run, FLOPs (`benchmarks.flops`), and from the timed repeats pairs/s, MFU and peak memory."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from benchmarks.flops import ModelShape, StepFlops, secai_step_flops
from ppi_dist.models.packing import encoder_tokens


@dataclass
class BatchStats:
    pairs: int
    pair_tokens: int  # tokens of both sequences of every pair: the work asked for
    encoded_real: int  # non-padding tokens the encoder ran on
    encoded_padded: int  # tokens the encoder ran on, padding included
    flops: StepFlops


def our_stats(batch: dict, model: ModelShape) -> BatchStats:
    """One of our batches: the distinct sequences packed into rows (`model.encode`)."""
    mask = batch["attention_mask"]
    lengths = mask.sum(dim=1)
    width = mask.shape[1]
    rows = encoder_tokens(mask) // width
    pairs = len(batch["index_a"])
    return BatchStats(
        pairs=pairs,
        pair_tokens=int(lengths[batch["index_a"]].sum() + lengths[batch["index_b"]].sum()),
        encoded_real=int(lengths.sum()),
        encoded_padded=rows * width,
        flops=secai_step_flops(model, [[width] * rows], [(width, width)] * pairs),
    )


def baseline_stats(batch: dict, model: ModelShape) -> BatchStats:
    """One baseline batch: two encoder calls, A and B each padded to its own longest."""
    mask_a, mask_b = batch["attention_mask_a"], batch["attention_mask_b"]
    pairs, width_a, width_b = mask_a.shape[0], mask_a.shape[1], mask_b.shape[1]
    calls = [[width_a] * pairs, [width_b] * pairs]
    flops = secai_step_flops(model, calls, [(width_a, width_b)] * pairs)
    real = int(mask_a.sum() + mask_b.sum())
    return BatchStats(pairs, real, real, mask_a.numel() + mask_b.numel(), flops)


@dataclass
class Measurement:
    """One method's batches and what its timed repeats gathered."""

    name: str
    stats: list[BatchStats]
    max_tokens: int | None = None
    batch_size: int | None = None
    repeats: list[list[float]] = field(default_factory=list)  # seconds of each step
    peak_bytes: int = 0


@dataclass
class MethodResult:
    name: str
    max_tokens: int | None
    batch_size: int | None
    steps: int
    pairs: int
    pairs_per_s: float
    pair_tokens_per_s: float
    encoded_real_tokens_per_s: float
    encoded_padded_tokens_per_s: float
    padded_over_real: float
    pair_tokens_over_encoded: float  # > 1: dedup saved encoder work
    median_step_s: float
    model_gflop_per_pair: float
    model_tflops_per_s: float
    mfu: float | None
    hfu: float | None
    peak_memory_gb: float
    memory_kind: str
    repeat_pairs_per_s: list[float]


def summarise(
    measurement: Measurement, memory_kind: str, peak_tflops: float | None
) -> MethodResult:
    """Rates over the median repeat; MFU and HFU against `peak_tflops` when there is one."""
    stats, repeats = measurement.stats, measurement.repeats
    pairs = sum(s.pairs for s in stats)
    pair_tokens = sum(s.pair_tokens for s in stats)
    real = sum(s.encoded_real for s in stats)
    padded = sum(s.encoded_padded for s in stats)
    model_flops = sum(s.flops.model for s in stats)
    executed = sum(s.flops.executed for s in stats)
    totals = [sum(seconds) for seconds in repeats]
    seconds = statistics.median(totals)
    peak_flops = peak_tflops * 1e12 if peak_tflops else None
    return MethodResult(
        name=measurement.name,
        max_tokens=measurement.max_tokens,
        batch_size=measurement.batch_size,
        steps=len(stats),
        pairs=pairs,
        pairs_per_s=pairs / seconds,
        pair_tokens_per_s=pair_tokens / seconds,
        encoded_real_tokens_per_s=real / seconds,
        encoded_padded_tokens_per_s=padded / seconds,
        padded_over_real=padded / real,
        pair_tokens_over_encoded=pair_tokens / real,
        median_step_s=statistics.median(s for r in repeats for s in r),
        model_gflop_per_pair=model_flops / pairs / 1e9,
        model_tflops_per_s=model_flops / seconds / 1e12,
        mfu=model_flops / seconds / peak_flops if peak_flops else None,
        hfu=executed / seconds / peak_flops if peak_flops else None,
        peak_memory_gb=measurement.peak_bytes / 2**30,
        memory_kind=memory_kind,
        repeat_pairs_per_s=[pairs / t for t in totals],
    )


def print_result(result: MethodResult) -> None:
    how = (
        f"max_tokens {result.max_tokens}"
        if result.max_tokens is not None
        else f"batch_size {result.batch_size}"
    )
    mfu = (
        f"  MFU {100 * result.mfu:.1f}% (HFU {100 * result.hfu:.1f}%)"
        if result.mfu is not None
        else ""
    )
    repeats = ", ".join(f"{x:.2f}" for x in result.repeat_pairs_per_s)
    print(
        f"{result.name:9s} [{how}] {result.pairs} pairs in {result.steps} steps: "
        f"{result.pairs_per_s:.2f} pairs/s (repeats: {repeats}), "
        f"median step {result.median_step_s:.2f} s\n"
        f"          pair tokens {result.pair_tokens_per_s:,.0f}/s, encoder real tokens "
        f"{result.encoded_real_tokens_per_s:,.0f}/s, encoder padded tokens "
        f"{result.encoded_padded_tokens_per_s:,.0f}/s\n"
        f"          padded/real {result.padded_over_real:.2f}, pair tokens/encoded real "
        f"{result.pair_tokens_over_encoded:.2f} (dedup), model FLOPs "
        f"{result.model_gflop_per_pair:.1f} GFLOP/pair, {1000 * result.model_tflops_per_s:.1f} "
        f"GFLOP/s{mfu}, peak memory {result.peak_memory_gb:.2f} GiB ({result.memory_kind})"
    )


def select_measured(batches: list[dict], num_pairs: int, warmup: int) -> tuple[list, list]:
    """Warm-up batches (untimed), then whole batches until `num_pairs` pairs.

    The batches come shuffled, so the measured ones are a random draw of the sample's
    batches. When the sample is too small for separate warm-up batches (dry runs), the first
    measured batches serve as warm-up.
    """

    def take(candidates: list[dict]) -> list[dict]:
        chosen, count = [], 0
        for batch in candidates:
            if count >= num_pairs:
                break
            chosen.append(batch)
            count += len(batch["index_a"])
        return chosen if count >= num_pairs else []

    measured = take(batches[warmup:])
    if measured:
        return batches[:warmup], measured
    measured = take(batches)
    if not measured:
        pairs = sum(len(b["index_a"]) for b in batches)
        raise ValueError(f"the sample holds only {pairs} pairs; raise --sort_buffer")
    return measured[:warmup], measured
