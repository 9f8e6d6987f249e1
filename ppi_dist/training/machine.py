"""Where a run ran and what it held: the machine and library versions (printed as a run
starts, kept without the load in its metrics.json, printed before every benchmark's figures
and by `python -m ppi_dist.training.machine` for a bug report), and the peak memory (the
trainer's log per window; the benchmarks' per method)."""

from __future__ import annotations

import contextlib
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

LIBRARIES = ("torch", "transformers", "peft", "accelerate", "datasets", "deepspeed")


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} CPU, {torch.get_num_threads()} threads"


def library_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # a bare GPU image may lack datasets
        return "not installed"


def environment(device: torch.device) -> dict:
    """Where a run ran, as its metrics.json keeps it: the machine and the library versions
    (not the load, which moves: two runs on one machine record the same)."""
    return {
        "machine": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "python": platform.python_version(),
        "libraries": {name: library_version(name) for name in LIBRARIES},
    }


def machine_report(device: torch.device) -> list[str]:
    """`environment` with the load and torch's threads, as lines to print before figures."""
    where = environment(device)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    versions = ", ".join(f"{name} {v}" for name, v in where["libraries"].items())
    gpu = "GPU: none (CPU run)"
    if where["gpu"] is not None:
        gpu = f"GPU: {where['gpu']} (CUDA {torch.version.cuda})"
    return [
        f"machine: {where['machine']}, {where['cpu_cores']} CPU cores, torch threads "
        f"{torch.get_num_threads()}, load average {load} (other processes share it)",
        f"python {where['python']}, {versions}",
        gpu,
    ]


def machine_line(device: torch.device) -> str:
    return "; ".join(machine_report(device))


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class PeakMemory:
    """The CUDA allocator's peak, or on the CPU the process's peak RSS (VmHWM, which writing
    5 to /proc/self/clear_refs resets, so each measurement's peak is its own)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0  # no /proc (not Linux): unknown

    def describe(self) -> str:
        return f"{self.kind} {self.peak_bytes() / 2**30:.2f} GiB"


if __name__ == "__main__":
    print("\n".join(machine_report(torch.device(default_device()))))
