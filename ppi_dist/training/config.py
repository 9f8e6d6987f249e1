"""The training configuration: five sections in code, one flat namespace for recipes and flags.

    accelerate launch ppi_dist/train.py --config recipes/bernett_650m.yaml --learning_rate_head 3e-4

A run's settings are grouped by what they are about: `DataConfig` (pair files,
batching), `ModelConfig` (SE-CAI itself, `models.SECAIConfig`, declared once and saved with
the model, plus how the trainer gets its encoder), `OptimizationConfig`, `EvaluationConfig`
and `RunConfig` (the output folder, checkpoints, logging, errors). Recipes (YAML) and
`--key value` flags name the fields directly, without their section (`max_tokens: 8192`,
`--lora_r 16`): every name is unique across sections (`FIELDS`), so a recipe written for
the flat configuration of earlier versions loads unchanged, and `TrainConfig.to_dict()`
gives the same flat mapping that checkpoints and model folders store.

Reading a recipe and flags into a `TrainConfig` (with errors naming the recipe's file and
line) is `training.recipes.load_config`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppi_dist.checks import (
    check_at_least_one,
    check_choice,
    check_fraction,
    check_non_negative,
    check_positive,
)
from ppi_dist.errors import ConfigError
from ppi_dist.evaluation.threshold import OBJECTIVES, SELECTION_METRICS
from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.shapes import SHAPES, encoder_config_of

TRUNK_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class DataConfig:
    """Where the pairs come from and how batches are formed."""

    train_file: str | None = None
    """Training pair file(s): TSV/CSV/JSONL/Parquet, gzip, a glob. None: the embedded
    synthetic task, generated into output_dir/synthetic_data."""
    valid_file: str | None = None
    """Validation pair file: the checkpoint and the decision threshold are chosen on it."""
    valid_fraction: float | None = None
    """Without a valid_file: hold out this fraction of the training PAIRS as validation,
    similarity-disjoint from the rest and at the file's positive share (`ppi-dist split`'s
    graph method: MMseqs2 clusters at `split_identity`, a graph cut; the `split` extra).
    Written once, with its report and the SHA-256 of its input, to output_dir/split; reused
    while input and settings are the same, refused on resume when they changed."""
    split_identity: float = 0.4
    """valid_fraction: sequence identity at which proteins are clustered together, so that
    no validation protein is this similar to a training one."""
    allow_small_validation: bool = False
    """valid_fraction: train on a held-out validation set with fewer than 50 pairs of a class
    (with a warning naming the counts) instead of refusing it."""
    test_file: str | None = None
    """Test pair file, scored at the end at the validation threshold."""
    fasta: str | None = None
    """FASTA of the proteins; without it the pair files carry sequence_a/sequence_b."""
    column_a: str = "protein_a"
    """Column of the first protein's identifier."""
    column_b: str = "protein_b"
    """Column of the second protein's identifier."""
    column_label: str = "label"
    """Column of the 0/1 label."""
    skip_bad_rows: bool = False
    """Skip bad rows (counted per reason and logged) instead of stopping at the first."""
    allow_contradictory_labels: bool = False
    """Keep a pair labelled 1 on one line and 0 on another (either order), counted in the
    split's summary; by default such a file is refused, naming both lines."""
    max_tokens: int = 16384
    """Per micro-batch, what the step runs. Encoder: packed rows x (longest + 2). Frozen
    encoder: the cross-attention's padded pair tokens, pairs x 2 x longest cached protein
    (no encoder activations, so frozen batches can take budgets many times larger)."""
    max_pairs: int | None = None
    """Optional cap on the pairs of a token-budget batch."""
    batch_size: int | None = None
    """Fixed-size batches of this many pairs instead of a token budget."""
    sort_buffer: int = 4096
    """Pairs sorted by length together before they are cut into batches."""
    shuffle_buffer: int = 100_000
    """Pairs in the training shuffle buffer (a file sorted by label needs one as large)."""
    data_workers: int | None = None
    """Processes preparing training batches off the loop (crop, tokenise, packing layout;
    frozen: cache rows). None: 2 with a GPU (keeps it fed), 0 on a CPU (the loop's own cores
    do it faster there)."""
    synthetic_train_pairs: int = 3000
    """Training pairs of the embedded synthetic task."""
    synthetic_eval_pairs: int = 600
    """Validation and test pairs (each) of the embedded synthetic task."""
    embedding_cache: str | None = None
    """Frozen encoder: folder of the per-residue states (fp16, memory-mapped; reused when
    proteins and encoder match). None: output_dir/embedding_cache."""
    trunk_cache: str | None = None
    """LoRA on the top layers (`lora_layers`): folder of the trunk cache, the states entering
    the first LoRA layer of every window (memory-mapped; reused when the encoder, depth and
    windows match, refused when they differ). None: output_dir/trunk_cache."""
    trunk_cache_dtype: str = "float32"
    """Storage of the trunk cache: "float32" (the top layers start from what the whole
    encoder computes, so the run's final scores are `predict`'s) or "float16"/"bfloat16"
    (half the disk and memory, scores within about 1e-3 of `predict`'s)."""

    def __post_init__(self) -> None:
        held_out = self.valid_fraction is not None
        if self.train_file is not None and self.valid_file is None and not held_out:
            raise ConfigError(
                "train_file needs a valid_file: the threshold is chosen on it; for a set "
                "that ships none, --valid_fraction 0.1 holds out a similarity-disjoint tenth "
                "of the training pairs (or `ppi-dist split` makes the files)"
            )
        if held_out and self.valid_file is not None:
            raise ConfigError("give valid_file or valid_fraction, not both")
        if held_out and self.train_file is None:
            raise ConfigError("valid_fraction splits a train_file; the synthetic task has its own")
        for name in ("valid_fraction", "split_identity"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise ConfigError(f"{name} must lie strictly between 0 and 1, got {value}")
        optional = ("max_pairs", "batch_size")
        check_at_least_one(self, ("max_tokens", *optional))
        check_choice("trunk_cache_dtype", self.trunk_cache_dtype, TRUNK_DTYPES)


@dataclass
class ModelConfig:
    """The model: SE-CAI's own settings (`secai`, saved with the model; recipes name its
    fields directly) and how the trainer gets and runs its encoder."""

    secai: SECAIConfig = field(default_factory=SECAIConfig)
    """The model itself (`models.config.SECAIConfig`); `encoder_config`, `decision_threshold`
    and `threshold_objective` are set by the trainer, not by flags (`SET_BY_TRAINER`)."""
    encoder_shape: str | None = None
    """Build the encoder with random weights of this ESM-2 shape instead of loading `encoder`:
    "tiny" (sized by tiny_hidden/layers/heads) or a released size (`models.shapes`)."""
    tiny_hidden: int = 64
    """Width of the "tiny" shape."""
    tiny_layers: int = 2
    """Layers of the "tiny" shape."""
    tiny_heads: int = 4
    """Attention heads of the "tiny" shape."""
    compile: bool = False
    """torch.compile the encoder's layers and the pair head (`models.compile`): fewer kernel
    launches and fused elementwise work, after a compilation at the first steps."""

    def __post_init__(self) -> None:
        if self.encoder_shape is not None:
            check_choice("encoder_shape", self.encoder_shape, SHAPES)
        shape = str(self.secai.encoder).removesuffix("-shape")
        if shape in SHAPES and not Path(str(self.secai.encoder)).exists():
            raise ConfigError(
                f"--encoder {self.secai.encoder}: --encoder takes a path or Hub name; random "
                f"weights of a shape are --encoder_shape {shape}"
            )

    def secai_config(self) -> SECAIConfig:
        """The model to build: `secai`, with random weights of `encoder_shape` when it is set
        (a copy: the model's threshold is set on it later, not on this configuration)."""
        secai = dataclasses.replace(
            self.secai, lora_target_modules=list(self.secai.lora_target_modules)
        )
        if self.encoder_shape is None:
            return secai
        size = {"hidden": self.tiny_hidden, "layers": self.tiny_layers, "heads": self.tiny_heads}
        shape = encoder_config_of(self.encoder_shape, **size)
        return dataclasses.replace(secai, encoder=None, encoder_config=shape)


@dataclass
class OptimizationConfig:
    """How the trainable weights are fitted: seed, length, rates, schedule, loss, precision."""

    seed: int = 0
    """With the epoch, fixes the data order, crops, initialisation and dropout."""
    epochs: int = 1
    """Passes over the training file."""
    max_steps: int | None = None
    """Optimiser steps; overrides epochs when set."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimiser step."""
    learning_rate_lora: float = 2e-4
    """Peak learning rate of the LoRA weights."""
    learning_rate_head: float = 1e-3
    """Peak learning rate of the cross-attention and the head."""
    weight_decay: float = 0.01
    """AdamW weight decay (not on biases and normalisation weights)."""
    warmup_ratio: float = 0.05
    """Share of the steps spent warming the learning rate up, in [0, 1]."""
    lr_schedule: str = "cosine"
    """"cosine", "linear" or "constant_with_warmup"."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this norm."""
    focal_gamma: float = 2.0
    """Focal loss exponent (0: cross-entropy)."""
    focal_alpha: float | None = None
    """Focal loss weight of the positives, in [0, 1]; None weighs both classes 1."""
    first_pass_loss_weight: float = 0.5
    """Weight of the first pass's own loss beside SE-CAI's (a model with a first pass,
    `first_pass_width`); it must be above 0 there, so its weights train."""
    first_pass_distillation: float = 1.0
    """Within the first pass's loss, the weight of matching SE-CAI's own probability of each
    pair (binary cross-entropy to it, SE-CAI's side held fixed) beside the focal loss on the
    labels: a screen keeps what SE-CAI would rank high. 0: the labels only."""
    swap_augmentation: bool = False
    """Swap A and B of a random half of the pairs (useful with symmetric: none)."""
    nonfinite_loss: str = "stop"
    """A NaN or infinite loss: "stop" every rank, or "skip" the step on every rank."""
    mixed_precision: str = "auto"
    """"auto" (bf16 where the GPU has it, fp32 on a CPU), "no", "bf16" or "fp16"."""
    adamw_implementation: str = "fused"
    """How AdamW updates: "fused" (one operator for every tensor, on a CPU or GPU),
    "foreach" (a few per parameter group) or "for_loop" (about ten per parameter: torch's
    own default on a CPU, whose rounding a run resumed from such a checkpoint keeps). The
    same update up to rounding."""

    def __post_init__(self) -> None:
        check_at_least_one(self, ("epochs", "max_steps", "gradient_accumulation_steps"))
        check_positive("learning_rate_lora", self.learning_rate_lora)
        check_positive("learning_rate_head", self.learning_rate_head)
        check_positive("first_pass_loss_weight", self.first_pass_loss_weight)
        check_non_negative("first_pass_distillation", self.first_pass_distillation)
        for name in ("weight_decay", "max_grad_norm", "focal_gamma"):
            check_non_negative(name, getattr(self, name))
        check_fraction("warmup_ratio", self.warmup_ratio)
        check_fraction("focal_alpha", self.focal_alpha)
        check_choice("lr_schedule", self.lr_schedule, ("cosine", "linear", "constant_with_warmup"))
        check_choice("nonfinite_loss", self.nonfinite_loss, ("stop", "skip"))
        check_choice("mixed_precision", self.mixed_precision, ("auto", "no", "bf16", "fp16"))
        check_choice(
            "adamw_implementation", self.adamw_implementation, ("fused", "foreach", "for_loop")
        )


@dataclass
class EvaluationConfig:
    """When validation runs, which weights are kept, how the threshold is chosen."""

    eval_every: int | None = None
    """Optimiser steps between validations; None: at the end of each epoch."""
    best_metric: str = "auroc"
    """Which validation's weights are kept: "auroc" (a constant or random predictor gets
    0.5, so "all positive" is never rewarded), "aupr", "mcc", or "score" (the weighted
    Acc/P/R/F1 at the chosen threshold, which "all positive" games)."""
    threshold_objective: str = "mcc"
    """What the shipped validation threshold maximises: "mcc" (0 for any constant
    predictor), "weighted" (the seed's weighted Acc/P/R/F1) or "accuracy". Every evaluation
    prints all three; a threshold must predict both classes on validation."""
    threshold_grid: str = "fixed"
    """Candidate thresholds: "fixed" 0.01..0.99, "distinct" (every validation score), "both"."""
    weight_accuracy: float = 0.25
    """Weight of accuracy in the weighted score."""
    weight_precision: float = 0.25
    """Weight of precision in the weighted score."""
    weight_recall: float = 0.25
    """Weight of recall in the weighted score."""
    weight_f1: float = 0.25
    """Weight of F1 in the weighted score."""
    plots: bool = True
    """PR, ROC and threshold plots of validation and test at the end."""

    def __post_init__(self) -> None:
        check_at_least_one(self, ("eval_every",))
        check_choice("best_metric", self.best_metric, SELECTION_METRICS)
        check_choice("threshold_objective", self.threshold_objective, OBJECTIVES)
        check_choice("threshold_grid", self.threshold_grid, ("fixed", "distinct", "both"))

    @property
    def score_weights(self) -> dict[str, float]:
        return {
            "accuracy": self.weight_accuracy,
            "precision": self.weight_precision,
            "recall": self.weight_recall,
            "f1": self.weight_f1,
        }


@dataclass
class RunConfig:
    """The run's folder and life: checkpoints, resuming, logging, the Hub, errors."""

    output_dir: str = "outputs/run"
    """Everything the run writes: checkpoints, the model folder, predictions, plots, logs."""
    checkpoint_every: int | None = None
    """Optimiser steps between checkpoints; None: at the end of each epoch."""
    keep_checkpoints: int = 2
    """Completed checkpoints kept (the newest always is)."""
    resume_from: str | None = None
    """"latest" or a checkpoint folder to continue from."""
    resume_override: str | None = None
    """Resume even though these settings differ from the checkpoint's (comma-separated
    names, e.g. "learning_rate_head,max_steps"); the command line's values then win."""
    overwrite: bool = False
    """Clear output_dir first when it holds another run; without it (or resume_from) such
    a folder is refused."""
    report_to: str = "tensorboard"
    """"tensorboard", "wandb", "all" or "none"."""
    log_every: int = 10
    """Optimiser steps between log lines."""
    profile_steps: int = 0
    """Steps profiled after the first (`torch.profiler`, main process): operators per phase,
    host and device time, the top operators, printed and written to profile.md; 0: none."""
    peak_tflops: float | None = None
    """One device's peak TFLOP/s (989: an H100 or H200 in dense bf16): the log's `train/mfu`,
    the main rank's model FLOPs (`training.flops`) per second over it; None: no MFU."""
    push_to_hub: str | None = None
    """Hub repository id the model folder is pushed to at the end."""
    hub_private: bool = True
    """Create that repository as private."""
    debug: bool = False
    """Tracebacks for user errors too."""

    def __post_init__(self) -> None:
        hint = " (the newest checkpoint is what --resume_from latest needs)"
        check_at_least_one(self, ("keep_checkpoints",), hint)
        check_at_least_one(self, ("log_every", "checkpoint_every"))
        check_choice("report_to", self.report_to, ("tensorboard", "wandb", "all", "none"))


@dataclass
class TrainConfig:
    """A training run, one section per concern (see the module docstring)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        window = self.model.secai.max_residues
        if self.data.batch_size is None and self.data.max_tokens < 2 * (window + 2):
            raise ConfigError(
                f"max_tokens={self.data.max_tokens} cannot hold one pair of two "
                f"{window}-residue sequences; use at least {2 * (window + 2)}, or lower "
                "max_residues"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """From the flat mapping recipes, flags and `to_dict` use; unknown names refused."""
        unknown = [name for name in values if name not in FIELDS]
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r} (see ppi_dist/training/config.py)")
        sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        secai: dict[str, Any] = {}
        for name, value in values.items():
            place = FIELDS[name]
            (secai if place.in_secai else sections[place.section])[name] = value
        model = ModelConfig(secai=SECAIConfig(**secai), **sections["model"])
        parts = {name: SECTIONS[name](**sections[name]) for name in SECTIONS if name != "model"}
        return cls(model=model, **parts)

    def to_dict(self) -> dict[str, Any]:
        """Every setting by its flat name (what checkpoints and model folders store)."""
        return {name: place.value_in(self) for name, place in FIELDS.items()}


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimization": OptimizationConfig,
    "evaluation": EvaluationConfig,
    "run": RunConfig,
}
# SECAIConfig fields the trainer fills in itself (from encoder_shape, and the threshold it
# chooses at the end), so no flag or recipe key sets them.
SET_BY_TRAINER = frozenset({"encoder_config", "decision_threshold", "threshold_objective"})


@dataclass(frozen=True)
class FieldPlace:
    """A flat setting: its name, section, declared type (resolved), default and docstring."""

    name: str
    section: str
    in_secai: bool
    """In `ModelConfig.secai` (the model's own settings) rather than in the section itself."""
    type: Any
    default: Any
    doc: str

    def value_in(self, config: TrainConfig) -> Any:
        holder = getattr(config, self.section)
        return getattr(holder.secai if self.in_secai else holder, self.name)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass, read from its source."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, following in itertools.pairwise(body):
        is_doc = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
        if isinstance(node, ast.AnnAssign) and is_doc:
            docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


def _places(cls: type, section: str, in_secai: bool) -> list[FieldPlace]:
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    places = []
    for f in dataclasses.fields(cls):
        if f.name == "secai" or (in_secai and f.name in SET_BY_TRAINER):
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        places.append(FieldPlace(f.name, section, in_secai, hints[f.name], default, docs[f.name]))
    return places


def _flat_fields() -> dict[str, FieldPlace]:
    places = []
    for section, cls in SECTIONS.items():
        if cls is ModelConfig:
            places += _places(SECAIConfig, section, in_secai=True)
        places += _places(cls, section, in_secai=False)
    table = {place.name: place for place in places}
    assert len(table) == len(places), "a setting name is used in two sections"
    return table


# Every setting by its flat name, in section order: what recipes, flags and to_dict use.
FIELDS = _flat_fields()
