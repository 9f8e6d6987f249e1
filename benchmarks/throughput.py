"""Training-step throughput of SE-CAI: the trainer's own step on its token-budget batches
("ours") against the naive baseline (`benchmarks.baseline`) on the same pairs, alternating
within every repeat; with the trainer's --compile, ours on a compiled twin of the model too.

    python -m benchmarks.throughput
    python -m benchmarks.throughput --encoder_shape 650M --max_tokens 8192 16384 32768
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import statistics
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch

from benchmarks import core
from benchmarks.baseline import BaselineStep, baseline_batches, pairs_of, transformers_attention
from benchmarks.flops import PEAK_TFLOPS, ModelShape, StepFlops, secai_step_flops
from ppi_dist.data.sequences import ESM2_MAX_RESIDUES
from ppi_dist.models.compile import compile_model, compiled_graphs, default_backend
from ppi_dist.models.packing import encoder_tokens
from ppi_dist.models.secai import SECAI
from ppi_dist.training.config import TrainConfig


class BatchStats(NamedTuple):
    """What one batch holds and costs."""

    pairs: int
    pair_tokens: int
    encoded_real: int  # encoder tokens that are residues or special tokens
    encoded_padded: int  # encoder tokens including padding
    flops: StepFlops


def batch_stats(batch: dict, shape: ModelShape) -> BatchStats:
    """The stats of one of our batches (distinct sequences packed into rows) or of a baseline
    batch (A and B each padded to its own longest, two encoder calls)."""
    if "attention_mask" in batch:
        mask = batch["attention_mask"]
        lengths, width = mask.sum(dim=1), mask.shape[1]
        rows, pairs = encoder_tokens(mask) // width, len(batch["index_a"])
        pair_tokens = int(lengths[batch["index_a"]].sum() + lengths[batch["index_b"]].sum())
        flops = secai_step_flops(shape, [[width] * rows], [(width, width)] * pairs)
        return BatchStats(pairs, pair_tokens, int(lengths.sum()), rows * width, flops)
    mask_a, mask_b = batch["attention_mask_a"], batch["attention_mask_b"]
    pairs, width_a, width_b = mask_a.shape[0], mask_a.shape[1], mask_b.shape[1]
    calls = [[width_a] * pairs, [width_b] * pairs]
    flops = secai_step_flops(shape, calls, [(width_a, width_b)] * pairs)
    real = int(mask_a.sum() + mask_b.sum())
    return BatchStats(pairs, real, real, mask_a.numel() + mask_b.numel(), flops)


@dataclass
class Method:
    """One way of running the step on the budget's pairs, and its timed repeats."""

    name: str
    step: Callable[[dict], object]
    warm: list[dict]
    measured: list[dict]
    stats: list[BatchStats]
    max_tokens: int | None = None
    batch_size: int | None = None
    attention: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
    repeats: list[list[float]] = field(default_factory=list)
    peak_bytes: int = 0

    def warm_up(self, device: torch.device) -> float:
        with self.attention():
            return sum(core.time_steps(self.step, self.warm, device))

    def time(self, memory: core.PeakMemory) -> None:
        with self.attention():
            memory.reset()
            self.repeats.append(core.time_steps(self.step, self.measured, memory.device))
            self.peak_bytes = max(self.peak_bytes, memory.peak_bytes())

    def summary(self, memory_kind: str, peak_tflops: float | None) -> dict:
        """Rates over the median repeat; MFU and HFU against `peak_tflops` when given."""
        pairs = sum(s.pairs for s in self.stats)
        pair_tokens = sum(s.pair_tokens for s in self.stats)
        real = sum(s.encoded_real for s in self.stats)
        padded = sum(s.encoded_padded for s in self.stats)
        model = sum(s.flops.model for s in self.stats)
        executed = sum(s.flops.executed for s in self.stats)
        totals = [sum(seconds) for seconds in self.repeats]
        seconds = statistics.median(totals)
        peak = peak_tflops * 1e12 if peak_tflops else None
        return {
            "name": self.name,
            "max_tokens": self.max_tokens,
            "batch_size": self.batch_size,
            "steps": len(self.stats),
            "pairs": pairs,
            "pairs_per_s": pairs / seconds,
            "pair_tokens_per_s": pair_tokens / seconds,
            "encoded_real_tokens_per_s": real / seconds,
            "encoded_padded_tokens_per_s": padded / seconds,
            "padded_over_real": padded / real,
            "pair_tokens_over_encoded": pair_tokens / real,  # > 1: dedup saved encoder work
            "median_step_s": statistics.median(s for r in self.repeats for s in r),
            "model_gflop_per_pair": model / pairs / 1e9,
            "model_tflops_per_s": model / seconds / 1e12,
            "mfu": model / seconds / peak if peak else None,
            "hfu": executed / seconds / peak if peak else None,
            "peak_memory_gb": self.peak_bytes / 2**30,
            "memory_kind": memory_kind,
            "repeat_pairs_per_s": [pairs / t for t in totals],
        }


def print_result(r: dict) -> None:
    how = (
        f"max_tokens {r['max_tokens']}"
        if r["max_tokens"] is not None
        else f"batch_size {r['batch_size']}"
    )
    mfu = f"  MFU {100 * r['mfu']:.1f}% (HFU {100 * r['hfu']:.1f}%)" if r["mfu"] is not None else ""
    repeats = ", ".join(f"{x:.2f}" for x in r["repeat_pairs_per_s"])
    print(
        f"{r['name']:9s} [{how}] {r['pairs']} pairs in {r['steps']} steps: "
        f"{r['pairs_per_s']:.2f} pairs/s (repeats: {repeats}), "
        f"median step {r['median_step_s']:.2f} s\n"
        f"          pair tokens {r['pair_tokens_per_s']:,.0f}/s, encoder real tokens "
        f"{r['encoded_real_tokens_per_s']:,.0f}/s, encoder padded tokens "
        f"{r['encoded_padded_tokens_per_s']:,.0f}/s\n"
        f"          padded/real {r['padded_over_real']:.2f}, pair tokens/encoded real "
        f"{r['pair_tokens_over_encoded']:.2f} (dedup), model FLOPs "
        f"{r['model_gflop_per_pair']:.1f} GFLOP/pair, {1000 * r['model_tflops_per_s']:.1f} "
        f"GFLOP/s{mfu}, peak memory {r['peak_memory_gb']:.2f} GiB ({r['memory_kind']})"
    )


def select_measured(batches: list[dict], num_pairs: int, warmup: int) -> tuple[list, list]:
    """Warm-up batches, then whole batches until `num_pairs` pairs (the batches come
    shuffled); a sample too small for both warms up on the first measured batches."""

    def take(candidates: list[dict]) -> list[dict]:
        chosen, count = [], 0
        for batch in candidates:
            if count >= num_pairs:
                break
            chosen.append(batch)
            count += len(batch["index_a"])
        return chosen if count >= num_pairs else []

    if measured := take(batches[warmup:]):
        return batches[:warmup], measured
    if not (measured := take(batches)):
        pairs = sum(len(b["index_a"]) for b in batches)
        raise ValueError(f"the sample holds only {pairs} pairs; raise --sort_buffer")
    return measured[:warmup], measured


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=core.TRAINER_FLAGS + "\nWith --compile, ours+compile is timed beside ours.",
        formatter_class=argparse.RawTextHelpFormatter,
        allow_abbrev=False,
    )
    add = parser.add_argument
    core.add_sample_flags(parser)
    add("--num_pairs", type=int, default=24, help="pairs timed per repeat (whole batches)")
    add("--max_tokens", type=int, nargs="+", default=[16384], help="several: a sweep")
    add("--baseline_batch_size", type=int, default=8)
    add("--no_baseline", dest="baseline", action="store_false")
    add("--baseline_attn_implementation", default="eager")
    add("--warmup", type=int, default=1, help="untimed steps per method")
    add("--repeats", type=int, default=3)
    add("--peak_tflops", type=float, help="peak for MFU (default on CUDA: 989, dense bf16)")
    core.add_run_flags(parser)
    args, flags = parser.parse_known_args(argv)
    device = torch.device(args.device)
    config = core.trainer_config(parser, flags, device)
    if args.peak_tflops is None and device.type == "cuda":
        args.peak_tflops = PEAK_TFLOPS
    return args, config


def compiled_twin(model: SECAI) -> tuple[SECAI, list[str]]:
    """A copy of `model` through `compile_model`, sharing its frozen weights (so peak memory
    stays comparable with eager runs), and the names compiled."""
    shared = {id(p): p for p in model.parameters() if not p.requires_grad}
    twin = copy.deepcopy(model, memo=shared)
    return twin, compile_model(twin)


@dataclass
class Steps:
    model: SECAI
    shape: ModelShape
    ours: core.TrainerStep
    compiled: core.TrainerStep | None  # ours on a compiled twin (--compile)
    baseline: BaselineStep


def make_steps(args: argparse.Namespace, config: TrainConfig, device: torch.device) -> Steps:
    """Ours through the trainer's set-up and step; the baseline on the same model and AdamW."""
    model = core.build_model(config, device)
    shape = ModelShape.of(model.config, model.encoder.config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    twin, names = compiled_twin(model) if config.model.compile else (None, [])
    accelerator = core.benchmark_accelerator(config, device)
    ours = core.trainer_step(model, config, accelerator)
    compiled = core.trainer_step(twin, config, accelerator) if twin is not None else None
    bf16 = core.mixed_precision(config, device) == "bf16"
    baseline = BaselineStep(
        model, ours.prepared.optimizer.optimizer, config.optimization, device, bf16
    )
    print(
        f"model: encoder {core.encoder_label(config)} (d={shape.encoder.hidden}, "
        f"{shape.encoder.layers} layers), {trainable:,} trainable of "
        f"{sum(p.numel() for p in model.parameters()):,} parameters; ours attention "
        f"{model.config.encoder_attention}, baseline attention "
        f"{args.baseline_attn_implementation}; bf16 {bf16}, activation checkpointing "
        f"{model.config.activation_checkpointing}"
    )
    if compiled is not None:
        shown = names if len(names) < 4 else [names[0], "...", *names[-2:]]
        print(
            f"ours+compile: {len(names)} modules compiled ({', '.join(shown)}), backend "
            f"{default_backend()}, dynamic shapes"
        )
    return Steps(model, shape, ours, compiled, baseline)


def methods_of(steps: Steps, batches: list[dict], args, max_tokens: int, first: bool) -> list:
    """Ours (and ours+compile) on whole batches of one budget; the baseline, on the first
    budget only (a sweep compares every budget with it), on the same pairs in its batches."""
    warm, measured = select_measured(batches, args.num_pairs, args.warmup)
    stats = [batch_stats(b, steps.shape) for b in measured]
    methods = [Method("ours", steps.ours, warm, measured, stats, max_tokens)]
    if steps.compiled is not None:
        methods.append(Method("ours+compile", steps.compiled, warm, measured, stats, max_tokens))
    if args.baseline and first:
        seed = steps.ours.optimization.seed
        naive = baseline_batches(pairs_of(measured), args.baseline_batch_size, seed)
        eager = functools.partial(
            transformers_attention, steps.model, args.baseline_attn_implementation
        )
        stats = [batch_stats(b, steps.shape) for b in naive]
        warm = naive[: args.warmup]
        size = args.baseline_batch_size
        methods.append(Method("baseline", steps.baseline, warm, naive, stats, None, size, eager))
    return methods


def time_methods(methods: list[Method], args: argparse.Namespace, memory: core.PeakMemory) -> int:
    """Warm every method up, then time them in turn per repeat; the graphs compiled by then."""
    for method in methods:
        before = compiled_graphs()
        seconds = method.warm_up(memory.device)
        if method.name == "ours+compile":  # the compilation happens here
            print(
                f"ours+compile warm-up at max_tokens {method.max_tokens}: {len(method.warm)} "
                f"step(s) in {seconds:.1f} s, {compiled_graphs() - before} graph(s) compiled"
            )
    graphs = compiled_graphs()
    for repeat in range(args.repeats):
        budget = methods[0].max_tokens
        print(f"  repeat {repeat + 1}/{args.repeats} (max_tokens {budget})...", file=sys.stderr)
        for method in methods:
            method.time(memory)
    return graphs


def run(args: argparse.Namespace, config: TrainConfig) -> list[dict]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print("\n".join(core.machine_report(device)))
    print("settings: " + json.dumps(vars(args)))
    secai = asdict(config.model.secai_config()) | {"encoder_config": config.model.encoder_shape}
    print("model settings: " + json.dumps(secai))
    assumed = " (H100 SXM / H200 dense bf16 assumed)" if args.peak_tflops == PEAK_TFLOPS else ""
    print(f"peak for MFU: {args.peak_tflops or 'none'} TFLOP/s{assumed}")
    pairs, sequences = core.sample_pairs(core.sample_from(args, config))
    lengths = [min(len(s), ESM2_MAX_RESIDUES) for s in sequences.values()]
    print(
        f"sample: {len(pairs)} pairs from {args.pairs}, {len(sequences)} proteins, "
        f"cropped length mean {statistics.mean(lengths):.0f}, "
        f"median {statistics.median(lengths):.0f}, max {max(lengths)}"
    )
    steps = make_steps(args, config, device)
    built = steps.model.config
    facts = {
        "encoder": core.encoder_label(config),
        "device": args.device,
        "fixed_length": args.fixed_length,
        "bf16": steps.baseline.bf16,
        "activation_checkpointing": built.activation_checkpointing,
        "attention": built.encoder_attention,
        "cross_attention": built.cross_attention_kernel,
    }
    memory = core.PeakMemory(device)
    results, baseline = [], None
    with core.sample_source(pairs, config.model.secai.max_residues) as source:
        for index, max_tokens in enumerate(args.max_tokens):
            batches = core.our_batches(source, max_tokens, config)
            methods = methods_of(steps, batches, args, max_tokens, index == 0)
            graphs = time_methods(methods, args, memory)
            got = {m.name: m.summary(memory.kind, args.peak_tflops) for m in methods}
            baseline = got.get("baseline", baseline)
            for name in ("baseline", "ours", "ours+compile"):
                if name in got:
                    print_result(got[name])
                    results.append(got[name])
                    core.append_json_line(args.json_out, {**facts, **got[name]})
            at = f"pairs/s at max_tokens {max_tokens}"
            if "ours+compile" in got:
                recompiled = compiled_graphs() - graphs  # compilation inside the timed steps
                warning = f" ({recompiled} graph(s) compiled while timed)" if recompiled else ""
                ratio = got["ours+compile"]["pairs_per_s"] / got["ours"]["pairs_per_s"]
                print(f"RATIO compiled/eager {at}: {ratio:.2f}x{warning}")
            if baseline is not None:
                ratio = got["ours"]["pairs_per_s"] / baseline["pairs_per_s"]
                later = " (baseline timed on the first budget's pairs)" if index else ""
                print(f"RATIO ours/baseline {at}: {ratio:.2f}x{later}")
    return results


def main(argv: list[str] | None = None) -> None:
    run(*parse_args(argv))


if __name__ == "__main__":
    main()
