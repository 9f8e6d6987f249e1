"""Training configuration: a typed dataclass, filled from a YAML recipe, then `--key value`.

    accelerate launch ppi_dist/train.py --config recipes/bernett_650m.yaml --learning_rate_head 3e-4

Recipes are data: every key must be a field below, and a wrong key or value is reported with
the recipe's file and line. The resolved configuration is printed at start and saved with
every checkpoint and with the final model.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from ppi_dist.model import SECAIConfig, esm2_650m_config, tiny_esm2_config


@dataclass
class TrainConfig:
    # ---- data -------------------------------------------------------------------------
    # Pair files (TSV/CSV/JSONL/Parquet, gzip, globs). No train_file: the embedded
    # synthetic task is generated into output_dir/synthetic_data and used.
    train_file: str | None = None
    valid_file: str | None = None
    test_file: str | None = None
    fasta: str | None = None
    column_a: str = "protein_a"
    column_b: str = "protein_b"
    column_label: str = "label"
    skip_bad_rows: bool = False
    max_residues: int = 1022
    max_tokens: int = 16384  # per micro-batch, encoder tokens: packed rows x (longest + 2)
    max_pairs: int | None = None
    batch_size: int | None = None  # fixed-size batches instead of a token budget
    eval_max_tokens: int | None = None  # defaults to 2 x max_tokens (no gradients kept)
    sort_buffer: int = 4096
    shuffle_buffer: int = 100_000
    synthetic_train_pairs: int = 3000
    synthetic_eval_pairs: int = 600

    # ---- model ------------------------------------------------------------------------
    encoder: str = "facebook/esm2_t33_650M_UR50D"  # Hub name or local path
    # Build the encoder from a shape with random weights instead: "tiny" or "650M".
    encoder_shape: str | None = None
    tiny_hidden: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4
    cross_attention_heads: int = 8
    head_hidden: int = 512
    head_dropout: float = 0.1
    symmetric: str = "average"
    interaction: str = "cross_attention"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    # No LoRA: only cross-attention and head train, on per-residue states encoded once into
    # an fp16 memory-mapped cache (centred crops; reused when proteins and encoder match).
    freeze_encoder: bool = False
    embedding_cache: str | None = None  # folder; default output_dir/embedding_cache
    activation_checkpointing: bool = False
    sync_batchnorm: bool = False

    # ---- optimisation -----------------------------------------------------------------
    seed: int = 0
    epochs: int = 1
    max_steps: int | None = None  # optimiser steps; overrides epochs when set
    gradient_accumulation_steps: int = 1
    learning_rate_lora: float = 2e-4
    learning_rate_head: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    lr_schedule: str = "cosine"  # or "linear", "constant_with_warmup"
    max_grad_norm: float = 1.0
    focal_gamma: float = 2.0
    focal_alpha: float | None = None
    swap_augmentation: bool = False  # randomly swap A and B (useful with symmetric "none")
    nonfinite_loss: str = "stop"  # or "skip": drop the step on every rank
    mixed_precision: str = "auto"  # "auto": bf16 where the GPU has it; "no", "bf16", "fp16"

    # ---- evaluation, checkpoints, logging ----------------------------------------------
    output_dir: str = "outputs/run"
    eval_every: int | None = None  # optimiser steps; None: at the end of each epoch
    checkpoint_every: int | None = None  # optimiser steps; None: at the end of each epoch
    keep_checkpoints: int = 2
    resume_from: str | None = None  # "latest" or a checkpoint folder
    best_metric: str = "score"  # "score" (weighted), "aupr", "auroc", "mcc"
    threshold_grid: str = "fixed"  # "fixed" 0.01..0.99, "distinct", "both"
    weight_accuracy: float = 0.25
    weight_precision: float = 0.25
    weight_recall: float = 0.25
    weight_f1: float = 0.25
    report_to: str = "tensorboard"  # or "wandb", "all", "none"
    log_every: int = 10
    plots: bool = True
    push_to_hub: str | None = None  # repository id
    hub_private: bool = True
    # What the validation threshold maximises: "weighted" (the spec's score), "accuracy",
    # "mcc" (see ppi_dist.metrics); a threshold must predict both classes on validation.
    threshold_objective: str = "weighted"

    def __post_init__(self) -> None:
        choices = {
            "best_metric": ("score", "aupr", "auroc", "mcc"),
            "threshold_grid": ("fixed", "distinct", "both"),
            "lr_schedule": ("cosine", "linear", "constant_with_warmup"),
            "nonfinite_loss": ("stop", "skip"),
            "mixed_precision": ("auto", "no", "bf16", "fp16"),
            "report_to": ("tensorboard", "wandb", "all", "none"),
            "threshold_objective": ("weighted", "accuracy", "mcc"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.encoder_shape not in (None, "tiny", "650M"):
            raise ValueError(f"encoder_shape must be 'tiny' or '650M', got {self.encoder_shape!r}")
        if self.train_file is not None and self.valid_file is None:
            raise ValueError("train_file needs a valid_file: the threshold is chosen on it")

    @property
    def score_weights(self) -> dict[str, float]:
        return {
            "accuracy": self.weight_accuracy,
            "precision": self.weight_precision,
            "recall": self.weight_recall,
            "f1": self.weight_f1,
        }

    def model_config(self) -> SECAIConfig:
        shapes = {
            "tiny": lambda: tiny_esm2_config(self.tiny_hidden, self.tiny_layers, self.tiny_heads),
            "650M": esm2_650m_config,
        }
        shape = shapes[self.encoder_shape]() if self.encoder_shape else None
        # Every SECAIConfig field has a TrainConfig field of the same name, except the encoder.
        shared = {f.name for f in dataclasses.fields(SECAIConfig)} - {"encoder", "encoder_config"}
        shared -= {"decision_threshold"}  # chosen on validation at the end of training
        return SECAIConfig(
            encoder=None if shape else self.encoder,
            encoder_config=shape,
            **{name: getattr(self, name) for name in shared},
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """A recipe key or value that is wrong, with the file and line it came from."""


def _recipe_with_lines(path: Path) -> tuple[dict, dict[str, int]]:
    """The recipe mapping and the line of each top-level key (for error messages)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read recipe: {error.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}:1: a recipe is a mapping of `key: value` lines")
    lines = {}
    if node is not None:
        for key_node, _ in node.value:
            lines[key_node.value] = key_node.start_mark.line + 1
    return values, lines


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def _check_type(key: str, value: object, where: str) -> object:
    """The recipe value, checked against the field's type (argparse would just exit)."""
    declared = _FIELD_TYPES[key]
    if value is None:
        if "None" not in declared:
            raise ConfigError(f"{where}: {key} cannot be empty")
        return value
    if declared.startswith("float") and isinstance(value, str):
        # YAML 1.1 reads 1e-3 (no dot) as a string; take it as the number it was meant as.
        with contextlib.suppress(ValueError):
            value = float(value)
    accepted = {
        "int": (int,),
        "float": (int, float),
        "bool": (bool,),
        "str": (str,),
        "list[str]": (list,),
    }[declared.split(" |")[0]]
    wrong_bool = isinstance(value, bool) and bool not in accepted
    if not isinstance(value, accepted) or wrong_bool:
        raise ConfigError(f"{where}: {key} should be {declared.split(' |')[0]}, got {value!r}")
    if declared.startswith("list") and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} should be a list of names, got {value!r}")
    return value


def load_config(argv: list[str] | None = None) -> TrainConfig:
    """`--config recipe.yaml` (optional) then `--key value` overrides -> TrainConfig."""
    parser = HfArgumentParser(TrainConfig)
    parser.add_argument("--config", default=None, help="YAML recipe; flags override it")
    known, _ = parser.parse_known_args(argv)
    if known.config is not None:
        path = Path(known.config)
        recipe, lines = _recipe_with_lines(path)
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        for key in recipe:
            if key not in fields:
                raise ConfigError(
                    f"{path}:{lines.get(key, '?')}: unknown key {key!r} "
                    f"(see ppi_dist/config.py for the fields)"
                )
            recipe[key] = _check_type(key, recipe[key], f"{path}:{lines.get(key, '?')}")
        parser.set_defaults(**recipe)
        try:
            (config, _) = parser.parse_args_into_dataclasses(args=argv)
        except (ValueError, TypeError) as error:
            bad = next((k for k in recipe if k in str(error)), None)
            where = f"{path}:{lines[bad]}" if bad else str(path)
            raise ConfigError(f"{where}: {error}") from None
        return config
    (config, _) = parser.parse_args_into_dataclasses(args=argv)
    return config
