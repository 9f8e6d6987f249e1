"""All-vs-all prediction: encode-once (embedding cache) versus encoding both proteins per pair.

    python benchmarks/all_vs_all.py [--proteins 200] [--naive_pairs 160]

Takes the first `--proteins` proteins of the Bernett gold-standard FASTA (centre-cropped to
1,022 residues), builds SE-CAI on the real 8M ESM-2 in ../shared/models with the default
config (LoRA r=8, 8 cross-attention heads, head 512; the head's weights are random: speed
does not depend on them) and measures, in the same run:

- encode-once: `EmbeddingCache.build` (each protein through the encoder once), then
  `predict.predict` over every unordered pair (cross-attention + head only), written to TSV;
- naive: batches of `--naive_batch` pairs where both proteins of every pair go through the
  encoder (`SECAI.forward` on 2 sequences per pair), on a seeded sample of the pairs,
  extrapolated to all of them.

Prints pairs/s of both, the speed-up, peak memory, the machine and library versions.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ppi_dist.data import read_fasta  # noqa: E402
from ppi_dist.embeddings import EmbeddingCache  # noqa: E402
from ppi_dist.model import SECAI, SECAIConfig  # noqa: E402
from ppi_dist.predict import predict  # noqa: E402
from ppi_dist.sequences import ESM2_MAX_RESIDUES, crop, tokenize  # noqa: E402

SHARED = REPO.parent / "shared"


def machine() -> str:
    import peft
    import transformers

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.platform()} | {platform.processor() or platform.machine()} | "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()} | {device} | "
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, peft {peft.__version__}"
    )


def peak_memory() -> str:
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    text = f"peak RSS {rss_gib:.2f} GiB"
    if torch.cuda.is_available():
        text += f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    return text


@torch.no_grad()
def naive_pairs_per_second(model, sequences, pairs, batch_pairs, device) -> tuple[float, list]:
    """Both proteins of every pair through the encoder, `batch_pairs` pairs per call."""
    probabilities = []
    start = time.perf_counter()
    for i in range(0, len(pairs), batch_pairs):
        batch = pairs[i : i + batch_pairs]
        # Two sequences per pair, no reuse across pairs: what scoring pairs one by one costs.
        texts = [crop(sequences[p], ESM2_MAX_RESIDUES) for pair in batch for p in pair]
        input_ids, attention_mask = tokenize(texts)
        index_a = torch.arange(0, 2 * len(batch), 2, device=device)
        logits = model(input_ids.to(device), attention_mask.to(device), index_a, index_a + 1)
        probabilities += torch.sigmoid(logits.float()).tolist()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(pairs) / (time.perf_counter() - start), probabilities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fasta", default=str(SHARED / "data/bernett-gold/sequences.fasta"))
    parser.add_argument("--encoder", default=str(SHARED / "models/esm2_t6_8M"))
    parser.add_argument("--proteins", type=int, default=200)
    parser.add_argument("--naive_pairs", type=int, default=96)
    parser.add_argument("--naive_batch", type=int, default=8)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument(
        "--cross_attention_heads", type=int, default=SECAIConfig.cross_attention_heads
    )  # the trainer's default
    parser.add_argument("--cache_dtype", default="float16")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"machine: {machine()}")
    torch.manual_seed(0)
    config = SECAIConfig(encoder=args.encoder, cross_attention_heads=args.cross_attention_heads)
    model = SECAI(config).to(device).eval()
    everything = read_fasta(args.fasta)
    ids = list(everything)[: args.proteins]
    sequences = {p: everything[p] for p in ids}
    lengths = [min(len(s), ESM2_MAX_RESIDUES) for s in sequences.values()]
    n_pairs = len(ids) * (len(ids) - 1) // 2
    print(
        f"{len(ids)} proteins (first of {Path(args.fasta).name}), cropped lengths mean "
        f"{sum(lengths) / len(lengths):.0f}, max {max(lengths)}; {n_pairs:,} unordered pairs"
    )

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        fasta = scratch / "proteins.fasta"
        fasta.write_text("".join(f">{p}\n{s}\n" for p, s in sequences.items()))
        start = time.perf_counter()
        EmbeddingCache.build(model, sequences, directory=scratch / "cache", dtype=args.cache_dtype)
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        summary = predict(
            model,
            scratch / "scores.tsv",
            fasta=fasta,
            tile=args.tile,
            cache_dir=scratch / "cache",
            cache_dtype=args.cache_dtype,
            progress=False,
        )
        score_s = time.perf_counter() - start
        assert summary["rows_written"] == n_pairs
        rows = (scratch / "scores.tsv").read_text().splitlines()[1:]
        cached = {(a, b): float(p) for a, b, p, *_ in (r.split("\t") for r in rows)}

    fast = n_pairs / (encode_s + score_s)
    print(
        f"encode-once: encoder {encode_s:.1f} s ({len(ids)} proteins), pair scoring + "
        f"writing {score_s:.1f} s ({n_pairs / score_s:,.0f} pairs/s) -> {fast:,.1f} pairs/s "
        f"end to end, {encode_s + score_s:.1f} s for all pairs"
    )

    rng = random.Random(0)
    all_pairs = list(cached)
    sample = rng.sample(all_pairs, min(args.naive_pairs, len(all_pairs)))
    naive, probabilities = naive_pairs_per_second(
        model, sequences, sample, args.naive_batch, device
    )
    worst = max(abs(p - cached[pair]) for p, pair in zip(probabilities, sample, strict=True))
    print(
        f"naive: {len(sample)} sampled pairs in batches of {args.naive_batch}: {naive:,.2f} "
        f"pairs/s -> {n_pairs / naive:,.0f} s extrapolated to all pairs "
        f"(largest |difference| from the cached scores: {worst:.1e}, fp16 states)"
    )
    print(f"speed-up of encode-once: {fast / naive:,.1f}x end to end")
    print(
        f"cross-attention heads {args.cross_attention_heads}, cache {args.cache_dtype}, "
        f"tile {args.tile}, naive batch {args.naive_batch}"
    )
    print(peak_memory())


if __name__ == "__main__":
    main()
