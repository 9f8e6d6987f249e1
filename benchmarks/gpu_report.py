"""What gpu_check.sh prints of its rows (light: no torch but for `versions`).

python -m benchmarks.gpu_report table STEPS STATUS TRAINER COMMANDS
python -m benchmarks.gpu_report trainer_row NAME OUTPUT_DIR
python -m benchmarks.gpu_report versions
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from benchmarks.tables import markdown_table

HEADER = ("check", "status", "pairs/s", "pair tok/s", "padded tok/s", "MFU", "peak GiB", "note")


def json_lines(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def tsv_rows(path: str, columns: int = -1) -> list[list[str]]:
    lines = Path(path).read_text().splitlines()
    rows = [line for line in lines if line.strip()]
    return [line.split("\t", columns) if columns > 0 else line.split("\t") for line in rows]


def step_name(r: dict) -> str:
    encoder = "8M" if r["encoder"].rstrip("/").endswith("esm2_t6_8M") else r["encoder"]
    return f"{r['name']} {encoder} {r['mode']}"


def profile_note(p: dict) -> str:
    device = "CPU run"
    if p["device_busy_s"] is not None:
        syncs = sum(v for k, v in p["syncs_per_step"].items() if k.startswith("cuda"))
        busy = 100 * p["device_busy_s"] / p["profiled_wall_s"]
        device = f"device busy {busy:.0f}%, {syncs:g} syncs, {p['kernels_per_step']:g} kernels"
    shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(p["shares"].items())[:4])
    ops = ", ".join(f"{k} {v:g}" for k, v in p["ops_per_step"].items())
    return (
        f"; profiled: host {p['host_s']:.3f} + sync wait {p['sync_wait_s']:.3f} + drain "
        f"{p['drain_s']:.3f} s, {device}; {shares}; ops/step {ops}"
    )


def step_row(r: dict) -> tuple:
    what = f"max_tokens {r['max_tokens']}" if r["max_tokens"] else f"batch_size {r['batch_size']}"
    what += f", length {r['fixed_length']}" if r["fixed_length"] else ", pair-file lengths"
    what += ", checkpointing" if r["activation_checkpointing"] else ""
    what += f", {r['attention']} attention"
    if r["cross_attention"] != "sdpa":
        what += f", {r['cross_attention']} cross-attention"
    what += f"; step {r['median_step_s']:.3f} s"
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
    rates = [f"{r['pairs_per_s']:.2f}", f"{r['pair_tokens_per_s']:.0f}"]
    rates += [f"{r['encoded_padded_tokens_per_s']:.0f}", mfu, f"{r['peak_memory_gb']:.2f}"]
    note = what + (profile_note(r["profile"]) if "profile" in r else "")
    return (step_name(r), "OK", *rates, note)


def table(steps: str, status: str, trainer: str, commands: str) -> None:
    measured = json_lines(steps)
    rows = [step_row(r) for r in measured]
    for name, rate, steps_run, metrics in tsv_rows(trainer):
        state = "OK" if rate != "-" else "-"
        rows.append(
            (f"trainer {name}", state, rate, "-", "-", "-", "-", f"{steps_run}; test {metrics}")
        )
    for name, state, seconds, text in tsv_rows(status):
        rows.append((name, state, "-", "-", "-", "-", "-", f"{seconds}s {text}".strip()))
    print("\n".join(markdown_table(HEADER, rows)))
    for r in (r for r in measured if "profile" in r):  # the full tables are in the logs
        by = "device" if r["profile"]["device_busy_s"] is not None else "CPU"
        print(f"\n{step_name(r)}, top 5 by {by} time per step:")
        for name, calls, ms, share, kind in r["profile"]["top"][:5]:
            print(f"  {100 * share:5.1f}% {ms:9.3f} ms {calls:6g} calls  [{kind}] {name[:100]}")
    ran = tsv_rows(commands, 1)
    if ran:
        print("\ncommands:")
    for name, command in ran:
        print(f"  {name}: {command}")


def trainer_row(name: str, out: str) -> None:
    log, metrics = Path(out) / "train_log.jsonl", Path(out) / "metrics.json"
    lines = log.read_text().splitlines() if log.exists() else []
    rates = [json.loads(line)["train/pairs_per_s"] for line in lines]
    rate = f"{statistics.median(rates[1:] or rates):.2f}" if rates else "-"
    test = json.loads(metrics.read_text()).get("test") if metrics.exists() else None
    shown = "-"
    if test:
        shown = (
            f"accuracy {test['accuracy']:.3f} AUROC {test['auroc']:.3f} AUPR {test['aupr']:.3f} "
            f"MCC {test['mcc']:.3f} (threshold {test['threshold']:.2f})"
        )
    print(f"{name}\t{rate}\t{len(rates)} log windows\t{shown}")


def versions() -> None:
    import torch

    from benchmarks.core import default_device, machine_report

    print("\n".join(machine_report(torch.device(default_device()))))


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"table": table, "trainer_row": trainer_row, "versions": versions}[command](*arguments)
