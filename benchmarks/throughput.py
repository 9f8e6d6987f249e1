"""Training-step throughput of SE-CAI: our batching against a naive baseline, in one run.

Both run the same SECAI model, built from the trainer's configuration (LoRA on query/value,
focal loss, the trainer's AdamW), on the same pairs, sampled (seeded) from a real pair file
with its real lengths (cropped at 1,022):

* ours: token-budget batches from `ppi_dist.data.batching.TokenBatches` (length-sorted
  buffer, what training runs), ONE encoder call per step on the batch's distinct sequences
  packed several to a row (`ppi_dist.models.packing`), the model's `--encoder_attention`;
  the trainer's own step (`ppi_dist.training.step.train_step`) through its Accelerator
  set-up; bf16 autocast and activation checkpointing on GPU.
* baseline (`benchmarks.baseline`): fixed-size random batches, A and B each padded to their
  own longest and encoded in TWO encoder calls (no dedup), `--baseline_attn_implementation`
  (eager) in ESM-2; the same cross-attention and head afterwards, same precision and
  checkpointing as ours.

With the trainer's `--compile`, "ours+compile" is timed too: the same step on a copy of the
model (sharing its frozen weights) whose layers and pair path
`ppi_dist.models.compile.compile_model` compiled; its warm-up steps hold the compilation
and are timed and printed apart.

Warm-up steps are not timed. Each repeat times all measured pairs once per method (ours,
ours+compile and baseline alternate, so drift hits all); the medians over repeats are reported.

    python -m benchmarks.throughput                 # the shared 8M (slow on a CPU)
    python -m benchmarks.throughput --encoder_shape 650M --max_tokens 8192 16384 32768
    python -m benchmarks.throughput --encoder_shape 650M --max_tokens 65536 --compile --no_baseline
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
from dataclasses import asdict, dataclass

import torch

from benchmarks import core
from benchmarks.accounting import (
    Measurement,
    MethodResult,
    baseline_stats,
    our_stats,
    print_result,
    select_measured,
    summarise,
)
from benchmarks.baseline import BaselineStep, baseline_batches, pairs_of, transformers_attention
from benchmarks.flops import PEAK_TFLOPS, ModelShape
from ppi_dist.data.sequences import ESM2_MAX_RESIDUES
from ppi_dist.models.compile import compile_model, compiled_graphs, default_backend
from ppi_dist.models.secai import SECAI
from ppi_dist.training.config import TrainConfig

PEAK_DEFAULT_TFLOPS = PEAK_TFLOPS


@dataclass
class Method:
    """One way of running the training step on the budget's pairs, and its measurement."""

    measurement: Measurement
    step: Callable[[dict], object]
    warm: list[dict]
    measured: list[dict]
    attention: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext

    def warm_up(self, device: torch.device) -> float:
        with self.attention():
            return sum(core.time_steps(self.step, self.warm, device))

    def time(self, memory: core.PeakMemory, device: torch.device) -> None:
        with self.attention():
            memory.reset()
            self.measurement.repeats.append(core.time_steps(self.step, self.measured, device))
            peak = memory.peak_bytes()
        self.measurement.peak_bytes = max(self.measurement.peak_bytes, peak)


def compiled_twin(model: SECAI) -> tuple[SECAI, list[str]]:
    """A copy of `model` with `compile_model` applied (and the names it compiled): its own
    trainable weights (the same values), the frozen ones shared, so the encoder's weights are
    not held twice (peak memory stays comparable with eager runs)."""
    shared = {id(p): p for p in model.parameters() if not p.requires_grad}
    twin = copy.deepcopy(model, memo=shared)
    return twin, compile_model(twin)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=core.TRAINER_FLAGS + "\nWith --compile, ours+compile is timed beside ours.",
        formatter_class=argparse.RawTextHelpFormatter,
        allow_abbrev=False,
    )
    core.add_sample_flags(parser)
    parser.add_argument(
        "--num_pairs",
        type=int,
        default=24,
        help="pairs timed per repeat and method (whole batches: a few more)",
    )
    parser.add_argument(
        "--max_tokens",
        type=int,
        nargs="+",
        default=[16384],
        help="token budget(s) of our batches; several = a sweep on one model",
    )
    parser.add_argument("--baseline_batch_size", type=int, default=8)
    parser.add_argument("--no_baseline", dest="baseline", action="store_false")
    parser.add_argument("--baseline_attn_implementation", default="eager")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed steps per method, on its first batches"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--peak_tflops",
        type=float,
        default=None,
        help="peak for MFU (default: 989, H100 SXM / H200 dense bf16, on CUDA; none on CPU)",
    )
    core.add_run_flags(parser)
    args, flags = parser.parse_known_args(argv)
    device = torch.device(args.device)
    config = core.trainer_config(parser, flags, device)
    if args.peak_tflops is None and device.type == "cuda":
        args.peak_tflops = PEAK_DEFAULT_TFLOPS
    return args, config


@dataclass
class Steps:
    """The model, its FLOP shape, and the steps timed on it."""

    model: SECAI
    shape: ModelShape
    ours: core.TrainerStep
    compiled: core.TrainerStep | None  # ours on a compiled twin of the model (--compile)
    baseline: BaselineStep


def print_settings(args: argparse.Namespace, config: TrainConfig, device: torch.device) -> None:
    for line in core.machine_report(device):
        print(line)
    print("settings: " + json.dumps(vars(args)))
    # A shape's EsmConfig is long; its name says it.
    secai = asdict(config.model.secai_config()) | {"encoder_config": config.model.encoder_shape}
    print("model settings: " + json.dumps(secai))
    assumed = " (H100 SXM / H200 dense bf16 assumed)"
    assumed = assumed if args.peak_tflops == PEAK_DEFAULT_TFLOPS else ""
    print(f"peak for MFU: {args.peak_tflops or 'none'} TFLOP/s{assumed}")


def make_steps(args: argparse.Namespace, config: TrainConfig, device: torch.device) -> Steps:
    model = core.build_model(config, device)
    shape = ModelShape.of(model.config, model.encoder.config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    twin, names = compiled_twin(model) if config.model.compile else (None, [])
    # Ours runs through the trainer's Accelerator set-up and step; the baseline keeps its own
    # step, on the same model and AdamW state.
    accelerator = core.benchmark_accelerator(config, device)
    ours = core.trainer_step(model, config, accelerator)
    compiled = core.trainer_step(twin, config, accelerator) if twin is not None else None
    bf16 = core.mixed_precision(config, device) == "bf16"
    optimizer = ours.prepared.optimizer.optimizer
    baseline = BaselineStep(model, optimizer, config.optimization, device, bf16)
    print(
        f"model: encoder {core.encoder_label(config)} (d={shape.encoder.hidden}, "
        f"{shape.encoder.layers} layers), {sum(p.numel() for p in trainable):,} trainable of "
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


def our_methods(
    steps: Steps, warm: list[dict], measured: list[dict], max_tokens: int
) -> list[Method]:
    """Ours, and ours+compile with --compile, on whole batches of one budget."""
    stats = [our_stats(b, steps.shape) for b in measured]
    methods = [Method(Measurement("ours", stats, max_tokens), steps.ours, warm, measured)]
    if steps.compiled is not None:
        measurement = Measurement("ours+compile", stats, max_tokens)
        methods.append(Method(measurement, steps.compiled, warm, measured))
    return methods


def baseline_method(
    steps: Steps, measured: list[dict], args: argparse.Namespace, seed: int
) -> Method:
    """The baseline on the pairs of our measured batches, in its own random batches."""
    batches = baseline_batches(pairs_of(measured), args.baseline_batch_size, seed)
    stats = [baseline_stats(b, steps.shape) for b in batches]
    measurement = Measurement("baseline", stats, batch_size=args.baseline_batch_size)
    eager = functools.partial(
        transformers_attention, steps.model, args.baseline_attn_implementation
    )
    return Method(measurement, steps.baseline, batches[: args.warmup], batches, eager)


def time_methods(methods: list[Method], args: argparse.Namespace, memory: core.PeakMemory) -> int:
    """Warm every method up, then time them in turn, `args.repeats` times; returns the graphs
    compiled by the end of the warm-up."""
    device = memory.device
    for method in methods:
        before = compiled_graphs()
        seconds = method.warm_up(device)
        if method.measurement.name == "ours+compile":  # the compilation happens here
            print(
                f"ours+compile warm-up at max_tokens {method.measurement.max_tokens}: "
                f"{len(method.warm)} step(s) in {seconds:.1f} s, "
                f"{compiled_graphs() - before} graph(s) compiled"
            )
    graphs = compiled_graphs()
    for repeat in range(args.repeats):
        budget = methods[0].measurement.max_tokens
        print(
            f"  repeat {repeat + 1}/{args.repeats} (max_tokens {budget})...",
            file=sys.stderr,
            flush=True,
        )
        for method in methods:
            method.time(memory, device)
    return graphs


def run(args: argparse.Namespace, config: TrainConfig) -> list[MethodResult]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print_settings(args, config, device)
    pairs, sequences = core.sample_pairs(core.sample_from(args, config))
    lengths = [min(len(s), ESM2_MAX_RESIDUES) for s in sequences.values()]
    print(
        f"sample: {len(pairs)} pairs from {args.pairs}, {len(sequences)} proteins, "
        f"cropped length mean {statistics.mean(lengths):.0f}, "
        f"median {statistics.median(lengths):.0f}, max {max(lengths)}"
    )
    steps = make_steps(args, config, device)
    secai = steps.model.config
    facts = {
        "encoder": core.encoder_label(config),
        "device": args.device,
        "fixed_length": args.fixed_length,
        "bf16": steps.baseline.bf16,
        "activation_checkpointing": secai.activation_checkpointing,
        "attention": secai.encoder_attention,
        "cross_attention": secai.cross_attention_kernel,
    }
    memory = core.PeakMemory(device)
    results: list[MethodResult] = []
    baseline: MethodResult | None = None
    with core.sample_source(pairs, config.model.secai.max_residues) as source:
        for index, max_tokens in enumerate(args.max_tokens):
            batches = core.our_batches(source, max_tokens, config)
            warm, measured = select_measured(batches, args.num_pairs, args.warmup)
            # In the order they are timed within a repeat. The baseline runs once, on the
            # pairs of the first budget: a sweep compares every budget with the same baseline.
            methods = our_methods(steps, warm, measured, max_tokens)
            if args.baseline and index == 0:
                seed = config.optimization.seed
                methods.append(baseline_method(steps, measured, args, seed))
            graphs = time_methods(methods, args, memory)
            got = {
                m.measurement.name: summarise(m.measurement, memory.kind, args.peak_tflops)
                for m in methods
            }
            baseline = got.get("baseline", baseline)
            for name in ("baseline", "ours", "ours+compile"):
                if name in got:
                    print_result(got[name])
                    results.append(got[name])
                    core.append_json_line(args.json_out, {**facts, **asdict(got[name])})
            at = f"pairs/s at max_tokens {max_tokens}"
            if "ours+compile" in got:
                recompiled = compiled_graphs() - graphs  # compilation inside the timed steps
                warning = f" ({recompiled} graph(s) compiled while timed)" if recompiled else ""
                ratio = got["ours+compile"].pairs_per_s / got["ours"].pairs_per_s
                print(f"RATIO compiled/eager {at}: {ratio:.2f}x{warning}")
            if baseline is not None:
                ratio = got["ours"].pairs_per_s / baseline.pairs_per_s
                later = " (baseline timed on the first budget's pairs)" if index else ""
                print(f"RATIO ours/baseline {at}: {ratio:.2f}x{later}")
    return results


def main(argv: list[str] | None = None) -> None:
    run(*parse_args(argv))


if __name__ == "__main__":
    main()
