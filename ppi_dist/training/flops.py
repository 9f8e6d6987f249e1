"""The FLOP model of one SE-CAI training step: matmuls only, 2 FLOPs a multiply-add, the
formulas of BENCHMARKS.md's FLOP model table. The trainer logs its model FLOPs per second
(and MFU against `peak_tflops`), `ppi-dist estimate` projects an epoch's (`count_epoch`), and
`benchmarks/` times steps with it.

    shape = ModelShape.of(model.config, model.encoder.config)
    batch_stats(shape, batch).flops.model    # forward + backward of one training batch
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields

import torch

from ppi_dist.data.batching import TokenBatches
from ppi_dist.data.pairs import PairSource
from ppi_dist.data.planner import BatchOptions
from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.packing import encoder_tokens
from ppi_dist.models.windows import Windowing

PEAK_TFLOPS = 989.0  # dense bf16 of an H100 SXM; the H200 has the same compute


@dataclass(frozen=True)
class EncoderShape:
    hidden: int
    layers: int
    intermediate: int

    @classmethod
    def from_config(cls, config: dict | object) -> EncoderShape:
        get = config.get if isinstance(config, dict) else lambda key: getattr(config, key)
        return cls(get("hidden_size"), get("num_hidden_layers"), get("intermediate_size"))

    @property
    def matmul_params(self) -> int:
        """Weights of the per-token matmuls (no embeddings, biases or norms)."""
        return self.layers * (4 * self.hidden**2 + 2 * self.hidden * self.intermediate)


@dataclass(frozen=True)
class ModelShape:
    encoder: EncoderShape
    lora_r: int = 8  # 0: a frozen encoder, which no gradient passes through
    lora_layers: int | None = None  # LoRA on the last N layers, the only ones a step runs
    head_hidden: int = 512
    symmetric: bool = True  # both orders of every pair through the head
    checkpointing: bool = False

    @classmethod
    def of(cls, config: SECAIConfig, encoder_config: dict | object) -> ModelShape:
        frozen = config.freeze_encoder
        return cls(
            EncoderShape.from_config(encoder_config),
            lora_r=0 if frozen else config.lora_r,
            lora_layers=None if frozen else config.lora_layers,
            head_hidden=config.head_hidden,
            symmetric=config.symmetric == "average",
            checkpointing=config.activation_checkpointing,
        )

    @property
    def step_layers(self) -> int:
        """Encoder layers a step runs: all, or the last `lora_layers` over the trunk cache."""
        if self.lora_r == 0 or self.lora_layers is None:
            return self.encoder.layers
        return min(self.lora_layers, self.encoder.layers)


@dataclass
class StepFlops:
    encoder_forward: float = 0.0
    encoder_backward: float = 0.0
    recompute: float = 0.0
    trainable_forward: float = 0.0  # LoRA + cross-attention + head
    trainable_backward: float = 0.0

    def __add__(self, other: StepFlops) -> StepFlops:
        return StepFlops(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[float, ...]:
        return astuple(self)

    @property
    def forward(self) -> float:
        return self.encoder_forward + self.trainable_forward

    @property
    def model(self) -> float:
        """Forward + backward: MFU's numerator."""
        return self.forward + self.encoder_backward + self.trainable_backward

    @property
    def executed(self) -> float:
        """Model FLOPs + checkpointing's recomputation: HFU's numerator."""
        return self.model + self.recompute


def layers_forward(shape: EncoderShape, layers: int, widths: Iterable[int]) -> tuple[float, float]:
    """(linear, attention) forward FLOPs of `layers` encoder layers on these widths."""
    widths = list(widths)
    linear = 2.0 * shape.matmul_params * sum(widths) * layers / shape.layers
    return linear, 4.0 * layers * sum(w * w for w in widths) * shape.hidden


def trunk_build_flops(model: ModelShape, widths: Iterable[int]) -> float:
    """The trunk cache's build: the layers below LoRA, forward once over these windows."""
    below = model.encoder.layers - model.step_layers
    return sum(layers_forward(model.encoder, below, widths)) if below else 0.0


def encoder_flops(model: ModelShape, widths: Iterable[int]) -> StepFlops:
    """One encoder call on sequences of these (padded) widths, as a training step runs it."""
    shape, layers, widths = model.encoder, model.step_layers, list(widths)
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
    d, hidden = model.encoder.hidden, model.head_hidden
    pair_widths = list(pair_widths)
    forward = sum(2.0 * d * d * 3 * (a + b) + 8.0 * a * b * d for a, b in pair_widths)
    rows = len(pair_widths) * (2 if model.symmetric else 1)
    forward += 2.0 * rows * (8 * d * hidden + hidden)
    return StepFlops(trainable_forward=forward, trainable_backward=2.0 * forward)


def secai_step_flops(
    model: ModelShape, encoder_calls: Sequence[Sequence[int]], pair_widths: Sequence[tuple]
) -> StepFlops:
    """A whole step; each encoder call is a list of per-sequence widths."""
    total = pair_flops(model, pair_widths)
    for widths in encoder_calls:
        total = total + encoder_flops(model, widths)
    return total


@dataclass(frozen=True)
class BatchStats:
    """What batches hold and cost (several: their sums)."""

    pairs: int
    pair_tokens: int  # both sequences of every pair, cropped + <cls>/<eos>
    encoded_real: int  # encoder tokens that are residues or special tokens (after dedup)
    encoded_padded: int  # encoder tokens including padding
    flops: StepFlops
    steps: int = 1

    def __add__(self, other: BatchStats) -> BatchStats:
        return BatchStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


NO_BATCHES = BatchStats(0, 0, 0, 0, StepFlops(), steps=0)


def batch_stats(
    model: ModelShape, batch: dict, cache_lengths: torch.Tensor | None = None
) -> BatchStats:
    """One batch: tokens (its distinct sequences packed into rows, as `SECAI.encode` runs
    them), a frozen encoder's cache rows (`cache_lengths`: the cache's stored lengths; no
    encoder) or a baseline batch (A and B each padded to its own longest, two calls)."""
    if "cache_rows" in batch:
        lengths = cache_lengths[batch["cache_rows"]]
        if batch.get("cache_window") is not None:  # a training crop of the stored states
            lengths = lengths.clamp(max=batch["cache_window"])
        width, pairs = int(lengths.max()), len(batch["index_a"])
        pair_tokens = int(lengths[batch["index_a"]].sum() + lengths[batch["index_b"]].sum())
        flops = secai_step_flops(model, [], [(width, width)] * pairs)
        return BatchStats(pairs, pair_tokens, 0, 0, flops)
    if "attention_mask" in batch:
        mask = batch["attention_mask"]
        lengths, width = mask.sum(dim=1), mask.shape[1]
        rows, pairs = encoder_tokens(mask) // width, len(batch["index_a"])
        pair_tokens = int(lengths[batch["index_a"]].sum() + lengths[batch["index_b"]].sum())
        flops = secai_step_flops(model, [[width] * rows], [(width, width)] * pairs)
        return BatchStats(pairs, pair_tokens, int(lengths.sum()), rows * width, flops)
    mask_a, mask_b = batch["attention_mask_a"], batch["attention_mask_b"]
    pairs, width_a, width_b = mask_a.shape[0], mask_a.shape[1], mask_b.shape[1]
    calls = [[width_a] * pairs, [width_b] * pairs]
    flops = secai_step_flops(model, calls, [(width_a, width_b)] * pairs)
    real = int(mask_a.sum() + mask_b.sum())
    return BatchStats(pairs, real, real, mask_a.numel() + mask_b.numel(), flops)


def count_epoch(
    model: ModelShape, source: PairSource, max_tokens: int | None, windowing: Windowing
) -> BatchStats:
    """An epoch as the data layer batches it at `max_tokens`, each sequence read as
    `windowing` reads it in training; None: every pair's two sequences at their own cropped
    length (no dedup, no padding), one step per pair."""
    count = NO_BATCHES
    if max_tokens is None:
        for pair in source.pair_rows():
            a, b = (windowing.kept_length(len(s)) + 2 for s in (pair.sequence_a, pair.sequence_b))
            flops = secai_step_flops(model, [[a, b]], [(a, b)])
            count = count + BatchStats(1, a + b, a + b, a + b, flops)
        return count
    for batch in TokenBatches(source, BatchOptions(max_tokens=max_tokens), windowing=windowing):
        count = count + batch_stats(model, batch)
    return count


def format_flops(value: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} FLOP"
