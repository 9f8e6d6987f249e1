"""Where a training step's time goes: `torch.profiler` over the trainer's own step.

The step is `ppi_dist.train.train_step` with the trainer's optimizer (`make_optimizer`: fused
AdamW on a GPU) and Accelerator set-up, and the loop's own device copy, on batches of a
Bernett sample built as throughput.py builds them (its helpers: the same sample, model and
token-budget batches). Frozen mode (`--freeze_encoder`) runs the frozen trainer's input
path: cache-row batches (`PairBatches(cache_index=...)`, the budget in pair tokens) and
`with_cached_states` gathering from a device-resident embedding cache of the sample's
proteins at their real lengths, with zero states (data_loader.py's stand-in: the kernels'
work does not depend on the values).

After `--warmup` untimed steps (the compilation too, with `--compile`), `--timed_steps` steps
are timed without the profiler, then `--steps` are profiled (after one profiler warm-up
step). Printed: machine and versions; per-step wall time, split into the host's part (until
`train_step` returns, less its waits in synchronisations) and the wait for the device to
drain, and the device's busy time (kernel and copy intervals merged); the top ops or kernels
by self device time (self CPU time on the CPU); the shares of attention, matmul, optimizer,
elementwise, norm/reduction and the rest (by name pattern); the host-device synchronisations
per step; and a `PROFILE` summary line (also `--json_out`). `--trace` writes a Chrome trace.

    python benchmarks/profile_step.py --dry                           # CPU, tiny, seconds
    python benchmarks/profile_step.py --encoder 650M-shape --max_tokens 65536
    python benchmarks/profile_step.py --encoder 8M --freeze_encoder --max_tokens 65536
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function, schedule

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: `python benchmarks/profile_step.py`
    sys.path.insert(0, str(REPO))

from benchmarks.data_loader import stand_in_cache  # noqa: E402
from benchmarks.throughput import (  # noqa: E402
    DEFAULT_FASTA,
    DEFAULT_PAIRS,
    Settings,
    build_model,
    machine_report,
    our_batches,
    sample_pairs,
    write_pair_files,
)
from ppi_dist.config import TrainConfig  # noqa: E402
from ppi_dist.data import PairBatches, PairSource  # noqa: E402
from ppi_dist.embeddings import with_cached_states  # noqa: E402
from ppi_dist.model import SECAI  # noqa: E402
from ppi_dist.speed import compile_model, default_backend  # noqa: E402
from ppi_dist.train import make_optimizer, train_step  # noqa: E402

STEP_RANGE, TRAIN_STEP_RANGE = "profile_step", "train_step"
# Host calls that wait for the device: `.item()`, `.tolist()`, `nonzero` of a CUDA tensor
# end in one of them. Scalar reads are counted too, on any device: each is a sync when its
# tensor is on the GPU (on the CPU, non-fused AdamW reads each parameter's step count).
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
SCALAR_READS = ("aten::_local_scalar_dense", "aten::nonzero")

# Categories by name pattern, first match wins: kernels (cuDNN/CUTLASS/cuBLAS/triton names)
# and aten ops alike. Attention before matmul: attention kernels also say "cutlass".
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
    if name in (STEP_RANGE, TRAIN_STEP_RANGE) or name.startswith("ProfilerStep"):
        return "python"  # self time of our ranges: the host's Python between ops
    lowered = name.lower()
    for label, pattern in CATEGORIES:
        if re.search(pattern, lowered):
            return label
    return "other"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """One profiler event, reduced to what the summary needs (microseconds)."""

    name: str
    on_device: bool  # a kernel, copy or memset on the GPU; else a CPU op or range
    start: float
    end: float
    self_us: float  # device: duration; CPU: time not spent in CPU children


def events_of(prof: profile) -> list[Event]:
    events = []
    for e in prof.events():
        on_device = e.device_type != DeviceType.CPU
        if on_device and getattr(e, "is_user_annotation", False):
            continue  # our ranges drawn on the GPU timeline: they span kernels and gaps
        start, end = e.time_range.start, e.time_range.end
        self_us = end - start if on_device else e.self_cpu_time_total
        events.append(Event(e.name, on_device, start, end, self_us))
    return events


def merged_length(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of intervals (overlapping kernels on streams count once)."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
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
    shares: dict[str, float]  # category -> share of device (CPU: self CPU) time
    top: list[tuple[str, float, float, float, str]]  # name, calls/step, ms/step, share, category


def summarise(events: list[Event], steps: int, on_cuda: bool) -> dict:
    """Per-step timings, syncs, category shares and the top table from the events."""
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
    timed = [e for e in events if e.on_device] if on_cuda else [e for e in events if e.self_us > 0]
    busy = merged_length([(e.start, e.end) for e in timed]) if on_cuda else None
    by_name: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for e in timed:
        by_name[e.name][0] += 1
        by_name[e.name][1] += e.self_us
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
        "shares": dict(sorted(shares.items(), key=lambda item: -item[1])),
        "top": [
            (name, calls / steps, us / steps / 1e3, us / total, category(name))
            for name, (calls, us) in top
        ],
    }


def host_top(events: list[Event], steps: int, count: int) -> list[tuple[str, float, float]]:
    """CPU ops and ranges by self CPU time: (name, calls/step, ms/step)."""
    by_name: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for e in events:
        if not e.on_device:
            by_name[e.name][0] += 1
            by_name[e.name][1] += e.self_us
    ranked = sorted(by_name.items(), key=lambda item: -item[1][1])[:count]
    return [(name, calls / steps, us / steps / 1e3) for name, (calls, us) in ranked]


# --------------------------------------------------------------------------- batches


# --------------------------------------------------------------------------- run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dry", action="store_true", help="CPU, tiny shape, 60 residues: seconds")
    p.add_argument("--encoder", default="8M", help="tiny | 8M | 650M-shape | an ESM-2 path")
    p.add_argument("--freeze_encoder", action="store_true", help="frozen encoder: cached states")
    p.add_argument("--compile", action="store_true", help="ppi_dist.speed.compile_model first")
    p.add_argument("--pairs", default=str(DEFAULT_PAIRS))
    p.add_argument("--fasta", default=str(DEFAULT_FASTA))
    p.add_argument("--fixed_length", type=int, default=None)
    p.add_argument(
        "--max_tokens",
        type=int,
        default=16384,
        help="the trainer's: encoder tokens (LoRA), pair tokens (frozen)",
    )
    p.add_argument("--sort_buffer", type=int, default=4096)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation too)")
    p.add_argument("--timed_steps", type=int, default=3, help="timed without the profiler")
    p.add_argument("--steps", type=int, default=3, help="profiled steps")
    p.add_argument("--top", type=int, default=20, help="rows of the top table")
    p.add_argument("--device", default="cuda" if gpu else "cpu")
    p.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=None, help="default: on for CUDA"
    )
    p.add_argument(
        "--activation_checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: on for CUDA (LoRA)",
    )
    p.add_argument("--attn_implementation", default="sdpa")
    p.add_argument("--lora_r", type=int, default=8)
    p.add_argument("--cross_attention_heads", type=int, default=8)
    p.add_argument("--head_hidden", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--trace", default=None, help="write a Chrome trace (chrome://tracing) here")
    p.add_argument("--json_out", default=None, help="append the summary as one JSON line")
    args = p.parse_args(argv)
    if args.dry:
        args.encoder, args.device, args.fixed_length = "tiny", "cpu", 60
        args.sort_buffer, args.max_tokens = 64, min(args.max_tokens, 2048)
    cuda = args.device.startswith("cuda")
    args.bf16 = cuda if args.bf16 is None else args.bf16
    if args.activation_checkpointing is None:
        args.activation_checkpointing = cuda and not args.freeze_encoder
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    """throughput.py's settings for the same model and batches."""
    return Settings(
        encoder=args.encoder,
        pairs=args.pairs,
        fasta=args.fasta,
        fixed_length=args.fixed_length,
        sort_buffer=args.sort_buffer,
        max_tokens=[args.max_tokens],
        seed=args.seed,
        device=args.device,
        bf16=args.bf16,
        activation_checkpointing=args.activation_checkpointing,
        attn_implementation=args.attn_implementation,
        lora_r=args.lora_r,
        cross_attention_heads=args.cross_attention_heads,
        head_hidden=args.head_hidden,
        freeze_encoder=args.freeze_encoder,
    )


Prepare = Callable[[dict], dict]  # a loader batch -> the batch train_step gets


def make_batches(
    args: argparse.Namespace, model: SECAI, device: torch.device
) -> tuple[list[dict], Prepare]:
    """Enough batches for every warm-up, timed and profiled step (cycled when too few), and
    what the trainer's loop does to each before `train_step`."""
    pairs, sequences = sample_pairs(
        Path(args.pairs), Path(args.fasta), args.sort_buffer, args.seed, args.fixed_length
    )
    with tempfile.TemporaryDirectory() as tmp:
        pair_path, fasta_path = write_pair_files(Path(tmp), pairs, sequences)
        if args.freeze_encoder:
            source = PairSource(pair_path, fasta=fasta_path)
            source.validate()  # reads the FASTA: the cache holds its proteins
            cache = stand_in_cache(source, model.encoder.config.hidden_size)
            cache.keep_on(device)  # as the trainer keeps it on a GPU
            batches = list(
                PairBatches(
                    source,
                    seed=args.seed,
                    training=True,
                    max_tokens=args.max_tokens,
                    sort_buffer=args.sort_buffer,
                    cache_index=cache.index,
                )
            )

            def prepare(batch: dict) -> dict:
                return with_cached_states(batch, cache, device)
        else:
            batches = our_batches(
                pair_path, fasta_path, args.max_tokens, args.seed, args.sort_buffer
            )

            def prepare(batch: dict) -> dict:
                return {
                    k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                    for k, v in batch.items()
                }

    needed = args.warmup + args.timed_steps + 1 + args.steps  # + the profiler's warm-up
    return list(itertools.islice(itertools.cycle(batches), needed)), prepare


def time_steps(model, optimizer, accelerator, config, batches, prepare, device) -> list[float]:
    """Seconds of each step as the trainer's loop runs it: prepare, `train_step`."""
    seconds = []
    for batch in batches:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        train_step(model, prepare(batch), optimizer, accelerator, config, False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def run(args: argparse.Namespace) -> ProfileSummary:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    for line in machine_report(device):
        print(line)
    mode = "frozen" if args.freeze_encoder else "lora"
    settings = settings_of(args)
    model = build_model(settings)
    if args.compile:
        names = compile_model(model)
        print(f"compiled: {len(names)} modules, backend {default_backend()}, dynamic shapes")
    config = TrainConfig()
    optimizer = make_optimizer(model, config)
    accelerator = Accelerator(cpu=not on_cuda, mixed_precision="bf16" if args.bf16 else "no")
    model, optimizer = accelerator.prepare(model, optimizer)
    batches, prepare = make_batches(args, accelerator.unwrap_model(model), device)
    print(
        f"step: encoder {args.encoder}, {mode}, compile {args.compile}, max_tokens "
        f"{args.max_tokens}, bf16 {args.bf16}, activation checkpointing "
        f"{args.activation_checkpointing}, attention {args.attn_implementation}; "
        f"{args.warmup} warm-up, {args.timed_steps} timed, {args.steps} profiled steps"
        + (
            "; cache-row batches, budget in pair tokens, zero states kept on the device"
            if args.freeze_encoder
            else ""
        )
    )

    warm, rest = batches[: args.warmup], batches[args.warmup :]
    timed, profiled = rest[: args.timed_steps], rest[args.timed_steps :]
    start = time.perf_counter()
    time_steps(model, optimizer, accelerator, config, warm, prepare, device)
    print(f"warm-up: {len(warm)} step(s) in {time.perf_counter() - start:.1f} s")
    seconds = time_steps(model, optimizer, accelerator, config, timed, prepare, device)
    pairs = statistics.mean(len(b["index_a"]) for b in timed)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    plan = schedule(wait=0, warmup=1, active=args.steps, repeat=1)
    with profile(activities=activities, schedule=plan) as prof:
        for batch in profiled:
            with record_function(STEP_RANGE):
                with record_function(TRAIN_STEP_RANGE):
                    train_step(model, prepare(batch), optimizer, accelerator, config, False)
                if on_cuda:
                    torch.cuda.synchronize(device)
            prof.step()
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"chrome trace: {args.trace}")
    events = events_of(prof)
    wall = statistics.median(seconds)
    summary = ProfileSummary(
        encoder=args.encoder,
        mode=mode,
        compiled=args.compile,
        device=args.device,
        max_tokens=args.max_tokens,
        steps=args.steps,
        pairs_per_step=pairs,
        wall_s=wall,
        pairs_per_s=pairs / wall,
        **summarise(events, args.steps, on_cuda),
    )
    report(summary, host_top(events, args.steps, 10 if on_cuda else 0), args.top)
    if args.json_out:
        with open(args.json_out, "a") as handle:
            handle.write(json.dumps(asdict(summary)) + "\n")
    return summary


# --------------------------------------------------------------------------- report


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    cells = [tuple(str(c) for c in row) for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return lines


def _short(name: str, width: int = 90) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


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
        (_short(name), f"{calls:g}", f"{ms:.3f}", f"{100 * share:.1f}%", kind)
        for name, calls, ms, share, kind in s.top[:top]
    ]
    for line in _table(("name", "calls", "ms", "share", "category"), rows):
        print(line)
    if host_rows:
        print("host: top CPU ops and ranges by self CPU time, per step:")
        rows = [(_short(name), f"{calls:g}", f"{ms:.3f}") for name, calls, ms in host_rows]
        for line in _table(("name", "calls", "ms"), rows):
            print(line)
    shares = " ".join(f"{name}={100 * share:.1f}%" for name, share in s.shares.items())
    busy = f"{s.device_busy_s:.4f}" if s.device_busy_s is not None else "-"
    count = sum(n for name, n in s.syncs_per_step.items() if name in SYNC_CALLS)
    syncs = f"{count:g}" if s.device_busy_s is not None else "-"
    reads = sum(n for name, n in s.syncs_per_step.items() if name in SCALAR_READS)
    print(
        f"PROFILE encoder={s.encoder} mode={s.mode} compile={s.compiled} "
        f"max_tokens={s.max_tokens} wall_s={s.wall_s:.4f} pairs_per_s={s.pairs_per_s:.2f} "
        f"host_s={s.host_s:.4f} sync_wait_s={s.sync_wait_s:.4f} drain_s={s.drain_s:.4f} "
        f"device_busy_s={busy} syncs={syncs} scalar_reads={reads:g} {shares}"
    )


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
