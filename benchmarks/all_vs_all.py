"""All-vs-all prediction: encode-once (embedding cache, then `predict` over every unordered
pair of the first --proteins proteins) against the naive path (both proteins of every pair
through the encoder, on a seeded sample of --naive_pairs, extrapolated), in one run. Other
flags are the trainer's (random head weights: speed does not depend on them).

    python -m benchmarks.all_vs_all --proteins 20 --naive_pairs 12
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
    device = next(model.parameters()).device
    probabilities = []
    start = time.perf_counter()
    for i in range(0, len(pairs), batch_pairs):
        chunk = pairs[i : i + batch_pairs]
        texts = [_centred(sequences[p]) for pair in chunk for p in pair]
        input_ids, attention_mask = tokenize(texts)
        index_a = torch.arange(0, 2 * len(chunk), 2)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        batch |= {"index_a": index_a, "index_b": index_a + 1}
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
        cache = scratch / "cache"
        EmbeddingCache.build(
            model, sequences, directory=cache, dtype=args.cache_dtype, windowing=CROP
        )
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        summary = predict(
            model,
            PredictFiles(scratch / "scores.tsv", fasta=fasta),
            PredictOptions(tile=args.tile, cache_dtype=args.cache_dtype),
            PredictRun(cache_dir=cache, progress=False),
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
