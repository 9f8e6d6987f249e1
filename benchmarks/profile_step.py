"""Where a training step's time goes: `torch.profiler` over the trainer's own step
(`core.trainer_step`) on sampled batches; frozen (`--freeze_encoder true`): cache-row
batches from a device-resident stand-in cache. After --warmup untimed and --timed_steps
timed steps, --steps profiled: host/device split, top ops or kernels, category shares,
syncs, operators dispatched per phase, and a `PROFILE` line (also --json_out).

    python -m benchmarks.profile_step --dry                           # CPU, tiny, seconds
    python -m benchmarks.profile_step --encoder_shape 650M --max_tokens 65536
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from benchmarks import core
from benchmarks.tables import markdown_table, shorten
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.models.compile import compile_model, default_backend
from ppi_dist.training.config import TrainConfig

STEP_RANGE, TRAIN_STEP_RANGE, PREPARE_RANGE = "profile_step", "train_step", "prepare_batch"
PHASES = ("forward", "backward", "optimizer")
# Host calls that wait for the device, and scalar reads (a sync when the tensor is on a GPU).
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
SCALAR_READS = ("aten::_local_scalar_dense", "aten::nonzero")

# By name pattern, first match wins (attention before matmul: its kernels say "cutlass").
CATEGORIES = (
    ("compiled graph", r"compiledfxgraph|compiledfunction"),  # CPU: the fused code runs inside
    ("attention", r"attention|fmha|flash|sdpa|_efficient_attention"),
    ("matmul", r"gemm|nvjet|xmma|cutlass|cublas|triton_tem|aten::(mm|addmm|bmm|matmul|linear)$"),
    ("optimizer", r"adam|multi_tensor_apply|_foreach|optimizer|clip_grad|lpnorm"),
    ("copy", r"^memcpy|^memset|aten::(copy_|_to_copy|to)$"),
    ("norm/reduction", r"norm|reduce|softmax|triton_(per|red)|aten::(sum|mean|amax|max|var)"),
    (
        "elementwise",
        r"elementwise|vectorized|unrolled|triton_poi|index|scatter|gather|fill|cat"
        r"|dropout|bernoulli|^aten::",
    ),
)


def category(name: str) -> str:
    if name in (STEP_RANGE, TRAIN_STEP_RANGE, PREPARE_RANGE) or name.startswith("ProfilerStep"):
        return "python"  # self time of our ranges: the host's Python between ops
    lowered = name.lower()
    for label, pattern in CATEGORIES:
        if re.search(pattern, lowered):
            return label
    return "other"


@dataclass(frozen=True)
class Event:
    """One profiler event (microseconds)."""

    name: str
    on_device: bool  # a kernel, copy or memset on the GPU; else a CPU op or range
    start: float
    end: float
    self_us: float  # device: duration; CPU: time not spent in CPU children
    dispatched: bool = False  # an aten op called from outside any aten op: one dispatch
    phase: str = ""  # "backward" (autograd's engine), "optimizer" (Optimizer.*) or unknown


def _ancestors(e) -> list[str]:
    names, parent = [], getattr(e, "cpu_parent", None)
    while parent is not None:
        names.append(parent.name)
        parent = getattr(parent, "cpu_parent", None)
    return names


def events_of(prof: profile) -> list[Event]:
    events = []
    for e in prof.events():
        on_device = e.device_type != DeviceType.CPU
        if on_device and getattr(e, "is_user_annotation", False):
            continue  # our ranges drawn on the GPU timeline: they span kernels and gaps
        start, end = e.time_range.start, e.time_range.end
        self_us = end - start if on_device else e.self_cpu_time_total
        above = [] if on_device else _ancestors(e)
        dispatched = e.name.startswith("aten::") and not any(a.startswith("aten::") for a in above)
        phase = ""
        if any(a.startswith("autograd::engine::evaluate_function") for a in above):
            phase = "backward"
        elif any(a.startswith("Optimizer.") for a in above):
            phase = "optimizer"
        events.append(Event(e.name, on_device, start, end, self_us, dispatched, phase))
    return events


def ops_per_phase(events: list[Event], inside: list[tuple[float, float]], steps: int) -> dict:
    """Operators dispatched per step inside train_step: forward (before the backward
    starts), backward (autograd's engine), optimizer (what follows the backward)."""
    counts = dict.fromkeys(PHASES, 0.0)
    for start, end in inside:
        mine = [e for e in events if not e.on_device and start <= e.start < end]
        backward = [e.start for e in mine if e.phase == "backward"]
        backward_from = min(backward) if backward else end
        for e in mine:
            if not e.dispatched:
                continue
            phase = e.phase or ("forward" if e.start < backward_from else "optimizer")
            counts[phase] += 1 / steps
    return counts


def merged_length(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total


@dataclass
class ProfileSummary:
    encoder: str
    mode: str  # "lora" | "frozen"
    compiled: bool
    device: str
    max_tokens: int
    steps: int  # profiled steps
    pairs_per_step: float
    wall_s: float  # median wall time of the unprofiled timed steps
    pairs_per_s: float
    profiled_wall_s: float  # mean over profiled steps (the profiler adds host overhead)
    host_s: float  # until train_step returned, less its sync waits
    sync_wait_s: float  # host waiting inside train_step's synchronisations
    drain_s: float  # after train_step returned, waiting for the device to finish
    device_busy_s: float | None  # merged kernel and copy intervals; None on the CPU
    syncs_per_step: dict[str, float]  # SYNC_CALLS and SCALAR_READS inside train_step
    ops_per_step: dict[str, float]  # aten ops dispatched inside train_step, by phase
    kernels_per_step: float | None  # device kernels, copies and memsets; None on the CPU
    prepare_s: float  # the loop's batch preparation (device copy, cached states gathered)
    shares: dict[str, float]  # category -> share of device (CPU: self CPU) time
    top: list[tuple[str, float, float, float, str]]  # name, calls/step, ms/step, share, category


def calls_and_time(events: Iterable[Event]) -> dict[str, list[float]]:
    """Name -> [calls, self microseconds]."""
    by_name: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for e in events:
        by_name[e.name][0] += 1
        by_name[e.name][1] += e.self_us
    return by_name


def summarise(events: list[Event], steps: int, on_cuda: bool) -> dict:
    """Per-step timings, syncs, operators, category shares and the top table."""
    ranges = {
        name: [(e.start, e.end) for e in events if e.name == name and not e.on_device]
        for name in (STEP_RANGE, TRAIN_STEP_RANGE)
    }
    inside = ranges[TRAIN_STEP_RANGE]

    def in_train_step(e: Event) -> bool:
        return any(start <= e.start < end for start, end in inside)

    syncs = [e for e in events if not e.on_device and e.name in SYNC_CALLS + SCALAR_READS]
    syncs = [e for e in syncs if in_train_step(e)]
    counts = defaultdict(float)
    for e in syncs:
        counts[e.name] += 1 / steps
    wait_us = sum(e.end - e.start for e in syncs if e.name in SYNC_CALLS)
    wall_us = sum(end - start for start, end in ranges[STEP_RANGE])
    train_us = sum(end - start for start, end in inside)

    # Device time on a GPU; on the CPU, self CPU time of every op and range.
    prepare_us = sum(e.end - e.start for e in events if e.name == PREPARE_RANGE and not e.on_device)
    timed = [e for e in events if e.on_device] if on_cuda else [e for e in events if e.self_us > 0]
    busy = merged_length([(e.start, e.end) for e in timed]) if on_cuda else None
    by_name = calls_and_time(timed)
    total = sum(us for _, us in by_name.values()) or 1.0
    shares = defaultdict(float)
    for name, (_, us) in by_name.items():
        shares[category(name)] += us / total
    top = sorted(by_name.items(), key=lambda item: -item[1][1])
    return {
        "profiled_wall_s": wall_us / steps / 1e6,
        "host_s": (train_us - wait_us) / steps / 1e6,
        "sync_wait_s": wait_us / steps / 1e6,
        "drain_s": (wall_us - train_us) / steps / 1e6,
        "device_busy_s": busy / steps / 1e6 if busy is not None else None,
        "syncs_per_step": dict(sorted(counts.items())),
        "ops_per_step": ops_per_phase(events, inside, steps),
        "kernels_per_step": sum(e.on_device for e in events) / steps if on_cuda else None,
        "prepare_s": prepare_us / steps / 1e6,
        "shares": dict(sorted(shares.items(), key=lambda item: -item[1])),
        "top": [
            (name, calls / steps, us / steps / 1e3, us / total, category(name))
            for name, (calls, us) in top
        ],
    }


def host_top(events: list[Event], steps: int, count: int) -> list[tuple[str, float, float]]:
    """CPU ops and ranges by self CPU time: (name, calls/step, ms/step)."""
    by_name = calls_and_time(e for e in events if not e.on_device)
    ranked = sorted(by_name.items(), key=lambda item: -item[1][1])[:count]
    return [(name, calls / steps, us / steps / 1e3) for name, (calls, us) in ranked]


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=core.TRAINER_FLAGS,
        formatter_class=argparse.RawTextHelpFormatter,
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("--dry", action="store_true", help="CPU, tiny shape, 60 residues: seconds")
    core.add_sample_flags(parser)
    add("--warmup", type=int, default=2, help="untimed steps (compilation too)")
    add("--timed_steps", type=int, default=3, help="timed without the profiler")
    add("--steps", type=int, default=3, help="profiled steps")
    add("--top", type=int, default=20, help="rows of the top table")
    add("--trace", help="write a Chrome trace (chrome://tracing) here")
    core.add_run_flags(parser)
    args, flags = parser.parse_known_args(argv)
    if args.dry:  # after the flags given: the dry run's shape and sizes win
        args.device, args.fixed_length = "cpu", 60
        flags = [*flags, "--encoder_shape", "tiny", "--sort_buffer", "64"]
    config = core.trainer_config(parser, flags, torch.device(args.device))
    if args.dry:
        config.data.max_tokens = min(config.data.max_tokens, 2048)
    return args, config


def make_batches(
    args: argparse.Namespace, config: TrainConfig, hidden: int, device: torch.device
) -> tuple[list[dict], EmbeddingCache | None]:
    """Batches for every step (cycled), and a frozen step's stand-in cache on the device."""
    pairs, _ = core.sample_pairs(core.sample_from(args, config))
    max_tokens, cache = config.data.max_tokens, None
    needed = args.warmup + args.timed_steps + 1 + args.steps  # + the profiler's warm-up
    with core.sample_source(pairs, config.model.secai.max_residues) as source:
        if config.model.secai.freeze_encoder:
            cache = core.stand_in_cache(source, hidden)
            cache.keep_on(device)
            batches = core.our_batches(source, max_tokens, config, cache.index)
        else:
            batches = core.our_batches(source, max_tokens, config)
    return list(itertools.islice(itertools.cycle(batches), needed)), cache


def run(args: argparse.Namespace, config: TrainConfig) -> ProfileSummary:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    print("\n".join(core.machine_report(device)))
    secai = config.model.secai
    mode = "frozen" if secai.freeze_encoder else "lora"
    model = core.build_model(config, device)
    if config.model.compile:
        names = compile_model(model)
        print(f"compiled: {len(names)} modules, backend {default_backend()}, dynamic shapes")
    accelerator = core.benchmark_accelerator(config, device)
    hidden = model.encoder.config.hidden_size
    batches, cache = make_batches(args, config, hidden, device)
    step = core.trainer_step(model, config, accelerator, cache)
    max_tokens = config.data.max_tokens
    print(
        f"step: encoder {core.encoder_label(config)}, {mode}, compile {config.model.compile}, "
        f"max_tokens {max_tokens}, bf16 {core.mixed_precision(config, device) == 'bf16'}, "
        f"activation checkpointing {secai.activation_checkpointing}, attention "
        f"{secai.encoder_attention}; {args.warmup} warm-up, {args.timed_steps} timed, "
        f"{args.steps} profiled steps"
        + "; cache-row batches, budget in pair tokens, zero states kept on the device"
        * secai.freeze_encoder
    )

    warm, rest = batches[: args.warmup], batches[args.warmup :]
    timed, profiled = rest[: args.timed_steps], rest[args.timed_steps :]
    start = time.perf_counter()
    core.time_steps(step, warm, device)
    print(f"warm-up: {len(warm)} step(s) in {time.perf_counter() - start:.1f} s")
    seconds = core.time_steps(step, timed, device)
    pairs = statistics.mean(len(b["index_a"]) for b in timed)
    events = profile_steps(step, profiled, args, device)
    wall = statistics.median(seconds)
    facts = (core.encoder_label(config), mode, config.model.compile, args.device, max_tokens)
    counts = (args.steps, pairs, wall, pairs / wall)
    summary = ProfileSummary(*facts, *counts, **summarise(events, args.steps, on_cuda))
    report(summary, host_top(events, args.steps, 10 if on_cuda else 0), args.top)
    core.append_json_line(args.json_out, asdict(summary))
    return summary


def profile_steps(
    step: core.TrainerStep, batches: list[dict], args: argparse.Namespace, device: torch.device
) -> list[Event]:
    """The events of `args.steps` steps after one profiler warm-up step, each in our ranges
    until the device is idle again."""
    on_cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    plan = schedule(wait=0, warmup=1, active=args.steps, repeat=1)
    with profile(activities=activities, schedule=plan) as prof:
        for batch in batches:
            with record_function(STEP_RANGE):
                with record_function(PREPARE_RANGE):
                    prepared = step.prepare(batch)
                with record_function(TRAIN_STEP_RANGE):
                    step.train(prepared)
                if on_cuda:
                    torch.cuda.synchronize(device)
            prof.step()
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"chrome trace: {args.trace}")
    return events_of(prof)


def report(summary: ProfileSummary, host_rows: list[tuple], top: int) -> None:
    s = summary
    print(
        f"per step: {s.wall_s:.3f} s wall (median of the unprofiled steps), "
        f"{s.pairs_per_step:.1f} pairs, {s.pairs_per_s:.1f} pairs/s"
    )
    print(
        f"profiled steps (mean of {s.steps}): {s.profiled_wall_s:.3f} s wall = host "
        f"{s.host_s:.3f} s in train_step + {s.sync_wait_s:.3f} s waiting in its syncs + "
        f"{s.drain_s:.3f} s waiting for the device to finish"
    )
    if s.device_busy_s is None:
        print("device: none (CPU run: all of it is host time)")
    else:
        idle = max(s.profiled_wall_s - s.device_busy_s, 0.0)
        print(
            f"device: busy {s.device_busy_s:.3f} s per step "
            f"({100 * s.device_busy_s / s.profiled_wall_s:.0f}% of the wall), idle "
            f"{idle:.3f} s (waiting for the host)"
        )
    ops = ", ".join(f"{phase} {count:g}" for phase, count in s.ops_per_step.items())
    kernels = f"; {s.kernels_per_step:g} device kernels/copies" if s.kernels_per_step else ""
    print(f"operators dispatched per step: {ops} (total {sum(s.ops_per_step.values()):g}){kernels}")
    print(
        f"host outside train_step, ms per step: prepare_batch {1e3 * s.prepare_s:.2f} "
        "(device copy / cached states, side swap)"
    )
    syncs = ", ".join(f"{name} {count:g}" for name, count in s.syncs_per_step.items())
    print(
        f"synchronisations and scalar reads per step inside train_step: {syncs or 'none'}"
        + ("" if s.device_busy_s is not None else " (CPU run: none of them waits)")
    )
    what = "self device time (kernels, copies)" if s.device_busy_s is not None else "self CPU time"
    shares = ", ".join(f"{name} {100 * share:.1f}%" for name, share in s.shares.items())
    print(f"shares of {what}: {shares}")
    print(f"top {top} by {what}, per step:")
    rows = [
        (shorten(name), f"{calls:g}", f"{ms:.3f}", f"{100 * share:.1f}%", kind)
        for name, calls, ms, share, kind in s.top[:top]
    ]
    print("\n".join(markdown_table(("name", "calls", "ms", "share", "category"), rows)))
    if host_rows:
        print("host: top CPU ops and ranges by self CPU time, per step:")
        rows = [(shorten(name), f"{calls:g}", f"{ms:.3f}") for name, calls, ms in host_rows]
        print("\n".join(markdown_table(("name", "calls", "ms"), rows)))
    shares = " ".join(f"{name}={100 * share:.1f}%" for name, share in s.shares.items())
    busy = f"{s.device_busy_s:.4f}" if s.device_busy_s is not None else "-"
    count = sum(n for name, n in s.syncs_per_step.items() if name in SYNC_CALLS)
    syncs = f"{count:g}" if s.device_busy_s is not None else "-"
    reads = sum(n for name, n in s.syncs_per_step.items() if name in SCALAR_READS)
    print(
        f"PROFILE encoder={s.encoder} mode={s.mode} compile={s.compiled} "
        f"max_tokens={s.max_tokens} wall_s={s.wall_s:.4f} pairs_per_s={s.pairs_per_s:.2f} "
        f"host_s={s.host_s:.4f} sync_wait_s={s.sync_wait_s:.4f} drain_s={s.drain_s:.4f} "
        f"device_busy_s={busy} syncs={syncs} scalar_reads={reads:g} "
        f"ops={sum(s.ops_per_step.values()):g} "
        + " ".join(f"ops_{phase}={count:g}" for phase, count in s.ops_per_step.items())
        + f" prepare_s={s.prepare_s:.4f} {shares}"
    )


def main(argv: list[str] | None = None) -> None:
    run(*parse_args(argv))


if __name__ == "__main__":
    main()
