"""All-vs-all prediction: encode-once (embedding cache) versus encoding both proteins per pair.

    python -m benchmarks.all_vs_all [--proteins 200] [--naive_pairs 96]

Takes the first `--proteins` proteins of the Bernett gold-standard FASTA (centre-cropped to
1,022 residues), builds SE-CAI from the trainer's flags (default: the real 8M ESM-2 in
../shared/models and the trainer's model defaults, LoRA r=8, 8 cross-attention heads, head
512; the head's weights are random: speed does not depend on them) and measures, in the
same run:

- encode-once: `EmbeddingCache.build` (each protein through the encoder once), then
  `inference.predict.predict` over every unordered pair (cross-attention + head only),
  written to TSV;
- naive: batches of `--naive_batch` pairs where both proteins of every pair go through the
  encoder (`SECAI.forward` on 2 sequences per pair), on a seeded sample of the pairs,
  extrapolated to all of them.

Prints pairs/s of both, the speed-up, peak memory, the machine and library versions. Every
other flag is the trainer's (`--encoder`, `--encoder_shape`, `--cross_attention_heads`, ...).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.core import (
    DEFAULT_FASTA,
    PeakMemory,
    build_model,
    default_device,
    machine_line,
    trainer_config,
)
from ppi_dist.data.batching import batch_to_device
from ppi_dist.data.fasta import read_fasta, write_fasta
from ppi_dist.data.sequences import ESM2_MAX_RESIDUES, tokenize
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.predict import PredictFiles, PredictOptions, PredictRun, predict
from ppi_dist.models.secai import SECAI
from ppi_dist.models.windows import Windowing


@torch.no_grad()
def naive_pairs_per_second(
    model: SECAI, sequences: dict[str, str], pairs: list[tuple[str, str]], batch_pairs: int
) -> tuple[float, list[float]]:
    """Both proteins of every pair through the encoder, `batch_pairs` pairs per call."""
    device = next(model.parameters()).device
    probabilities = []
    start = time.perf_counter()
    for i in range(0, len(pairs), batch_pairs):
        chunk = pairs[i : i + batch_pairs]
        # Two sequences per pair, no reuse across pairs: what scoring pairs one by one costs.
        texts = [_centred(sequences[p]) for pair in chunk for p in pair]
        input_ids, attention_mask = tokenize(texts)
        index_a = torch.arange(0, 2 * len(chunk), 2)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "index_a": index_a,
            "index_b": index_a + 1,
        }
        logits = model(**batch_to_device(batch, device))
        probabilities += torch.sigmoid(logits.float()).tolist()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(pairs) / (time.perf_counter() - start), probabilities


# Both paths read a long protein as its centred window, as the naive baseline always did.
CROP = Windowing(ESM2_MAX_RESIDUES, 0, "crop")


def _centred(sequence: str) -> str:
    (window,) = CROP.windows(len(sequence))
    return sequence[window.start : window.stop]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--fasta", default=str(DEFAULT_FASTA))
    parser.add_argument("--proteins", type=int, default=200)
    parser.add_argument("--naive_pairs", type=int, default=96)
    parser.add_argument("--naive_batch", type=int, default=8)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--cache_dtype", default="float16")
    args, flags = parser.parse_known_args(argv)
    device = torch.device(default_device())
    config = trainer_config(parser, flags, device)

    print(machine_line(device))
    memories = [PeakMemory(torch.device("cpu"))] + [PeakMemory(device)] * (device.type == "cuda")
    model = build_model(config, device).eval()
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
        write_fasta(fasta, sequences)
        start = time.perf_counter()
        EmbeddingCache.build(
            model,
            sequences,
            directory=scratch / "cache",
            dtype=args.cache_dtype,
            windowing=CROP,
        )
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        summary = predict(
            model,
            PredictFiles(scratch / "scores.tsv", fasta=fasta),
            PredictOptions(tile=args.tile, cache_dtype=args.cache_dtype),
            PredictRun(cache_dir=scratch / "cache", progress=False),
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
    naive, probabilities = naive_pairs_per_second(model, sequences, sample, args.naive_batch)
    worst = max(abs(p - cached[pair]) for p, pair in zip(probabilities, sample, strict=True))
    print(
        f"naive: {len(sample)} sampled pairs in batches of {args.naive_batch}: {naive:,.2f} "
        f"pairs/s -> {n_pairs / naive:,.0f} s extrapolated to all pairs "
        f"(largest |difference| from the cached scores: {worst:.1e}, fp16 states)"
    )
    print(f"speed-up of encode-once: {fast / naive:,.1f}x end to end")
    print(
        f"cross-attention heads {model.config.cross_attention_heads}, cache {args.cache_dtype}, "
        f"tile {args.tile}, naive batch {args.naive_batch}"
    )
    print(", ".join(memory.describe() for memory in memories))


if __name__ == "__main__":
    main()
