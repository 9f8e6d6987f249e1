"""The input stage on a real pair file, no model: validation; `BatchLoader` speed with 0, 1,
2 workers (--workers) over the first --speed_batches token batches of an epoch; frozen
cache-row batches at each --frozen_max_tokens, each prepared by the trainer's
`BatchPreparation` on a stand-in cache on the "meta" device (the loop's host work, not the
gather); padding as the encoder runs it against random fixed-size batches over a whole
epoch, with the peak RSS per quarter (--no_padding_stats skips it).

    python -m benchmarks.data_loader --frozen_only --workers 0,2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from benchmarks.core import DEFAULT_FASTA, DEFAULT_PAIRS, PeakMemory, machine_report, stand_in_cache
from ppi_dist.data.batching import CacheRowBatches, TokenBatches
from ppi_dist.data.loader import BatchLoader
from ppi_dist.data.pairs import PairSource
from ppi_dist.data.planner import BatchOptions, BatchPlanner
from ppi_dist.models.packing import encoder_tokens
from ppi_dist.training.step import BatchPreparation

RSS = PeakMemory(torch.device("cpu"))  # never reset: the process's peak so far


def peak_rss_mib() -> float:
    return RSS.peak_bytes() / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    add = parser.add_argument
    add("--pairs", default=str(DEFAULT_PAIRS))
    add("--fasta", default=str(DEFAULT_FASTA))
    add("--max_tokens", type=int, default=16384)
    add("--sort_buffer", type=int, default=4096)
    add("--workers", default="0,1,2", help="comma-separated worker counts")
    add("--speed_batches", type=int, default=500)
    add("--no_padding_stats", action="store_true")
    add("--frozen_max_tokens", default="65536,262144,1048576")
    add("--frozen_pairs", type=int, default=40000)
    add("--frozen_hidden", type=int, default=8)
    add("--frozen_only", action="store_true")
    args = parser.parse_args(argv)
    print("\n".join(machine_report(torch.device("cpu"))))  # the input stage runs on the CPU
    print(f"pairs: {args.pairs}\nfasta: {args.fasta}\n")
    start = time.perf_counter()
    source = PairSource(args.pairs, args.fasta)
    report = source.validate()
    print(f"validate (FASTA + pair file): {time.perf_counter() - start:.2f} s, {report.summary()}")
    print(f"peak RSS after validation: {peak_rss_mib():.0f} MiB\n")
    workers = [int(n) for n in args.workers.split(",")]
    if not args.frozen_only:
        options = BatchOptions(max_tokens=args.max_tokens, sort_buffer=args.sort_buffer)
        print(f"input stage, token budget {args.max_tokens}, first {args.speed_batches} batches:")
        for n in workers:
            line = loader_speed(
                TokenBatches(source, options), n, lambda b, _: b >= args.speed_batches
            )
            print(f"  {n} worker(s): {line}", flush=True)
    frozen_input_speed(source, args, workers)
    if not (args.no_padding_stats or args.frozen_only):
        padding(source, report.rows, args)


def loader_speed(
    batches: BatchPlanner,
    workers: int,
    enough: Callable[[int, int], bool],
    each: Callable[[dict], object] | None = None,
) -> str:
    """Batches through a `BatchLoader` until `enough(batches, pairs)`, each handed to `each`
    as the loop would: the rates with startup and after the first batch."""
    loader = BatchLoader(batches, num_workers=workers, pin_memory=False)
    n = pairs = first_pairs = 0
    in_loop, first = 0.0, None
    start = time.perf_counter()
    for batch in loader:
        began = time.perf_counter()
        if each is not None:
            each(batch)
        in_loop += time.perf_counter() - began
        n, pairs = n + 1, pairs + len(batch["protein_a"])
        if first is None:
            first, first_pairs = time.perf_counter(), pairs
        if enough(n, pairs):
            break
    end = time.perf_counter()
    loader.close()
    steady = (pairs - first_pairs) / (end - first)
    return (
        f"{pairs / n:.0f} pairs/batch; steady {(n - 1) / (end - first):.0f} batches/s, "
        f"{steady:,.0f} pairs/s; with startup {pairs / (end - start):,.0f} pairs/s "
        f"({first - start:.1f} s to the first batch); in the loop {1000 * in_loop / n:.2f} "
        "ms/batch"
    )


def frozen_input_speed(source: PairSource, args: argparse.Namespace, workers: list[int]) -> None:
    """Cache-row batches made the step's by `BatchPreparation`, on shapes only."""
    cache = stand_in_cache(source, args.frozen_hidden)
    device = torch.device("meta")  # shapes only: the loop's host work is what is timed
    cache.keep_on(device)
    prepare = BatchPreparation(device, cache)
    budgets = [int(tokens) for tokens in args.frozen_max_tokens.split(",")]
    warm_up = CacheRowBatches(source, cache.index, BatchOptions(max_tokens=budgets[0]))
    prepare(next(iter(warm_up)))  # meta kernels load lazily
    print(
        f"frozen-encoder input stage, first {args.frozen_pairs:,} pairs of an epoch, "
        f"prepared on {len(cache):,} cached proteins:"
    )
    for n in workers:
        for tokens in budgets:
            options = BatchOptions(max_tokens=tokens, sort_buffer=args.sort_buffer)
            batches = CacheRowBatches(source, cache.index, options)
            line = loader_speed(batches, n, lambda _, p: p >= args.frozen_pairs, prepare)
            print(f"  {n} worker(s), pair-token budget {tokens:,}: {line}", flush=True)
    print()


def padding(source: PairSource, rows: int, args: argparse.Namespace) -> None:
    """One training epoch of token batches: padding as packed, speed, peak RSS."""
    ours = TokenBatches(
        source, BatchOptions(max_tokens=args.max_tokens, sort_buffer=args.sort_buffer)
    )
    n_batches = packed = one_per_row = real = pairs = 0
    quarters = {round(rows * q / 4) for q in (1, 2, 3)}
    start = time.perf_counter()
    for batch in ours:
        n_batches += 1
        before, pairs = pairs, pairs + len(batch["protein_a"])
        packed += encoder_tokens(batch["attention_mask"])
        one_per_row += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
        if any(before < q <= pairs for q in quarters):
            print(f"  after {pairs:,} pairs: peak RSS {peak_rss_mib():.0f} MiB")
    seconds = time.perf_counter() - start
    print(
        f"token budget {args.max_tokens}: {n_batches:,} batches in {seconds:.1f} s = "
        f"{n_batches / seconds:.0f} batches/s, {pairs / seconds:,.0f} pairs/s, "
        f"{real / seconds / 1e6:.2f} M real tokens/s\n  padded/real tokens "
        f"{packed / real:.3f} packed as the encoder runs them ({one_per_row / real:.3f} if "
        f"each sequence had its own row), {pairs / n_batches:.1f} pairs per batch"
    )
    per_batch = round(pairs / n_batches)
    padded = real = 0
    for batch in TokenBatches(source, BatchOptions(batch_size=per_batch)):
        padded += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
    print(f"random fixed-size batches of {per_batch} pairs: padded/real tokens {padded / real:.3f}")
    print(f"peak RSS at the end: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
