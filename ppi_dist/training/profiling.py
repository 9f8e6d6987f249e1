"""Where a training step's time goes: `torch.profiler` over steps, each in our ranges (the
batch's preparation, `train_step`, then the wait for the device), read back as operators
dispatched per phase, host and device time, synchronisations, category shares and the top
operators or kernels. The trainer's `--profile_steps N` profiles N of its steps after one
warm-up step (`StepProfiler`); `benchmarks/throughput.py` profiles the steps it times.
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import profiler
from torch.autograd import DeviceType

from ppi_dist.tables import markdown_table, shorten
from ppi_dist.training.step import PREPARE_RANGE, TRAIN_STEP_RANGE

STEP_RANGE = "profile_step"  # a whole step and the wait for the device after it
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


def events_of(prof: profiler.profile) -> list[Event]:
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
        "steps": steps,
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


class StepProfiler:
    """`torch.profiler` over `steps` steps after one warm-up step, each a `step()` block
    (whose `prepare_batch` and `train_step` ranges `training.step` opens) ended by the wait
    for the device. `summary` (`summarise`) once they are taken; with `steps` 0 nothing is
    profiled and `step()` costs nothing."""

    def __init__(self, steps: int, device: torch.device):
        self.steps, self.device, self.on_cuda = steps, device, device.type == "cuda"
        self.summary: dict | None = None
        self._profile: profiler.profile | None = None
        self._taken = 0
        if steps > 0:
            activities = [profiler.ProfilerActivity.CPU]
            activities += [profiler.ProfilerActivity.CUDA] * self.on_cuda
            plan = profiler.schedule(wait=0, warmup=1, active=steps, repeat=1)
            self._profile = profiler.profile(activities=activities, schedule=plan)
            self._profile.start()

    @property
    def active(self) -> bool:
        return self._profile is not None

    def close(self) -> None:
        """Stop before the steps were all taken (a run shorter than them): no summary."""
        if self._profile is not None:
            self._profile.stop()
            self._profile = None

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        if self._profile is None:
            yield
            return
        with profiler.record_function(STEP_RANGE):
            yield
            if self.on_cuda:
                torch.cuda.synchronize(self.device)
        self._profile.step()
        self._taken += 1
        if self._taken > self.steps:  # the warm-up step, then the profiled ones
            profiled = self._profile
            self.close()
            self.summary = summarise(events_of(profiled), self.steps, self.on_cuda)


def report(profiles: dict[str, dict], top: int) -> list[str]:
    """Each profile as a row (operators, the host's split of the wall time, device busy,
    syncs, the largest category shares), then its top table: the lines to print."""
    rows = []
    for name, s in profiles.items():
        ops, busy = s["ops_per_step"], s["device_busy_s"]
        rows.append(
            (
                name,
                f"{sum(ops.values()):g} ({' / '.join(f'{n:g}' for n in ops.values())})",
                f"{s['kernels_per_step']:g}" if s["kernels_per_step"] else "-",
                f"{s['profiled_wall_s']:.3f}",
                f"{s['host_s']:.3f} + {s['sync_wait_s']:.3f} + {s['drain_s']:.3f}",
                f"{100 * busy / s['profiled_wall_s']:.0f}%" if busy is not None else "CPU run",
                f"{1e3 * s['prepare_s']:.2f}",
                ", ".join(f"{k} {n:g}" for k, n in s["syncs_per_step"].items()) or "none",
                ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(s["shares"].items())[:4]),
            )
        )
    header = ("profiled", "operators per step (forward / backward / optimizer)", "kernels")
    header += ("wall s", "host + sync wait + drain s", "device busy", "prepare_batch ms")
    header += ("syncs and scalar reads", "largest shares")
    lines = markdown_table(header, rows)
    for name, s in profiles.items():
        what = "self CPU time" if s["device_busy_s"] is None else "self device time"
        lines.append(f"{name}, {s['steps']} profiled steps: top {top} by {what}, per step:")
        top_rows = [
            (shorten(op), f"{calls:g}", f"{ms:.3f}", f"{100 * share:.1f}%", kind)
            for op, calls, ms, share, kind in s["top"][:top]
        ]
        lines += markdown_table(("name", "calls", "ms", "share", "category"), top_rows)
    return lines
