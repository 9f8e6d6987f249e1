"""The machine report and the peak memory that runs and benchmarks print."""

from __future__ import annotations

import os

import torch

from ppi_dist.training.machine import PeakMemory, environment, machine_line, machine_report

CPU = torch.device("cpu")


def test_peak_memory_is_read_after_a_reset():
    memory = PeakMemory(CPU)
    memory.reset()
    assert memory.peak_bytes() > 0 and memory.describe().startswith("peak RSS ")


def test_machine_report_names_the_machine_and_the_libraries(monkeypatch):
    # The load average moves between two calls on a busy machine: pin it.
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 0.5, 0.0))
    lines = machine_report(CPU)
    assert "load average 1.5 0.5 0.0" in lines[0]
    assert lines[0].startswith("machine: ") and "CPU cores" in lines[0]
    for library in ("python", "torch", "transformers", "peft", "accelerate", "datasets"):
        assert f"{library} " in lines[1]
    assert lines[2] == "GPU: none (CPU run)"
    assert machine_line(CPU) == "; ".join(lines)


def test_the_environment_a_run_keeps_holds_no_load():
    """metrics.json's record: the same on one machine whatever else runs (a resumed run's
    metrics equal an uninterrupted one's)."""
    recorded = environment(CPU)
    assert recorded["gpu"] is None and recorded["cpu_cores"] == os.cpu_count()
    assert recorded["libraries"]["torch"] == torch.__version__
    assert "load" not in str(recorded)
