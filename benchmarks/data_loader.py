"""Data loading benchmark: padding waste, loader speed and memory on a real pair file.

    python -m benchmarks.data_loader [--pairs ../shared/data/bernett-gold/train.tsv]
        [--fasta ../shared/data/bernett-gold/sequences.fasta] [--max_tokens 16384]
        [--frozen_only] [--frozen_max_tokens 65536,262144,1048576]

Padding is counted as the encoder runs it: our batches' distinct sequences packed into rows
of the batch's longest (`ppi_dist.models.packing`, what `SECAI.encode` does), padded tokens = rows x
width; real tokens = attention_mask.sum(). Compared: our token-budget batches from a
length-sorted buffer versus random fixed-size batches (as many pairs per batch as ours
average) padded to their longest, one sequence per row; ours unpacked (one sequence per row)
is printed too. Then one full training epoch (shuffle, crops, tokenising, packing plan) for
batches/s, with the peak RSS after each quarter of the epoch: flat means streaming holds no
more than its buffers (skip with --no_padding_stats).

Then the input stage alone (no model), as the trainer gets it: `BatchLoader` with 0, 1, 2
workers (--workers), the first --speed_batches batches of a training epoch, batches/s and
pairs/s from the first batch handed out (startup included) and after it (steady), beside
what the trainer consumed on one H200 with the 8M encoder (about 600 pairs/s frozen at
65,536 tokens, 300 LoRA at 32,768).

Then the frozen-encoder input stage, old path against new, in the same run: old = token
batches at the encoder budget (crops, tokens, packing plan and layout), whose protein ids
`with_cached_states` turns into cache rows in the training loop (as before cache-row
batches, there with a dict and lists); new = `CacheRowBatches`, cache rows made
by the loader at the pair-token budget (pairs x 2 x longest), for each --frozen_max_tokens.
Both run `with_cached_states` in the loop, as the trainer does, on a stand-in cache: the
proteins' real (centre-cropped) lengths, states of width --frozen_hidden on PyTorch's "meta"
device, which computes shapes only. So the loop's time (ms/batch) is the host's share,
Python and operator dispatch, while the gather is left out as the device work it is on a
GPU (queued kernels); meta kernels run in Python, so dispatch is a little overstated. The
first --frozen_pairs pairs of a training epoch: batches/s and pairs/s after the first batch
(steady) and with startup, against the issue's target of 20,000 pairs/s (frozen 8M, H200).
(`--frozen_only` skips the encoder-mode measurements.)
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.core import DEFAULT_FASTA, DEFAULT_PAIRS, PeakMemory, machine_report, stand_in_cache
from ppi_dist.data.batching import CacheRowBatches, TokenBatches
from ppi_dist.data.loader import BatchLoader
from ppi_dist.data.pairs import PairSource
from ppi_dist.data.planner import BatchOptions
from ppi_dist.data.reading import datasets_lines, read_lines
from ppi_dist.models.packing import encoder_tokens
from ppi_dist.training.frozen import with_cached_states

RSS = PeakMemory(torch.device("cpu"))  # never reset: the process's peak so far


def peak_rss_mib() -> float:
    return RSS.peak_bytes() / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--pairs", default=str(DEFAULT_PAIRS))
    parser.add_argument("--fasta", default=str(DEFAULT_FASTA))
    parser.add_argument("--max_tokens", type=int, default=16384)
    parser.add_argument("--sort_buffer", type=int, default=4096)
    parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    parser.add_argument("--speed_batches", type=int, default=500)
    parser.add_argument("--no_padding_stats", action="store_true")
    parser.add_argument("--old_frozen_max_tokens", type=int, default=65536)
    parser.add_argument("--frozen_max_tokens", default="65536,262144,1048576")
    parser.add_argument("--frozen_pairs", type=int, default=40000)
    parser.add_argument("--frozen_hidden", type=int, default=8)
    parser.add_argument("--frozen_only", action="store_true")
    args = parser.parse_args(argv)

    for line in machine_report(torch.device("cpu")):  # the input stage runs on the CPU
        print(line)
    print(f"pairs: {args.pairs}\nfasta: {args.fasta}\n")

    # The two ways to read a text pair file's lines (see the `ppi_dist.data.pairs` docstring).
    if not args.pairs.endswith(".parquet") and not args.frozen_only:
        for name, reader in (("read_lines", read_lines), ("datasets text", datasets_lines)):
            for _ in range(2):  # the first pass includes imports and the page cache
                start = time.perf_counter()
                lines = sum(1 for _ in reader(args.pairs))
                seconds = time.perf_counter() - start
            print(f"{name}: {lines:,} lines in {seconds:.2f} s (second pass)")
        print()

    start = time.perf_counter()
    source = PairSource(args.pairs, args.fasta)
    report = source.validate()
    print(f"validate (FASTA + pair file): {time.perf_counter() - start:.2f} s, {report.summary()}")
    print(f"peak RSS after validation: {peak_rss_mib():.0f} MiB\n")

    if not args.frozen_only:
        input_stage_speed(source, args)
    frozen_input_speed(source, args)
    if args.no_padding_stats or args.frozen_only:
        return

    ours = TokenBatches(
        source, BatchOptions(max_tokens=args.max_tokens, sort_buffer=args.sort_buffer)
    )
    n_batches = 0
    packed = one_per_row = real = pairs = 0
    checkpoints = {round(report.rows * q / 4) for q in (1, 2, 3)}
    start = time.perf_counter()
    for batch in ours:
        n_batches += 1
        before = pairs
        pairs += len(batch["protein_a"])
        packed += encoder_tokens(batch["attention_mask"])
        one_per_row += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
        if any(before < c <= pairs for c in checkpoints):
            print(f"  after {pairs:,} pairs: peak RSS {peak_rss_mib():.0f} MiB")
    seconds = time.perf_counter() - start
    print(f"  after {pairs:,} pairs: peak RSS {peak_rss_mib():.0f} MiB")
    print(
        f"token budget {args.max_tokens}: {n_batches:,} batches in {seconds:.1f} s = "
        f"{n_batches / seconds:.0f} batches/s, {pairs / seconds:,.0f} pairs/s, "
        f"{real / seconds / 1e6:.2f} M real tokens/s"
    )
    print(
        f"  padded/real tokens {packed / real:.3f} packed as the encoder runs them "
        f"({one_per_row / real:.3f} if each sequence had its own row), "
        f"{pairs / n_batches:.1f} pairs per batch"
    )

    per_batch = round(pairs / n_batches)
    fixed = TokenBatches(source, BatchOptions(batch_size=per_batch))
    padded = real = 0
    for batch in fixed:
        padded += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
    print(f"random fixed-size batches of {per_batch} pairs: padded/real tokens {padded / real:.3f}")
    print(f"peak RSS at the end: {peak_rss_mib():.0f} MiB")


# Pairs/s the trainer consumed on one H200, 8M encoder, by token budget (issue 12).
H200_CONSUMED = {65536: ("frozen", 600), 32768: ("LoRA", 300)}


def input_stage_speed(source: PairSource, args: argparse.Namespace) -> None:
    """BatchLoader alone: batches/s and pairs/s for each worker count."""
    print(f"input stage, token budget {args.max_tokens}, first {args.speed_batches} batches:")
    for workers in map(int, args.workers.split(",")):
        options = BatchOptions(max_tokens=args.max_tokens, sort_buffer=args.sort_buffer)
        batches = TokenBatches(source, options)
        loader = BatchLoader(batches, num_workers=workers, pin_memory=False)
        start = time.perf_counter()
        first = None
        n = pairs = first_pairs = 0
        for batch in loader:
            n += 1
            pairs += len(batch["protein_a"])
            if first is None:
                first, first_pairs = time.perf_counter(), pairs
            if n == args.speed_batches:
                break
        end = time.perf_counter()
        loader.close()
        steady = (pairs - first_pairs) / (end - first)
        line = (
            f"  {workers} worker(s): {n / (end - start):.0f} batches/s, "
            f"{pairs / (end - start):,.0f} pairs/s with startup ({first - start:.1f} s to the "
            f"first batch); steady {(n - 1) / (end - first):.0f} batches/s, {steady:,.0f} pairs/s"
        )
        if args.max_tokens in H200_CONSUMED:
            mode, consumed = H200_CONSUMED[args.max_tokens]
            line += f" = {steady / consumed:.1f}x the H200 trainer's {consumed} ({mode})"
        print(line, flush=True)
    print()


# The target: frozen 8M trainer pairs/s on one H200 (it ran 807 with 2 workers).
FROZEN_TARGET = 20_000


def frozen_input_speed(source: PairSource, args: argparse.Namespace) -> None:
    """Frozen-encoder input stage: token batches + ids in the loop (old) vs cache rows (new)."""
    cache = stand_in_cache(source, args.frozen_hidden)
    device = torch.device("meta")  # shapes only: the loop's host work is what is timed
    cache.keep_on(device)
    warm_up = TokenBatches(source, BatchOptions(max_tokens=args.old_frozen_max_tokens))
    with_cached_states(next(iter(warm_up)), cache, device)  # meta kernels load lazily
    paths = [
        (f"old, encoder budget {args.old_frozen_max_tokens:,}", args.old_frozen_max_tokens, None)
    ]
    for tokens in map(int, args.frozen_max_tokens.split(",")):
        paths.append((f"new, pair-token budget {tokens:,}", tokens, cache.index))
    print(
        f"frozen-encoder input stage, first {args.frozen_pairs:,} pairs of an epoch, "
        f"with_cached_states on {len(cache):,} cached proteins:"
    )
    for workers in map(int, args.workers.split(",")):
        for name, tokens, index in paths:
            options = BatchOptions(max_tokens=tokens, sort_buffer=args.sort_buffer)
            if index is None:
                batches = TokenBatches(source, options)
            else:
                batches = CacheRowBatches(source, index, options)
            loader = BatchLoader(batches, num_workers=workers, pin_memory=False)
            n = pairs = first_pairs = 0
            in_loop = 0.0
            start = time.perf_counter()
            first = None
            for batch in loader:
                began = time.perf_counter()
                with_cached_states(batch, cache, device)
                in_loop += time.perf_counter() - began
                n += 1
                pairs += len(batch["protein_a"])
                if first is None:
                    first, first_pairs = time.perf_counter(), pairs
                if pairs >= args.frozen_pairs:
                    break
            end = time.perf_counter()
            loader.close()
            steady = (pairs - first_pairs) / (end - first)
            print(
                f"  {workers} worker(s), {name}: {pairs / n:.0f} pairs/batch; steady "
                f"{(n - 1) / (end - first):.0f} batches/s, {steady:,.0f} pairs/s "
                f"({steady / FROZEN_TARGET:.2f}x the {FROZEN_TARGET:,} target); with startup "
                f"{pairs / (end - start):,.0f} pairs/s ({first - start:.1f} s to the first "
                f"batch); in the loop {1000 * in_loop / n:.2f} ms/batch",
                flush=True,
            )
    print()


if __name__ == "__main__":
    main()
