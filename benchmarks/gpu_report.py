"""What gpu_check.sh prints of its rows (light: no torch but for `versions`).

python -m benchmarks.gpu_report table RESULTS STATUS TRAINER PROFILES COMMANDS
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


def throughput_row(r: dict) -> tuple:
    what = f"max_tokens {r['max_tokens']}" if r["max_tokens"] else f"batch_size {r['batch_size']}"
    what += f", length {r['fixed_length']}" if r["fixed_length"] else ", pair-file lengths"
    what += ", checkpointing" if r.get("activation_checkpointing") else ""
    what += f", {r['attention']} attention" if r.get("attention") else ""
    cross = r.get("cross_attention")
    what += f", {cross} cross-attention" if cross and cross != "sdpa" else ""
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
    rates = [f"{r['pairs_per_s']:.2f}", f"{r['pair_tokens_per_s']:.0f}"]
    rates += [f"{r['encoded_padded_tokens_per_s']:.0f}", mfu, f"{r['peak_memory_gb']:.2f}"]
    return (f"throughput {r['name']}", "OK", *rates, f"{r['encoder']} {what}")


def profile_name(p: dict) -> str:
    encoder = "8M" if p["encoder"].rstrip("/").endswith("esm2_t6_8M") else p["encoder"]
    return f"profile {encoder} {p['mode']}" + (" compiled" if p["compiled"] else "")


def profile_row(p: dict) -> tuple:
    busy = p["device_busy_s"]
    syncs = sum(v for k, v in p["syncs_per_step"].items() if k.startswith("cuda"))
    device = "CPU run"
    if busy is not None:
        device = f"device busy {100 * busy / p['profiled_wall_s']:.0f}%, {syncs:g} syncs"
    shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(p["shares"].items())[:4])
    if p.get("ops_per_step"):
        shares += "; ops/step " + ", ".join(f"{k} {v:g}" for k, v in p["ops_per_step"].items())
    note = (
        f"max_tokens {p['max_tokens']}; step {p['wall_s']:.3f} s; profiled: host "
        f"{p['host_s']:.3f} + sync wait {p['sync_wait_s']:.3f} + drain {p['drain_s']:.3f} s, "
        f"{device}; {shares}"
    )
    return (profile_name(p), "OK", f"{p['pairs_per_s']:.2f}", "-", "-", "-", "-", note)


def table(results: str, status: str, trainer: str, profiles: str, commands: str) -> None:
    measured = json_lines(profiles)
    rows = [throughput_row(r) for r in json_lines(results)]
    rows += [profile_row(p) for p in measured]
    for name, rate, steps, metrics in tsv_rows(trainer):
        state = "OK" if rate != "-" else "-"
        rows.append(
            (f"trainer {name}", state, rate, "-", "-", "-", "-", f"{steps}; test {metrics}")
        )
    for name, state, seconds, text in tsv_rows(status):
        rows.append((name, state, "-", "-", "-", "-", "-", f"{seconds}s {text}".strip()))
    print("\n".join(markdown_table(HEADER, rows)))
    for p in measured:  # the full tables are in the profile logs
        by = "device" if p["device_busy_s"] is not None else "CPU"
        print(f"\n{profile_name(p)}, top 5 by {by} time per step:")
        for name, calls, ms, share, kind in p["top"][:5]:
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
