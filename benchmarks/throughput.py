"""Training-step throughput of SE-CAI: our batching against a naive baseline, in one run.

Both run the same SECAI model (LoRA on query/value, focal loss, AdamW) on the same pairs,
sampled (seeded) from a real pair file with its real lengths (cropped at 1,022):

* ours: token-budget batches from `ppi_dist.data.PairBatches` (length-sorted buffer, what
  training runs), ONE encoder call per step on the batch's distinct sequences packed
  several to a row (`ppi_dist.packing`), SDPA attention in ESM-2; bf16 autocast and
  activation checkpointing on GPU.
* baseline: fixed-size random batches, A and B each padded to their own longest and encoded
  in TWO encoder calls (no dedup), eager attention in ESM-2; the same cross-attention and
  head afterwards, same precision and checkpointing as ours.

With --compile, "ours+compile" is timed too: the same step on a copy of the model (sharing its
frozen weights) whose layers and head `ppi_dist.speed.compile_model` compiled; its warm-up steps
hold the compilation and are timed and printed apart.

Warm-up steps are not timed. Each repeat times all measured pairs once per method (ours,
ours+compile and baseline alternate, so drift hits all); the medians over repeats are reported.

    python benchmarks/throughput.py --encoder 8M   # CPU: ~50 min on a loaded 2-core box
    python benchmarks/throughput.py --encoder 650M-shape --max_tokens 8192 16384 32768
    python benchmarks/throughput.py --encoder 650M-shape --max_tokens 65536 --compile --no_baseline
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: `python benchmarks/throughput.py`
    sys.path.insert(0, str(REPO))

from benchmarks.flops import (  # noqa: E402
    PEAK_TFLOPS,
    EncoderShape,
    StepFlops,
    secai_step_flops,
)
from ppi_dist import attention  # noqa: E402
from ppi_dist.config import TrainConfig  # noqa: E402
from ppi_dist.data import PairBatches, PairSource, read_fasta  # noqa: E402
from ppi_dist.loss import focal_loss  # noqa: E402
from ppi_dist.model import (  # noqa: E402
    SECAI,
    SECAIConfig,
    base_encoder,
    esm2_650m_config,
    masked_max_mean,
    residue_mask,
    tiny_esm2_config,
)
from ppi_dist.packing import encoder_tokens  # noqa: E402
from ppi_dist.sequences import ESM2_MAX_RESIDUES, tokenize  # noqa: E402
from ppi_dist.speed import compile_model, compiled_graphs, default_backend  # noqa: E402
from ppi_dist.train import train_step  # noqa: E402

SHARED = REPO.parent / "shared"
DEFAULT_PAIRS = SHARED / "data" / "bernett-gold" / "train.tsv"
DEFAULT_FASTA = SHARED / "data" / "bernett-gold" / "sequences.fasta"
ENCODER_8M = SHARED / "models" / "esm2_t6_8M"
STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


# --------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class SampledPair:
    protein_a: str
    protein_b: str
    label: int


def sample_pairs(
    pair_file: Path, fasta: Path, count: int, seed: int, fixed_length: int | None
) -> tuple[list[SampledPair], dict[str, str]]:
    """`count` pairs drawn without replacement (seeded) and the sequences they use.

    With `fixed_length`, the same pairs get random sequences of exactly that length instead;
    without the pair file too (a bare GPU machine), pairs of a random pool of proteins.
    """
    if fixed_length is not None and not pair_file.is_file():
        return _synthetic_pairs(count, seed, fixed_length)
    with open(pair_file, newline="") as handle:
        rows = [
            SampledPair(r["protein_a"], r["protein_b"], int(r["label"]))
            for r in csv.DictReader(handle, delimiter="\t")
        ]
    rng = random.Random(seed)
    pairs = rng.sample(rows, min(count, len(rows)))
    needed = {p.protein_a for p in pairs} | {p.protein_b for p in pairs}
    if fixed_length is not None:
        sequences = {
            name: "".join(rng.choice(STANDARD_RESIDUES) for _ in range(fixed_length))
            for name in sorted(needed)
        }
    else:
        every = read_fasta(fasta)
        sequences = {name: every[name] for name in needed}
    return pairs, sequences


def _synthetic_pairs(
    count: int, seed: int, length: int
) -> tuple[list[SampledPair], dict[str, str]]:
    """Pairs of random proteins of one length, each protein in about 3 pairs.

    (A 4,096-pair sample of Bernett train holds 2,646 proteins: about 3 pairs each.)
    """
    rng = random.Random(seed)
    names = [f"S{i}" for i in range(max(2, 2 * count // 3))]
    pairs = [
        SampledPair(rng.choice(names), rng.choice(names), rng.randint(0, 1)) for _ in range(count)
    ]
    used = sorted({p.protein_a for p in pairs} | {p.protein_b for p in pairs})
    sequences = {n: "".join(rng.choice(STANDARD_RESIDUES) for _ in range(length)) for n in used}
    return pairs, sequences


def write_pair_files(
    directory: Path, pairs: list[SampledPair], sequences: dict[str, str]
) -> tuple[Path, Path]:
    """The sample as a pair file + FASTA, so the real data layer reads it."""
    pair_path, fasta_path = directory / "pairs.tsv", directory / "sequences.fasta"
    lines = ["protein_a\tprotein_b\tlabel"]
    lines += [f"{p.protein_a}\t{p.protein_b}\t{p.label}" for p in pairs]
    pair_path.write_text("\n".join(lines) + "\n")
    fasta_path.write_text("".join(f">{name}\n{seq}\n" for name, seq in sequences.items()))
    return pair_path, fasta_path


def our_batches(
    pair_path: Path, fasta_path: Path, max_tokens: int, seed: int, sort_buffer: int
) -> list[dict]:
    """Every token-budget batch of the sample, in the data layer's (shuffled) order."""
    source = PairSource(pair_path, fasta=fasta_path)
    batches = PairBatches(
        source, seed=seed, training=True, max_tokens=max_tokens, sort_buffer=sort_buffer
    )
    return list(batches)


def baseline_batches(rows: list[tuple[str, str, float]], batch_size: int, seed: int) -> list[dict]:
    """Fixed-size random batches of (sequence_a, sequence_b, label), A and B padded apart.

    `seed=None` keeps the given order (tests compare with our batches row by row).
    """
    rows = list(rows)
    if seed is not None:
        random.Random(seed).shuffle(rows)
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids_a, mask_a = tokenize([a for a, _, _ in chunk])
        ids_b, mask_b = tokenize([b for _, b, _ in chunk])
        batches.append(
            {
                "input_ids_a": ids_a,
                "attention_mask_a": mask_a,
                "input_ids_b": ids_b,
                "attention_mask_b": mask_b,
                "labels": torch.tensor([label for _, _, label in chunk], dtype=torch.float32),
            }
        )
    return batches


def pair_rows_of(batches: list[dict]) -> list[tuple[str, str, float]]:
    """The (cropped) sequences and labels of the pairs in our batches, for the baseline."""
    rows = []
    for batch in batches:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        sequences = [_detokenize(ids[i], mask[i]) for i in range(ids.shape[0])]
        for a, b, label in zip(batch["index_a"], batch["index_b"], batch["labels"], strict=True):
            rows.append((sequences[a], sequences[b], float(label)))
    return rows


_ID_TO_LETTER: dict[int, str] = {}


def _detokenize(ids: torch.Tensor, mask: torch.Tensor) -> str:
    """Residues of one tokenised row (the exact crop the data layer chose)."""
    if not _ID_TO_LETTER:
        from ppi_dist.sequences import esm2_tokenizer

        vocab = esm2_tokenizer().get_vocab()
        _ID_TO_LETTER.update({i: t for t, i in vocab.items() if len(t) == 1})
    length = int(mask.sum())
    return "".join(_ID_TO_LETTER[int(i)] for i in ids[1 : length - 1])


# --------------------------------------------------------------------------- forwards


def naive_forward(model: SECAI, batch: dict) -> torch.Tensor:
    """Baseline: encode the A batch, then the B batch (no dedup), then `pair_logits`' math."""
    mask_a = residue_mask(batch["attention_mask_a"])
    mask_b = residue_mask(batch["attention_mask_b"])
    # Padded rows as given (`model.encode` would pack them).
    states_a = model.encoder(
        input_ids=batch["input_ids_a"], attention_mask=batch["attention_mask_a"]
    ).last_hidden_state
    states_b = model.encoder(
        input_ids=batch["input_ids_b"], attention_mask=batch["attention_mask_b"]
    ).last_hidden_state
    return naive_pair_logits(model, states_a, mask_a, states_b, mask_b)


def naive_pair_logits(model: SECAI, states_a, mask_a, states_b, mask_b) -> torch.Tensor:
    """The card's formula written out per pair (each pair's A and B projected again): what
    `SECAI.pair_logits` computes with each distinct protein projected once."""
    v_a = masked_max_mean(model.cross_attention(states_a, states_b, mask_b), mask_a)
    v_b = masked_max_mean(model.cross_attention(states_b, states_a, mask_a), mask_b)
    if model.config.symmetric == "none":
        return model.head(v_a, v_b)
    forward, backward = model.head(torch.cat([v_a, v_b]), torch.cat([v_b, v_a])).chunk(2)
    return (forward + backward) / 2


# --------------------------------------------------------------------------- accounting


@dataclass
class BatchStats:
    pairs: int
    pair_tokens: int  # tokens of both sequences of every pair: the work asked for
    encoded_real: int  # non-padding tokens the encoder ran on
    encoded_padded: int  # tokens the encoder ran on, padding included
    flops: StepFlops


def our_stats(batch: dict, shape: EncoderShape, settings: Settings) -> BatchStats:
    mask = batch["attention_mask"]
    lengths = mask.sum(dim=1)
    width = mask.shape[1]
    rows = encoder_tokens(mask) // width  # `model.encode` packs the sequences
    pairs = len(batch["index_a"])
    flops = secai_step_flops(
        shape,
        [[width] * rows],
        [(width, width)] * pairs,
        lora_r=settings.lora_r,
        head_hidden=settings.head_hidden,
        checkpointing=settings.activation_checkpointing,
    )
    return BatchStats(
        pairs=pairs,
        pair_tokens=int(lengths[batch["index_a"]].sum() + lengths[batch["index_b"]].sum()),
        encoded_real=int(lengths.sum()),
        encoded_padded=rows * width,
        flops=flops,
    )


def baseline_stats(batch: dict, shape: EncoderShape, settings: Settings) -> BatchStats:
    mask_a, mask_b = batch["attention_mask_a"], batch["attention_mask_b"]
    pairs, width_a, width_b = mask_a.shape[0], mask_a.shape[1], mask_b.shape[1]
    flops = secai_step_flops(
        shape,
        [[width_a] * pairs, [width_b] * pairs],
        [(width_a, width_b)] * pairs,
        lora_r=settings.lora_r,
        head_hidden=settings.head_hidden,
        checkpointing=settings.activation_checkpointing,
    )
    real = int(mask_a.sum() + mask_b.sum())
    return BatchStats(pairs, real, real, mask_a.numel() + mask_b.numel(), flops)


# --------------------------------------------------------------------------- timing


class PeakMemory:
    """Peak memory of what runs inside: CUDA allocator peak, or process peak RSS on CPU.

    On Linux, writing 5 to /proc/self/clear_refs resets VmHWM (the RSS high-water mark), so
    each method's peak is its own; the RSS includes the model, Python and the batches.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        import resource  # not Linux: the peak of the whole process, not resettable

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def set_encoder_attention(model: SECAI, implementation: str) -> None:
    """Switch ESM-2's attention kernel in place, weights untouched: a transformers
    implementation ("sdpa", "eager", ...) or one of our packed kernels ("cudnn", "flex",
    "varlen", `ppi_dist.attention`), which run through `encoder_attention` as in training."""
    base = base_encoder(model.encoder)
    ours = implementation in attention.ENCODER_ATTENTION and implementation != "sdpa"
    model.config.encoder_attention = implementation if ours else "sdpa"
    base.set_attn_implementation(attention.IMPLEMENTATION if ours else implementation)


def time_our_steps(
    model: SECAI,
    optimizer: torch.optim.Optimizer,
    accelerator: Accelerator,
    batches: list[dict],
    settings: Settings,
) -> list[float]:
    """Seconds of each training step exactly as the trainer runs it: `ppi_dist.train.train_step`
    (one encoder call on packed rows, focal loss, the step's all-reduce, backward, clip,
    AdamW), on batches carrying their packed layout, copied to the device as the trainer does."""
    device = torch.device(settings.device)
    config = TrainConfig(focal_gamma=2.0)
    seconds = []
    for batch in batches:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        on_device = {
            k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()
        }
        train_step(model, on_device, optimizer, accelerator, config, stop_requested=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def time_steps(
    model: SECAI,
    optimizer: torch.optim.Optimizer,
    forward: Callable[[SECAI, dict], torch.Tensor],
    batches: list[dict],
    settings: Settings,
) -> list[float]:
    """Seconds of each baseline training step (forward, focal loss, backward, AdamW step)."""
    device = torch.device(settings.device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if settings.bf16
        else contextlib.nullcontext()
    )
    seconds = []
    for batch in batches:
        on_device = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = forward(model, on_device)
        loss = focal_loss(logits, on_device["labels"], gamma=2.0, weight=on_device.get("weight"))
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    encoder: str = "8M"
    pairs: str = str(DEFAULT_PAIRS)
    fasta: str = str(DEFAULT_FASTA)
    fixed_length: int | None = None
    num_pairs: int = 24
    sort_buffer: int = 4096
    max_tokens: list[int] = field(default_factory=lambda: [16384])
    baseline_batch_size: int = 8
    baseline: bool = True
    warmup: int = 1
    repeats: int = 3
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    activation_checkpointing: bool = False
    activation_checkpointing_every: int = 1
    attn_implementation: str = "sdpa"
    baseline_attn_implementation: str = "eager"
    compile: bool = False
    lora_r: int = 8
    freeze_encoder: bool = False  # no LoRA (profile_step.py's frozen mode; no flag here)
    cross_attention_heads: int = 8
    head_hidden: int = 512
    lr: float = 1e-4
    peak_tflops: float | None = None
    threads: int | None = None
    json_out: str | None = None


def parse_args(argv: list[str] | None = None) -> Settings:
    default = Settings()
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--encoder",
        default=default.encoder,
        help="tiny | 8M (../shared/models/esm2_t6_8M) | 650M-shape (random weights) "
        "| an ESM-2 name or path",
    )
    p.add_argument("--pairs", default=default.pairs, help="pair file (TSV) to sample from")
    p.add_argument("--fasta", default=default.fasta)
    p.add_argument(
        "--fixed_length",
        type=int,
        default=None,
        help="random sequences of exactly this many residues instead of the real ones",
    )
    p.add_argument(
        "--num_pairs",
        type=int,
        default=default.num_pairs,
        help="pairs timed per repeat and method (whole batches: a few more)",
    )
    p.add_argument(
        "--sort_buffer",
        type=int,
        default=default.sort_buffer,
        help="pairs sampled and batched together, as the data layer does in training",
    )
    p.add_argument(
        "--max_tokens",
        type=int,
        nargs="+",
        default=default.max_tokens,
        help="token budget(s) of our batches; several = a sweep on one model",
    )
    p.add_argument("--baseline_batch_size", type=int, default=default.baseline_batch_size)
    p.add_argument("--no_baseline", dest="baseline", action="store_false")
    p.add_argument(
        "--warmup",
        type=int,
        default=default.warmup,
        help="untimed steps per method, on its first measured batches",
    )
    p.add_argument("--repeats", type=int, default=default.repeats)
    p.add_argument("--seed", type=int, default=default.seed)
    p.add_argument("--device", default="cuda" if gpu else "cpu")
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: on for CUDA, off on CPU)",
    )
    p.add_argument(
        "--activation_checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: on for CUDA, off on CPU",
    )
    p.add_argument(
        "--activation_checkpointing_every",
        type=int,
        default=default.activation_checkpointing_every,
        help="with checkpointing, recompute every n-th encoder layer only (1: all)",
    )
    p.add_argument(
        "--attn_implementation",
        default=default.attn_implementation,
        help="ESM-2 attention for ours: sdpa, cudnn, flex or varlen (ppi_dist.attention; "
        "all but sdpa on CUDA), or a transformers implementation (eager, ...)",
    )
    p.add_argument("--baseline_attn_implementation", default=default.baseline_attn_implementation)
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time ours+compile: ppi_dist.speed.compile_model on a copy of the model",
    )
    p.add_argument("--lora_r", type=int, default=default.lora_r)
    p.add_argument("--cross_attention_heads", type=int, default=default.cross_attention_heads)
    p.add_argument("--head_hidden", type=int, default=default.head_hidden)
    p.add_argument("--lr", type=float, default=default.lr)
    p.add_argument(
        "--peak_tflops",
        type=float,
        default=None,
        help="peak for MFU (default: 989, H100 SXM / H200 dense bf16, on CUDA; none on CPU)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json_out", default=None, help="append one JSON line per result here")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.bf16 is None:
        args.bf16 = cuda
    if args.activation_checkpointing is None:
        args.activation_checkpointing = cuda
    if args.peak_tflops is None and cuda:
        args.peak_tflops = PEAK_DEFAULT_TFLOPS
    return Settings(**vars(args))


PEAK_DEFAULT_TFLOPS = PEAK_TFLOPS["H100 SXM"]  # dense bf16; the H200 has the same compute


def build_model(settings: Settings) -> SECAI:
    common = {
        "lora_r": settings.lora_r,
        "lora_alpha": 2 * settings.lora_r,
        "cross_attention_heads": settings.cross_attention_heads,
        "head_hidden": settings.head_hidden,
        "activation_checkpointing": settings.activation_checkpointing,
        "activation_checkpointing_every": settings.activation_checkpointing_every,
        "freeze_encoder": settings.freeze_encoder,
    }
    if settings.encoder in ("tiny", "650M-shape"):
        shape = tiny_esm2_config() if settings.encoder == "tiny" else esm2_650m_config()
        config = SECAIConfig(encoder=None, encoder_config=shape, **common)
    else:
        path = ENCODER_8M if settings.encoder == "8M" else settings.encoder
        config = SECAIConfig(encoder=str(path), **common)
    torch.manual_seed(settings.seed)
    # Built on the target device: a 650M random init on CPU alone takes about a minute.
    with torch.device(settings.device):
        model = SECAI(config)
    model.to(settings.device).train()
    set_encoder_attention(model, settings.attn_implementation)
    return model


def compiled_twin(model: SECAI) -> tuple[SECAI, list[str]]:
    """A copy of `model` with `compile_model` applied (and the names it compiled): its own
    trainable weights (the same values), the frozen ones shared, so the encoder's weights are
    not held twice (peak memory stays comparable with eager runs)."""
    shared = {id(p): p for p in model.parameters() if not p.requires_grad}
    twin = copy.deepcopy(model, memo=shared)
    return twin, compile_model(twin)


# --------------------------------------------------------------------------- report


def machine_report(device: torch.device) -> list[str]:
    import peft
    import transformers

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import os

    lines = [
        f"machine: {cpu}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} (other processes share it)",
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, peft {peft.__version__}",
    ]
    if device.type == "cuda":
        lines.append(f"GPU: {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})")
    else:
        lines.append("GPU: none (CPU run)")
    return lines


@dataclass
class MethodResult:
    name: str
    max_tokens: int | None
    batch_size: int | None
    steps: int
    pairs: int
    pairs_per_s: float
    pair_tokens_per_s: float
    encoded_real_tokens_per_s: float
    encoded_padded_tokens_per_s: float
    padded_over_real: float
    pair_tokens_over_encoded: float  # > 1: dedup saved encoder work
    median_step_s: float
    model_gflop_per_pair: float
    model_tflops_per_s: float
    mfu: float | None
    hfu: float | None
    peak_memory_gb: float
    memory_kind: str
    repeat_pairs_per_s: list[float]


def summarise(
    name: str,
    stats: list[BatchStats],
    repeats: list[list[float]],
    peak: int,
    memory: PeakMemory,
    settings: Settings,
    max_tokens: int | None = None,
    batch_size: int | None = None,
) -> MethodResult:
    pairs = sum(s.pairs for s in stats)
    pair_tokens = sum(s.pair_tokens for s in stats)
    real = sum(s.encoded_real for s in stats)
    padded = sum(s.encoded_padded for s in stats)
    model_flops = sum(s.flops.model for s in stats)
    executed = sum(s.flops.executed for s in stats)
    totals = [sum(seconds) for seconds in repeats]
    seconds = statistics.median(totals)
    peak_flops = settings.peak_tflops * 1e12 if settings.peak_tflops else None
    return MethodResult(
        name=name,
        max_tokens=max_tokens,
        batch_size=batch_size,
        steps=len(stats),
        pairs=pairs,
        pairs_per_s=pairs / seconds,
        pair_tokens_per_s=pair_tokens / seconds,
        encoded_real_tokens_per_s=real / seconds,
        encoded_padded_tokens_per_s=padded / seconds,
        padded_over_real=padded / real,
        pair_tokens_over_encoded=pair_tokens / real,
        median_step_s=statistics.median(s for r in repeats for s in r),
        model_gflop_per_pair=model_flops / pairs / 1e9,
        model_tflops_per_s=model_flops / seconds / 1e12,
        mfu=model_flops / seconds / peak_flops if peak_flops else None,
        hfu=executed / seconds / peak_flops if peak_flops else None,
        peak_memory_gb=peak / 2**30,
        memory_kind=memory.kind,
        repeat_pairs_per_s=[pairs / t for t in totals],
    )


def print_result(result: MethodResult) -> None:
    how = (
        f"max_tokens {result.max_tokens}"
        if result.max_tokens is not None
        else f"batch_size {result.batch_size}"
    )
    mfu = (
        f"  MFU {100 * result.mfu:.1f}% (HFU {100 * result.hfu:.1f}%)"
        if result.mfu is not None
        else ""
    )
    repeats = ", ".join(f"{x:.2f}" for x in result.repeat_pairs_per_s)
    print(
        f"{result.name:9s} [{how}] {result.pairs} pairs in {result.steps} steps: "
        f"{result.pairs_per_s:.2f} pairs/s (repeats: {repeats}), "
        f"median step {result.median_step_s:.2f} s\n"
        f"          pair tokens {result.pair_tokens_per_s:,.0f}/s, encoder real tokens "
        f"{result.encoded_real_tokens_per_s:,.0f}/s, encoder padded tokens "
        f"{result.encoded_padded_tokens_per_s:,.0f}/s\n"
        f"          padded/real {result.padded_over_real:.2f}, pair tokens/encoded real "
        f"{result.pair_tokens_over_encoded:.2f} (dedup), model FLOPs "
        f"{result.model_gflop_per_pair:.1f} GFLOP/pair, {1000 * result.model_tflops_per_s:.1f} "
        f"GFLOP/s{mfu}, peak memory {result.peak_memory_gb:.2f} GiB ({result.memory_kind})"
    )


# --------------------------------------------------------------------------- main


def select_measured(batches: list[dict], num_pairs: int, warmup: int) -> tuple[list, list]:
    """Warm-up batches (untimed), then whole batches until `num_pairs` pairs.

    The batches come shuffled, so the measured ones are a random draw of the sample's
    batches. When the sample is too small for separate warm-up batches (dry runs), the first
    measured batches serve as warm-up.
    """

    def take(candidates: list[dict]) -> list[dict]:
        chosen, count = [], 0
        for batch in candidates:
            if count >= num_pairs:
                break
            chosen.append(batch)
            count += len(batch["index_a"])
        return chosen if count >= num_pairs else []

    measured = take(batches[warmup:])
    if measured:
        return batches[:warmup], measured
    measured = take(batches)
    if not measured:
        pairs = sum(len(b["index_a"]) for b in batches)
        raise ValueError(f"the sample holds only {pairs} pairs; raise --sort_buffer")
    return measured[:warmup], measured


def record(result: MethodResult, settings: Settings) -> None:
    """Append one JSON line at once, so a run cut short by a timeout keeps what it measured."""
    if settings.json_out:
        row = {
            "encoder": settings.encoder,
            "device": settings.device,
            "fixed_length": settings.fixed_length,
            "bf16": settings.bf16,
            "activation_checkpointing": settings.activation_checkpointing,
            "attention": settings.attn_implementation,
            **asdict(result),
        }
        with open(settings.json_out, "a") as handle:
            handle.write(json.dumps(row) + "\n")


def run(settings: Settings) -> list[MethodResult]:
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    for line in machine_report(device):
        print(line)
    print("settings: " + json.dumps(asdict(settings)))
    print(
        f"peak for MFU: {settings.peak_tflops or 'none'} TFLOP/s"
        + (
            " (H100 SXM / H200 dense bf16 assumed)"
            if settings.peak_tflops == PEAK_DEFAULT_TFLOPS
            else ""
        )
    )

    pairs, sequences = sample_pairs(
        Path(settings.pairs),
        Path(settings.fasta),
        settings.sort_buffer,
        settings.seed,
        settings.fixed_length,
    )
    lengths = [min(len(s), ESM2_MAX_RESIDUES) for s in sequences.values()]
    print(
        f"sample: {len(pairs)} pairs from {settings.pairs}, {len(sequences)} proteins, "
        f"cropped length mean {statistics.mean(lengths):.0f}, "
        f"median {statistics.median(lengths):.0f}, max {max(lengths)}"
    )

    model = build_model(settings)
    shape = EncoderShape.from_config(model.encoder.config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr)
    # Ours runs through the trainer's Accelerator set-up and step; the baseline keeps its own.
    accelerator = Accelerator(
        cpu=device.type == "cpu", mixed_precision="bf16" if settings.bf16 else "no"
    )
    ours_model, ours_optimizer = accelerator.prepare(model, optimizer)
    print(
        f"model: encoder {settings.encoder} (d={shape.hidden}, {shape.layers} layers), "
        f"{sum(p.numel() for p in trainable):,} trainable of "
        f"{sum(p.numel() for p in model.parameters()):,} parameters; ours attention "
        f"{settings.attn_implementation}, baseline attention "
        f"{settings.baseline_attn_implementation}; bf16 {settings.bf16}, activation "
        f"checkpointing {settings.activation_checkpointing}"
    )

    compiled = None
    if settings.compile:
        twin, names = compiled_twin(model)
        twin_optimizer = torch.optim.AdamW(
            [p for p in twin.parameters() if p.requires_grad], lr=settings.lr
        )
        compiled = accelerator.prepare(twin, twin_optimizer)
        shown = names if len(names) < 4 else [names[0], "...", *names[-2:]]
        print(
            f"ours+compile: {len(names)} modules compiled ({', '.join(shown)}), backend "
            f"{default_backend()}, dynamic shapes"
        )

    memory = PeakMemory(device)
    results: list[MethodResult] = []
    baseline_result: MethodResult | None = None
    with tempfile.TemporaryDirectory() as tmp:
        pair_path, fasta_path = write_pair_files(Path(tmp), pairs, sequences)
        for index, max_tokens in enumerate(settings.max_tokens):
            batches = our_batches(
                pair_path, fasta_path, max_tokens, settings.seed, settings.sort_buffer
            )
            warm, measured = select_measured(batches, settings.num_pairs, settings.warmup)
            ours_stats = [our_stats(b, shape, settings) for b in measured]
            # The baseline runs once, on the pairs of the first budget: a sweep compares every
            # budget with the same baseline.
            run_baseline = settings.baseline and index == 0
            if run_baseline:
                rows = pair_rows_of(measured)
                base = baseline_batches(rows, settings.baseline_batch_size, settings.seed)
                base_warm = base[: settings.warmup]
                base_stats = [baseline_stats(b, shape, settings) for b in base]

            ours_times, base_times, ours_peak, base_peak = [], [], 0, 0
            compiled_times, compiled_peak = [], 0
            time_our_steps(ours_model, ours_optimizer, accelerator, warm, settings)
            if compiled is not None:  # the compilation happens here, on the warm-up batches
                before = compiled_graphs()
                seconds = sum(time_our_steps(*compiled, accelerator, warm, settings))
                graphs = compiled_graphs()
                print(
                    f"ours+compile warm-up at max_tokens {max_tokens}: {len(warm)} step(s) in "
                    f"{seconds:.1f} s, {graphs - before} graph(s) compiled"
                )
            if run_baseline:
                set_encoder_attention(model, settings.baseline_attn_implementation)
                time_steps(model, optimizer, naive_forward, base_warm, settings)
                set_encoder_attention(model, settings.attn_implementation)
            for repeat in range(settings.repeats):
                print(
                    f"  repeat {repeat + 1}/{settings.repeats} (max_tokens {max_tokens})...",
                    file=sys.stderr,
                    flush=True,
                )
                memory.reset()
                ours_times.append(
                    time_our_steps(ours_model, ours_optimizer, accelerator, measured, settings)
                )
                ours_peak = max(ours_peak, memory.peak_bytes())
                if compiled is not None:
                    memory.reset()
                    seconds = time_our_steps(*compiled, accelerator, measured, settings)
                    compiled_times.append(seconds)
                    compiled_peak = max(compiled_peak, memory.peak_bytes())
                if run_baseline:
                    set_encoder_attention(model, settings.baseline_attn_implementation)
                    memory.reset()
                    base_times.append(time_steps(model, optimizer, naive_forward, base, settings))
                    base_peak = max(base_peak, memory.peak_bytes())
                    set_encoder_attention(model, settings.attn_implementation)

            ours = summarise(
                "ours", ours_stats, ours_times, ours_peak, memory, settings, max_tokens=max_tokens
            )
            if run_baseline:
                baseline_result = summarise(
                    "baseline",
                    base_stats,
                    base_times,
                    base_peak,
                    memory,
                    settings,
                    batch_size=settings.baseline_batch_size,
                )
                print_result(baseline_result)
                results.append(baseline_result)
                record(baseline_result, settings)
            print_result(ours)
            results.append(ours)
            record(ours, settings)
            if compiled is not None:
                fast = summarise(
                    "ours+compile",
                    ours_stats,
                    compiled_times,
                    compiled_peak,
                    memory,
                    settings,
                    max_tokens=max_tokens,
                )
                print_result(fast)
                results.append(fast)
                record(fast, settings)
                recompiled = compiled_graphs() - graphs  # compilation inside the timed steps
                warning = f" ({recompiled} graph(s) compiled while timed)" if recompiled else ""
                print(
                    f"RATIO compiled/eager pairs/s at max_tokens {max_tokens}: "
                    f"{fast.pairs_per_s / ours.pairs_per_s:.2f}x{warning}"
                )
            if baseline_result is not None:
                ratio = ours.pairs_per_s / baseline_result.pairs_per_s
                later = " (baseline timed on the first budget's pairs)" if index else ""
                print(
                    f"RATIO ours/baseline pairs/s at max_tokens {max_tokens}: {ratio:.2f}x{later}"
                )
    return results


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
