"""FLOP model of one SE-CAI training step (ESM-2 + LoRA + cross-attention + head).

    python -m benchmarks.flops                      # the 650M shape, Bernett train
    python -m benchmarks.flops --mfu 0.35 --gpus 1 8 --max_tokens 16384 --skip_batching

Only matrix multiplications are counted (2 FLOPs per multiply-add); layer norms, softmax,
GELU, rotary embeddings, biases and the optimizer are left out (well under 1% here).

Per sequence of width L (tokens incl. <cls>/<eos>, padded width when padded), d = hidden,
f = intermediate (4d in ESM-2), n layers, r = LoRA rank on q and v:

    encoder forward   = n * (2 * (4 d^2 + 2 d f) * L   + 4 * L^2 * d)
                            (q,k,v,o + FFN matmuls)     (QK^T and AV over all heads)
    LoRA forward      = n * 2 * (2 * 2 r d) * L        (A then B, on q and v)

With LoRA on the last N layers (`--lora_layers N`), a step runs only those N (n := N
above); the n - N layers below run once per window, before training, into the trunk cache
(`trunk_build_flops`: their forward over every window of every protein).

Backward with a FROZEN encoder: a frozen weight needs no weight gradient, so each frozen
matmul costs only its input gradient, 1x its forward. QK^T and AV multiply two activations,
so both operands need a gradient: 2x. LoRA and the trainable parts (cross-attention, head)
need weight and input gradients: 2x. Activation checkpointing runs the encoder forward once
more in the backward pass (+1 encoder forward). Without LoRA (`freeze_encoder`) nothing in
the encoder needs a gradient, so its backward and recomputation are not run at all.

Cross-attention, per pair with widths La, Lb, both directions (A->B and B->A), shared W_Q,
W_K, W_V (d x d): projections 2 d^2 * 3 (La + Lb), scores + weighted sum 2 * 4 La Lb d.
Head: fc1 on [v_A, v_B, v_A - v_B, v_A * v_B] (8d -> h) for 2P rows (both orders, symmetric
"average") or P rows, then fc2 (h -> 1).

"model FLOPs" = forward + backward (what MFU is measured against); "executed FLOPs" adds the
checkpointing recomputation (hardware FLOPs, HFU). FlashAttention's own recomputation of the
scores in its backward pass is not counted in either.

The projection (`main`) counts an epoch of a pair file for a named encoder shape and the
trainer's model flags (`--encoder_shape`, `--lora_r`, `--head_hidden`,
`--activation_checkpointing`, `--max_tokens`; defaults: the 650M shape, checkpointing on).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from benchmarks.core import DEFAULT_FASTA, DEFAULT_PAIRS, trainer_config
from ppi_dist.data.batching import TokenBatches
from ppi_dist.data.pairs import PairSource
from ppi_dist.data.planner import BatchOptions
from ppi_dist.data.sequences import ESM2_MAX_RESIDUES
from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.packing import encoder_tokens

# Dense bf16 tensor-core peak (no sparsity), in TFLOP/s. H200 has the H100 SXM's compute.
PEAK_TFLOPS = {
    "H100 SXM": 989.0,
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "A100": 312.0,
}


@dataclass(frozen=True)
class EncoderShape:
    """What the FLOP model needs of an ESM-2 config."""

    hidden: int
    layers: int
    intermediate: int

    @classmethod
    def from_config(cls, config: dict | object) -> EncoderShape:
        get = config.get if isinstance(config, dict) else lambda key: getattr(config, key)
        return cls(get("hidden_size"), get("num_hidden_layers"), get("intermediate_size"))

    @property
    def matmul_params(self) -> int:
        """Weights of the per-token matmuls (non-embedding, no biases/norms)."""
        d, f = self.hidden, self.intermediate
        return self.layers * (4 * d * d + 2 * d * f)


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP model needs of an SE-CAI model: its encoder's shape and the sizes of
    what trains."""

    encoder: EncoderShape
    lora_r: int = 8
    """0: no LoRA (a frozen encoder, which no gradient passes through)."""
    lora_layers: int | None = None
    """LoRA on the last N layers, the only ones a step runs (None: every layer)."""
    head_hidden: int = 512
    symmetric: bool = True
    """Both orders of every pair through the head (`symmetric: average`)."""
    checkpointing: bool = False

    @classmethod
    def of(cls, config: SECAIConfig, encoder_config: dict | object) -> ModelShape:
        """The shape of a model of `config` whose encoder has `encoder_config` (a built
        model's `model.encoder.config`, or an `EsmConfig` dict)."""
        return cls(
            EncoderShape.from_config(encoder_config),
            lora_r=0 if config.freeze_encoder else config.lora_r,
            lora_layers=None if config.freeze_encoder else config.lora_layers,
            head_hidden=config.head_hidden,
            symmetric=config.symmetric == "average",
            checkpointing=config.activation_checkpointing,
        )

    @property
    def step_layers(self) -> int:
        """Encoder layers a training step runs: all, or the last `lora_layers` over the
        trunk cache."""
        layers = self.encoder.layers
        if self.lora_r == 0 or self.lora_layers is None:
            return layers
        return min(self.lora_layers, layers)


@dataclass
class StepFlops:
    """FLOPs of one training step, by part. Add two with `+`."""

    encoder_forward: float = 0.0
    encoder_backward: float = 0.0
    recompute: float = 0.0
    trainable_forward: float = 0.0  # LoRA + cross-attention + head
    trainable_backward: float = 0.0

    def __add__(self, other: StepFlops) -> StepFlops:
        return StepFlops(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[float, ...]:
        return (
            self.encoder_forward,
            self.encoder_backward,
            self.recompute,
            self.trainable_forward,
            self.trainable_backward,
        )

    @property
    def forward(self) -> float:
        return self.encoder_forward + self.trainable_forward

    @property
    def model(self) -> float:
        """Forward + backward, no recomputation: the numerator of MFU."""
        return self.forward + self.encoder_backward + self.trainable_backward

    @property
    def executed(self) -> float:
        """Model FLOPs + checkpointing recomputation: the numerator of HFU."""
        return self.model + self.recompute


def layers_forward(shape: EncoderShape, layers: int, widths: Iterable[int]) -> tuple[float, float]:
    """(linear, attention) forward FLOPs of `layers` encoder layers on these widths."""
    tokens = square = 0
    for width in widths:
        tokens += width
        square += width * width
    linear = 2.0 * shape.matmul_params * tokens * layers / shape.layers
    return linear, 4.0 * layers * square * shape.hidden


def trunk_build_flops(model: ModelShape, widths: Iterable[int]) -> float:
    """The trunk cache's build: the layers below LoRA, forward once over windows of these
    widths (0 when every layer is adapted)."""
    below = model.encoder.layers - model.step_layers
    return sum(layers_forward(model.encoder, below, widths)) if below else 0.0


def encoder_flops(model: ModelShape, widths: Iterable[int]) -> StepFlops:
    """One encoder call on sequences of the given widths (padded widths if padded), as a
    training step runs it (the top `lora_layers` only, over the trunk cache)."""
    shape, layers = model.encoder, model.step_layers
    widths = list(widths)
    linear, attention = layers_forward(shape, layers, widths)
    lora = 2.0 * layers * (2 * 2 * model.lora_r * shape.hidden) * sum(widths)
    forward = linear + attention
    if model.lora_r == 0:  # frozen: no gradient enters the encoder
        return StepFlops(encoder_forward=forward)
    return StepFlops(
        encoder_forward=forward,
        encoder_backward=linear + 2.0 * attention,  # frozen weights: input gradients only
        recompute=(forward + lora) if model.checkpointing else 0.0,
        trainable_forward=lora,
        trainable_backward=2.0 * lora,
    )


def pair_flops(model: ModelShape, pair_widths: Iterable[tuple[int, int]]) -> StepFlops:
    """Cross-attention (both directions) and the pair head for pairs of widths (La, Lb)."""
    d, head_hidden = model.encoder.hidden, model.head_hidden
    forward = 0.0
    pairs = 0
    for width_a, width_b in pair_widths:
        pairs += 1
        forward += 2.0 * d * d * 3 * (width_a + width_b) + 8.0 * width_a * width_b * d
    rows = 2 * pairs if model.symmetric else pairs
    forward += 2.0 * rows * (8 * d * head_hidden + head_hidden)
    return StepFlops(trainable_forward=forward, trainable_backward=2.0 * forward)


def secai_step_flops(
    model: ModelShape,
    encoder_calls: Sequence[Sequence[int]],
    pair_widths: Sequence[tuple[int, int]],
) -> StepFlops:
    """A whole step: each encoder call is a list of per-sequence widths.

    Ours: one call on the distinct sequences, all at the batch width. The naive baseline:
    two calls (A batch, B batch), each padded to its own longest.
    """
    total = pair_flops(model, pair_widths)
    for widths in encoder_calls:
        total = total + encoder_flops(model, widths)
    return total


def format_flops(value: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} FLOP"


# --------------------------------------------------------------------------- projection


@dataclass
class EpochCount:
    """What one epoch asks of the model, summed over its batches."""

    steps: int = 0
    pair_tokens: int = 0  # both sequences of every pair, real cropped lengths + <cls>/<eos>
    encoded_real: int = 0  # distinct sequences' real tokens (after dedup)
    encoded_padded: int = 0  # distinct sequences x batch width
    flops: StepFlops = field(default_factory=StepFlops)

    def add(self, model: ModelShape, tokens: tuple[int, int], calls: list, pairs: list) -> None:
        """One step: its pair tokens and real encoded tokens, its encoder calls and pairs."""
        self.steps += 1
        self.pair_tokens += tokens[0]
        self.encoded_real += tokens[1]
        self.encoded_padded += sum(map(sum, calls))
        self.flops = self.flops + secai_step_flops(model, calls, pairs)


def count_epoch(model: ModelShape, source: PairSource, max_tokens: int | None) -> EpochCount:
    """An epoch of `source` as the data layer batches it at `max_tokens` (dedup and packed
    padding as they come); None: every pair's two sequences at their own real length (no
    dedup, no padding), one step per pair."""
    count = EpochCount()
    if max_tokens is None:
        for pair in source.pair_rows():
            a, b = (min(len(s), ESM2_MAX_RESIDUES) + 2 for s in (pair.sequence_a, pair.sequence_b))
            count.add(model, (a + b, a + b), [[a, b]], [(a, b)])
        return count
    for batch in TokenBatches(source, BatchOptions(max_tokens=max_tokens)):
        mask = batch["attention_mask"]
        width, lengths = mask.shape[1], mask.sum(dim=1)
        pair_tokens = int(lengths[batch["index_a"]].sum() + lengths[batch["index_b"]].sum())
        rows = encoder_tokens(mask) // width  # `SECAI.encode` packs them
        pairs = [(width, width)] * len(batch["index_a"])
        count.add(model, (pair_tokens, int(lengths.sum())), [[width] * rows], pairs)
    return count
    for batch in TokenBatches(source, BatchOptions(max_tokens=max_tokens)):
        mask = batch["attention_mask"]
        width, lengths = mask.shape[1], mask.sum(dim=1)
        pair_tokens = int(lengths[batch["index_a"]].sum() + lengths[batch["index_b"]].sum())
        rows = encoder_tokens(mask) // width  # `SECAI.encode` packs them
        pairs = [(width, width)] * len(batch["index_a"])
        count.add(pair_tokens, int(lengths.sum()), [[width] * rows], pairs)
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--pairs", default=str(DEFAULT_PAIRS))
    parser.add_argument("--fasta", default=str(DEFAULT_FASTA))
    parser.add_argument("--peak_tflops", type=float, default=PEAK_TFLOPS["H100 SXM"])
    parser.add_argument("--mfu", type=float, default=0.35, help="assumed MFU until measured")
    parser.add_argument("--scaling", type=float, default=0.9, help="efficiency on several GPUs")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--skip_batching", action="store_true", help="only the conservative count")
    args, flags = parser.parse_known_args(argv)
    cpu = torch.device("cpu")
    config = trainer_config(parser, flags, cpu, encoder_shape="650M", activation_checkpointing=True)
    secai = config.model.secai_config()
    if secai.encoder_config is None:
        parser.error("the FLOP model counts a named shape: give --encoder_shape")
    model = ModelShape.of(secai, secai.encoder_config)
    shape, source = model.encoder, PairSource(args.pairs, fasta=args.fasta)
    print(
        f"{config.model.encoder_shape} shape: d={shape.hidden}, {shape.layers} layers, "
        f"f={shape.intermediate}, {shape.matmul_params:,} matmul weights"
    )
    budgets = {"no dedup, no padding (conservative in dedup, optimistic in padding)": None}
    if not args.skip_batching:
        budgets[f"data layer batches, max_tokens {config.data.max_tokens} (as run)"] = (
            config.data.max_tokens
        )
    counts = {label: count_epoch(model, source, tokens) for label, tokens in budgets.items()}
    print(
        f"epoch of {args.pairs}: {len(list(source.pair_rows())):,} pairs; assumed MFU "
        f"{100 * args.mfu:.0f}% of {args.peak_tflops:g} TFLOP/s (bf16 dense), "
        f"{100 * args.scaling:.0f}% scaling efficiency on more than one GPU"
    )
    for label, count in counts.items():
        print(
            f"- {label}:\n  {count.steps:,} steps, pair tokens {count.pair_tokens:,}, encoded "
            f"real {count.encoded_real:,} (dedup x{count.pair_tokens / count.encoded_real:.2f}),"
            f" padded/real {count.encoded_padded / count.encoded_real:.2f}; model FLOPs "
            f"{format_flops(count.flops.model)}, executed {format_flops(count.flops.executed)}"
        )
        for gpus in args.gpus:
            speed = args.peak_tflops * 1e12 * args.mfu * (args.scaling if gpus > 1 else 1.0)
            wall = count.flops.model / (speed * gpus) / 3600
            print(f"  {gpus} GPU(s): {wall:.2f} h wall, {wall * gpus:.2f} GPU-hours per epoch")
    if model.step_layers < shape.layers:  # the trunk cache's build, once per run
        windowing = secai.windowing("scoring")
        lengths = [len(s) for s in source.sequences.values()]
        widths = [w.stop - w.start + 2 for n in lengths for w in windowing.windows(n)]
        build = trunk_build_flops(model, widths)
        print(f"trunk cache build over {len(widths):,} windows: {format_flops(build)}")
