"""`SECAIConfig`: everything needed to rebuild an SE-CAI model, saved as JSON beside its weights.

The trainer's configuration embeds this one (`training.config.ModelConfig.secai`): the
model's settings are declared once, here, and a recipe names them directly (`lora_r: 16`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ppi_dist.checks import check_at_least_one, check_choice, check_field_types, check_fraction
from ppi_dist.errors import ConfigError
from ppi_dist.models.attention import ENCODER_ATTENTION
from ppi_dist.models.cross_attention import CROSS_ATTENTION_KERNELS
from ppi_dist.models.windows import WINDOW_MODES, Windowing

SYMMETRIC = ("average", "none")
INTERACTIONS = ("cross_attention", "pooled")


@dataclass
class SECAIConfig:
    """The model: its encoder, cross-attention, head, LoRA, how it runs, and its threshold."""

    encoder: str | None = "facebook/esm2_t33_650M_UR50D"
    """Hub name or local path of an ESM-2 checkpoint (`EsmModel` weights, safetensors)."""
    encoder_config: dict | None = None
    """An `EsmConfig` as a dict, to build the encoder with random weights instead of
    `encoder` (tests, benchmark shapes); give exactly one of the two."""
    cross_attention_heads: int = 8
    """Heads of the A->B / B->A cross-attention; they must divide the encoder width."""
    head_hidden: int = 512
    """Width of the pair head's hidden layer."""
    head_dropout: float = 0.1
    """Dropout in the pair head, in [0, 1)."""
    symmetric: str = "average"
    """"average": the logits of (A, B) and (B, A) averaged, so score(A, B) == score(B, A)
    exactly; "none": the raw order-dependent head (v_A - v_B is antisymmetric)."""
    interaction: str = "cross_attention"
    """"cross_attention" (SE-CAI) or "pooled": the classic baseline that max- and mean-pools
    each protein's own residue states into the same head; only the interaction differs."""
    first_pass_width: int | None = 256
    """Width k of the first pass (`models.first_pass`): a symmetric score of each protein's
    own pooled states, trained beside the head, that `predict --screen` ranks every pair by
    before cross-attention scores the best. None: no first pass (models saved before it)."""
    lora_r: int = 8
    """LoRA rank on the encoder's `lora_target_modules`."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on LoRA's input, in [0, 1)."""
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    """The encoder's linear layers LoRA adapts (peft has no default for ESM)."""
    lora_layers: int | None = None
    """LoRA on the last N encoder layers only (None: every layer). The layers below never
    change, so training computes the states entering layer L-N once per protein window (the
    trunk cache, `inference.trunk`) and each step runs only the top N layers."""
    freeze_encoder: bool = False
    """No LoRA: only cross-attention and head train, on states encoded once."""
    activation_checkpointing: bool = False
    """Recompute the encoder's activations in the backward pass (memory for time)."""
    activation_checkpointing_every: int = 1
    """With checkpointing, recompute every n-th encoder layer only (1: all); the others keep
    their activations: memory against recompute, between all and none."""
    encoder_attention: str = "sdpa"
    """How packed encoder rows attend: "sdpa" (a dense block-diagonal mask), "cudnn" (the
    same, cuDNN's kernel first), "flex" (FlexAttention, masked tiles skipped) or "varlen"
    (flash attention over cumulative sequence lengths). All but "sdpa" run on CUDA only and
    fall back to "sdpa" elsewhere (`models.attention`)."""
    max_residues: int = 1022
    """Residues the encoder reads in one window (ESM-2's positions cover 1,022); longer
    proteins are read as windows or cropped (`train_windows`, `scoring_windows`)."""
    window_overlap: int | None = None
    """Residues neighbouring windows share; None: a quarter of `max_residues` (255 at 1,022).
    Each residue is kept from the window where it is most central, so it sees at least half
    the overlap of context either side, and a long protein costs the encoder about 4/3 of
    its length in tokens."""
    train_windows: str = "crop"
    """How training reads a long protein: "crop" (one random window per batch; cheap, and
    every part is seen over the epochs) or "all" (every window, stitched)."""
    scoring_windows: str = "all"
    """How evaluation, `predict`, `evaluate` and `explain` read a long protein: "all"
    (every window, stitched: every residue reaches cross-attention) or "crop" (the centred
    window)."""
    cross_attention_kernel: str = "sdpa"
    """How pairs cross-attend: "sdpa" (padded pairs, a key mask) or "varlen" (the pairs' A
    and B residues packed into streams, flash attention over cumulative lengths, pooling as
    segment reductions; CUDA in bf16/fp16 only, "sdpa" elsewhere: `models.cross_attention`)."""
    sync_batchnorm: bool = False
    """Batch statistics of the head's BatchNorm computed over all GPUs (SyncBatchNorm)."""
    decision_threshold: float = 0.5
    """P(interact) at and above which a pair is predicted to interact; chosen on validation
    at the end of training."""
    threshold_objective: str | None = None
    """What `decision_threshold` maximised on validation ("mcc", "weighted", "accuracy"),
    once chosen."""

    def __post_init__(self) -> None:
        # First the kinds: a saved secai_config.json edited by hand ("head_hidden": "32")
        # must be refused here, naming the field, not deep in torch.
        check_field_types(self)
        if self.interaction == "mean_pool":  # the old name of the pooled baseline
            self.interaction = "pooled"
        check_choice("symmetric", self.symmetric, SYMMETRIC)
        check_choice("interaction", self.interaction, INTERACTIONS)
        check_choice("encoder_attention", self.encoder_attention, ENCODER_ATTENTION)
        check_choice("cross_attention_kernel", self.cross_attention_kernel, CROSS_ATTENTION_KERNELS)
        check_at_least_one(
            self,
            [
                "lora_r",
                "lora_layers",
                "first_pass_width",
                "cross_attention_heads",
                "head_hidden",
                "activation_checkpointing_every",
            ],
        )
        check_choice("train_windows", self.train_windows, WINDOW_MODES)
        check_choice("scoring_windows", self.scoring_windows, WINDOW_MODES)
        check_at_least_one(self, ["max_residues"])
        overlap = self.window_overlap
        if overlap is not None and not 0 <= overlap < self.max_residues:
            raise ConfigError(
                f"window_overlap must be in [0, max_residues={self.max_residues}), not {overlap}"
            )
        check_fraction("head_dropout", self.head_dropout, closed=False)
        check_fraction("lora_dropout", self.lora_dropout, closed=False)
        if (self.encoder is None) == (self.encoder_config is None):
            raise ConfigError("give exactly one of `encoder` (name or path) or `encoder_config`")

    def lora_layer_indices(self, layers: int) -> list[int] | None:
        """The encoder layers LoRA adapts, of `layers` (None: all of them)."""
        if self.lora_layers is None or self.lora_layers >= layers:
            return None
        return list(range(layers - self.lora_layers, layers))

    def trunk_depth(self, layers: int) -> int:
        """Encoder layers below every trainable weight: their output, the states entering
        the first LoRA layer, can be computed once (0: none; `layers`: a frozen encoder)."""
        if self.freeze_encoder:
            return layers
        adapted = self.lora_layer_indices(layers)
        return 0 if adapted is None else adapted[0]

    def windowing(self, stage: str, max_residues: int | None = None) -> Windowing:
        """How the model reads long proteins in `stage`: "train" or "scoring"; in windows of
        `max_residues` when given (a scoring flag), the overlap then a quarter of those
        unless `window_overlap` was set (null in a folder trained with the default)."""
        mode = {"train": self.train_windows, "scoring": self.scoring_windows}[stage]
        width = self.max_residues if max_residues is None else max_residues
        overlap = width // 4 if self.window_overlap is None else self.window_overlap
        return Windowing(width, overlap, mode)
