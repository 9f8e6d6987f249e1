"""Data loading benchmark: padding waste, loader speed and memory on a real pair file.

    python benchmarks/data_loader.py [--pairs ../shared/data/bernett-gold/train.tsv]
        [--fasta ../shared/data/bernett-gold/sequences.fasta] [--max-tokens 16384]

Padding is counted as the encoder runs it: our batches' distinct sequences packed into rows
of the batch's longest (`ppi_dist.packing`, what `SECAI.encode` does), padded tokens = rows x
width; real tokens = attention_mask.sum(). Compared: our token-budget batches from a
length-sorted buffer versus random fixed-size batches (as many pairs per batch as ours
average) padded to their longest, one sequence per row; ours unpacked (one sequence per row)
is printed too. Then one full training epoch (shuffle, crops, tokenising, packing plan) for
batches/s, with the peak RSS after each quarter of the epoch: flat means streaming holds no
more than its buffers.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from pathlib import Path

import datasets
import torch

from ppi_dist.data import PairBatches, PairSource, _datasets_lines, read_lines
from ppi_dist.packing import encoder_tokens

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bernett-gold"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", default=str(DATA / "train.tsv"))
    parser.add_argument("--fasta", default=str(DATA / "sequences.fasta"))
    parser.add_argument("--max-tokens", type=int, default=16384)
    parser.add_argument("--sort-buffer", type=int, default=4096)
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, {platform.platform()}"
    )
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"datasets {datasets.__version__}"
    )
    print(f"pairs: {args.pairs}\nfasta: {args.fasta}\n")

    # The two ways to read a text pair file's lines (see the `ppi_dist.data` docstring).
    if not args.pairs.endswith(".parquet"):
        for name, reader in (("read_lines", read_lines), ("datasets text", _datasets_lines)):
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

    ours = PairBatches(source, seed=0, max_tokens=args.max_tokens, sort_buffer=args.sort_buffer)
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
    fixed = PairBatches(source, seed=0, batch_size=per_batch)
    padded = real = 0
    for batch in fixed:
        padded += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
    print(f"random fixed-size batches of {per_batch} pairs: padded/real tokens {padded / real:.3f}")
    print(f"peak RSS at the end: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
