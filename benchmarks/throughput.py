"""Training steps of SE-CAI timed, and profiled: the trainer's own set-up and step on its
batches ("ours"; a frozen encoder reads the embedding cache built for the sample) against
the naive baseline on the same pairs (fixed-size random batches, A and B padded apart and
encoded in two calls with eager attention, then the model's pair maths, through the same
step), alternating within every repeat; with --compile, ours on a compiled twin too.
--profile_steps N then profiles N steps of each (`ppi_dist.training.profiling`).

    python -m benchmarks.throughput
    python -m benchmarks.throughput --encoder_shape 650M --max_tokens 8192 16384 32768
    python -m benchmarks.throughput --dry --no_baseline --profile_steps 2 --compile true
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import random
import statistics
from collections.abc import Iterator
from dataclasses import asdict

import torch
from torch import nn

from benchmarks import core
from ppi_dist.data.pairs import Pair, PairSource, sequences_of
from ppi_dist.data.sequences import ESM2_MAX_RESIDUES, esm2_tokenizer, tokenize
from ppi_dist.models.compile import compile_model, compiled_graphs, default_backend
from ppi_dist.models.encoder import base_encoder
from ppi_dist.models.secai import SECAI, residue_mask
from ppi_dist.tables import markdown_table
from ppi_dist.training.config import TrainConfig
from ppi_dist.training.flops import NO_BATCHES, PEAK_TFLOPS, ModelShape, batch_stats
from ppi_dist.training.machine import PeakMemory, machine_report
from ppi_dist.training.profiling import StepProfiler, report


def pairs_of(batches: list[dict]) -> list[Pair]:
    """The pairs of our batches with the (cropped) sequences the data layer chose."""
    letters = {i: token for token, i in esm2_tokenizer().get_vocab().items() if len(token) == 1}
    pairs = []
    for batch in batches:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        sequences = []
        for row, length in zip(ids, mask.sum(dim=1).tolist(), strict=True):
            sequences.append("".join(letters[int(i)] for i in row[1 : length - 1]))
        sides = zip(batch["index_a"].tolist(), batch["index_b"].tolist(), strict=True)
        names = zip(batch["protein_a"], batch["protein_b"], strict=True)
        for (a, b), (name_a, name_b), label in zip(sides, names, batch["labels"], strict=True):
            pairs.append(Pair(name_a, name_b, sequences[a], sequences[b], float(label)))
    return pairs


def baseline_batches(pairs: list[Pair], batch_size: int, seed: int | None) -> list[dict]:
    """Fixed-size random batches, A and B tokenised and padded apart (`seed=None`: in order)."""
    pairs = list(pairs)
    if seed is not None:
        random.Random(seed).shuffle(pairs)
    batches = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        ids_a, mask_a = tokenize([p.sequence_a for p in chunk])
        ids_b, mask_b = tokenize([p.sequence_b for p in chunk])
        labels = torch.tensor([p.label for p in chunk], dtype=torch.float32)
        names = ("input_ids_a", "attention_mask_a", "input_ids_b", "attention_mask_b", "labels")
        batch = dict(zip(names, (ids_a, mask_a, ids_b, mask_b, labels), strict=True))
        batches.append(batch | {"weight": torch.ones(len(chunk))})
    return batches


@contextlib.contextmanager
def transformers_attention(model: SECAI, implementation: str) -> Iterator[None]:
    """ESM-2's attention switched in place to a transformers implementation, then back."""
    base = base_encoder(model.encoder)
    built = base.config._attn_implementation
    base.set_attn_implementation(implementation)
    try:
        yield
    finally:
        base.set_attn_implementation(built)


class NaiveSECAI(nn.Module):
    """`model` run the naive way on baseline batches: the A batch, then the B batch through
    the encoder as padded (eager attention), then the model's pair maths, pair i being row i
    of both sides."""

    def __init__(self, model: SECAI):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids_a: torch.Tensor,
        attention_mask_a: torch.Tensor,
        input_ids_b: torch.Tensor,
        attention_mask_b: torch.Tensor,
        **_: object,
    ) -> torch.Tensor:
        encoder = self.model.encoder
        with transformers_attention(self.model, "eager"):
            a = encoder(input_ids=input_ids_a, attention_mask=attention_mask_a).last_hidden_state
            b = encoder(input_ids=input_ids_b, attention_mask=attention_mask_b).last_hidden_state
        rows = torch.arange(a.shape[0], device=a.device)
        side_a, side_b = (a, residue_mask(attention_mask_a)), (b, residue_mask(attention_mask_b))
        return self.model.pair_logits(side_a, side_b, rows, rows)


def select_measured(batches: list[dict], num_pairs: int, warmup: int) -> tuple[list, list]:
    """Warm-up batches, then whole batches until `num_pairs` pairs (the batches come
    shuffled); a sample too small for both warms up on the first measured batches."""

    def take(candidates: list[dict]) -> list[dict]:
        chosen, count = [], 0
        for batch in candidates:
            if count >= num_pairs:
                break
            chosen.append(batch)
            count += len(batch["index_a"])
        return chosen if count >= num_pairs else []

    if measured := take(batches[warmup:]):
        return batches[:warmup], measured
    if not (measured := take(batches)):
        pairs = sum(len(b["index_a"]) for b in batches)
        raise ValueError(f"the sample holds only {pairs} pairs; raise --sort_buffer")
    return measured[:warmup], measured


def profile(step: core.TrainerStep, batches: list[dict], steps: int, device: torch.device) -> dict:
    """The summary of `steps` profiled steps of `step` on `batches` (cycled), after one."""
    profiler = StepProfiler(steps, device)
    for batch in itertools.islice(itertools.cycle(batches), steps + 1):
        with profiler.step():
            step(batch)
    return profiler.summary


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = core.step_parser(__doc__)
    add = parser.add_argument
    add("--dry", action="store_true", help="CPU, tiny shape, 60 residues, 2,048 tokens")
    add("--num_pairs", type=int, default=24, help="pairs timed per repeat (whole batches)")
    add("--max_tokens", type=int, nargs="+", default=[16384], help="several: a sweep")
    add("--baseline_batch_size", type=int, default=8)
    add("--no_baseline", dest="baseline", action="store_false")
    add("--warmup", type=int, default=1, help="untimed steps per method")
    add("--repeats", type=int, default=3)
    add("--peak_tflops", type=float, help="peak for MFU (default on CUDA: 989, dense bf16)")
    add("--profile_steps", type=int, default=0, help="profile this many steps of ours")
    add("--top", type=int, default=20, help="rows of the profile's top table")
    args, flags = parser.parse_known_args(argv)
    if args.dry:  # after the flags given: the dry run's shape and sizes win
        args.device, args.fixed_length = "cpu", 60
        args.max_tokens = [min(tokens, 2048) for tokens in args.max_tokens]
        flags = [*flags, "--encoder_shape", "tiny", "--sort_buffer", "64"]
    device = torch.device(args.device)
    config = core.trainer_config(parser, flags, device)
    if args.peak_tflops is None and device.type == "cuda":
        args.peak_tflops = PEAK_TFLOPS
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, config


def make_steps(
    model: SECAI, config: TrainConfig, device: torch.device, pairs: list[Pair]
) -> dict[str, core.TrainerStep]:
    """Ours through the trainer's set-up and step; with --compile, ours on a copy of `model`
    through `compile_model`, sharing its frozen weights (so peak memory stays comparable)."""
    steps = {"ours": core.TrainerStep(model, config, device, pairs)}
    if config.model.compile:
        frozen = {id(p): p for p in model.parameters() if not p.requires_grad}
        twin = copy.deepcopy(model, memo=frozen)
        names = compile_model(twin)
        shown = names if len(names) < 4 else [names[0], "...", *names[-2:]]
        print(
            f"ours+compile: {len(names)} modules compiled ({', '.join(shown)}), backend "
            f"{default_backend()}, dynamic shapes"
        )
        steps["ours+compile"] = core.TrainerStep(twin, config, device, pairs)
    return steps


def summary(method: core.Timed, peak_tflops: float | None) -> dict:
    """Rates over the median repeat; MFU and HFU against `peak_tflops` when given."""
    total, seconds = sum(method.stats, NO_BATCHES), method.seconds
    real, peak = total.encoded_real, peak_tflops * 1e12 if peak_tflops else None
    return {
        "name": method.name,
        "pairs": total.pairs,
        "pairs_per_s": total.pairs / seconds,
        "pair_tokens_per_s": total.pair_tokens / seconds,
        "padded_over_real": total.encoded_padded / real if real else None,
        "pair_tokens_over_encoded": total.pair_tokens / real if real else None,  # > 1: dedup
        "model_gflop_per_pair": total.flops.model / total.pairs / 1e9,
        "model_tflops_per_s": total.flops.model / seconds / 1e12,
        "mfu": total.flops.model / seconds / peak if peak else None,
        "hfu": total.flops.executed / seconds / peak if peak else None,
        "peak_memory_gb": method.peak_bytes / 2**30,
        "repeat_pairs_per_s": [total.pairs / sum(r) for r in method.repeats],
    }


def table_row(r: dict) -> tuple[str, ...]:
    repeats = ", ".join(f"{x:.2f}" for x in r["repeat_pairs_per_s"])
    mfu = f"{100 * r['mfu']:.1f}% ({100 * r['hfu']:.1f}%)" if r["mfu"] is not None else "-"
    ratios = (r["padded_over_real"], r["pair_tokens_over_encoded"])
    return (
        r["name"],
        r["budget"],
        r["attention"],
        f"{r['pairs_per_s']:.2f} ({repeats})",
        f"{r['pair_tokens_per_s']:,.0f}",
        *(f"{x:.2f}" if x else "-" for x in ratios),
        f"{r['model_gflop_per_pair']:.1f}",
        f"{1000 * r['model_tflops_per_s']:.1f}",
        mfu,
        f"{r['peak_memory_gb']:.2f}",
    )


TABLE = ("method", "budget", "attention (encoder, cross)", "pairs/s (repeats)", "pair tok/s")
TABLE += ("padded/real", "dedup", "GFLOP/pair", "achieved GFLOP/s", "MFU (HFU)", "peak GiB")


def time_budget(
    args: argparse.Namespace,
    config: TrainConfig,
    source: PairSource,
    steps: dict[str, core.TrainerStep],
    baseline: core.TrainerStep | None,
) -> list[dict]:
    """Ours (and ours+compile) on whole batches of `config`'s budget and, when given, the
    `baseline` on the same pairs in its own batches: timed in turn, then ours profiled."""
    device, max_tokens, ours = torch.device(args.device), config.data.max_tokens, steps["ours"]
    warm, measured = select_measured(ours.batches(source), args.num_pairs, args.warmup)
    cache = ours.prepare.cache  # a frozen encoder's: the stored lengths count its pair tokens
    lengths = torch.as_tensor(cache.index.lengths) if cache is not None else None
    shape = ModelShape.of(config.model.secai_config(), ours.model.encoder.config)
    stats = [batch_stats(shape, batch, lengths) for batch in measured]
    methods = [core.Timed(name, step, warm, measured, stats) for name, step in steps.items()]
    if baseline is not None:
        seed = config.optimization.seed
        naive = baseline_batches(pairs_of(measured), args.baseline_batch_size, seed)
        naive_stats = [batch_stats(shape, batch) for batch in naive]
        methods.append(core.Timed("baseline", baseline, naive[: args.warmup], naive, naive_stats))
    before = compiled_graphs()
    core.warm_up(methods, device)
    warmed = compiled_graphs()
    print(
        f"warm-up at max_tokens {max_tokens}, seconds: "
        + ", ".join(f"{m.name} {m.warm_seconds:.1f}" for m in methods)
        + f" ({warmed - before} graph(s) compiled)"
    )
    core.time_in_turn(methods, args.repeats, PeakMemory(device))
    if compiled_graphs() > warmed:  # compilation inside the timed steps
        print(f"WARNING: {compiled_graphs() - warmed} graph(s) compiled while timed")
    results, built = [], ours.model.config
    for method in methods:
        naive = method.name == "baseline"
        budget = f"batch_size {args.baseline_batch_size}" if naive else f"max_tokens {max_tokens}"
        attention = (
            f"{'eager' if naive else built.encoder_attention}, {built.cross_attention_kernel}"
        )
        result = summary(method, args.peak_tflops)
        result |= {"max_tokens": max_tokens, "budget": budget, "attention": attention}
        if not naive and args.profile_steps:
            result["profile"] = profile(method.step, measured, args.profile_steps, device)
        results.append(result)
    return results


def run(args: argparse.Namespace, config: TrainConfig) -> list[dict]:
    device = torch.device(args.device)
    print("\n".join(machine_report(device)))
    print("settings: " + json.dumps(vars(args)))
    secai = asdict(config.model.secai_config()) | {"encoder_config": config.model.encoder_shape}
    print("model settings: " + json.dumps(secai))
    assumed = " (H100 SXM / H200 dense bf16 assumed)" if args.peak_tflops == PEAK_TFLOPS else ""
    print(f"peak for MFU: {args.peak_tflops or 'none'} TFLOP/s{assumed}")
    pairs = core.sampled(args, config)
    sequences = sequences_of(pairs)
    lengths = [min(len(s), ESM2_MAX_RESIDUES) for s in sequences.values()]
    print(
        f"sample: {len(pairs)} pairs from {args.pairs}, {len(sequences)} proteins, cropped "
        f"length mean {statistics.mean(lengths):.0f}, median {statistics.median(lengths):.0f}, "
        f"max {max(lengths)}"
    )
    model = core.build_model(config, device)
    describe(model, config, device)
    results, reference = [], None
    with core.sample_source(pairs, config) as source:
        steps = make_steps(model, config, device, pairs)
        baseline = None
        if args.baseline and not config.model.secai.freeze_encoder:  # it needs tokens
            baseline = core.TrainerStep(NaiveSECAI(model), config, device)
        for index, max_tokens in enumerate(args.max_tokens):
            config.data.max_tokens = max_tokens  # the steps' batches follow it
            got = time_budget(args, config, source, steps, baseline if index == 0 else None)
            reference = print_budget(got, reference, args.top)
            results += got
    return results


def print_budget(got: list[dict], reference: dict | None, top: int) -> dict | None:
    """One budget's table, profiles and ratios; the baseline to compare later budgets with."""
    print("\n".join(markdown_table(TABLE, [table_row(r) for r in got])))
    by_name = {r["name"]: r for r in got}
    at = f"pairs/s at max_tokens {by_name['ours']['max_tokens']}"
    if profiles := {r["name"]: r["profile"] for r in got if "profile" in r}:
        print("\n".join(report(profiles, top)))
    ours = by_name["ours"]["pairs_per_s"]
    if "ours+compile" in by_name:
        print(f"RATIO compiled/eager {at}: {by_name['ours+compile']['pairs_per_s'] / ours:.2f}x")
    later = "" if "baseline" in by_name else " (baseline timed on the first budget's pairs)"
    reference = by_name.get("baseline", reference)
    if reference is not None:
        print(f"RATIO ours/baseline {at}: {ours / reference['pairs_per_s']:.2f}x{later}")
    return reference


def describe(model: SECAI, config: TrainConfig, device: torch.device) -> None:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"model: encoder {core.encoder_label(config)} (d={model.encoder.config.hidden_size}, "
        f"{model.encoder.config.num_hidden_layers} layers), {trainable:,} trainable of "
        f"{sum(p.numel() for p in model.parameters()):,} parameters; bf16 "
        f"{core.mixed_precision(config, device) == 'bf16'}, activation checkpointing "
        f"{model.config.activation_checkpointing}"
    )


def main(argv: list[str] | None = None) -> None:
    run(*parse_args(argv))


if __name__ == "__main__":
    main()
