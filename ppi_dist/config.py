"""Training configuration: a typed dataclass, filled from a YAML recipe, then `--key value`.

    accelerate launch ppi_dist/train.py --config recipes/bernett_650m.yaml --learning_rate_head 3e-4

Recipes are data: every key must be a field below, and a wrong key or value is reported with
the recipe's file and line. The resolved configuration is printed at start and saved with
every checkpoint and with the final model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from ppi_dist.errors import UserError
from ppi_dist.model import SECAIConfig, esm2_650m_config, tiny_esm2_config


class ConfigError(UserError):
    """A recipe key, flag or value that is wrong, with the file and line it came from."""


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
    # Per micro-batch, what the step runs. Encoder: packed rows x (longest + 2). Frozen
    # encoder: the cross-attention's padded pair tokens, pairs x 2 x longest cached protein;
    # no encoder activations, so frozen batches can take budgets many times larger.
    max_tokens: int = 16384
    max_pairs: int | None = None
    batch_size: int | None = None  # fixed-size batches instead of a token budget
    eval_max_tokens: int | None = None  # defaults to 2 x max_tokens (no gradients kept)
    sort_buffer: int = 4096
    shuffle_buffer: int = 100_000
    # Processes preparing training batches off the loop (crop, tokenise, pack layout; with
    # a frozen encoder: embedding-cache rows).
    # None: 2 with a GPU (keeps it fed), 0 on CPU (the loop's own cores do it faster there).
    data_workers: int | None = None
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
    activation_checkpointing_every: int = 1  # checkpoint every n-th encoder layer (1: all)
    # Encoder attention over packed rows: "sdpa" (dense block-diagonal mask, everywhere),
    # "cudnn" (the same, cuDNN's kernel first), "flex" (FlexAttention, skips masked tiles) or
    # "varlen" (flash attention over sequence boundaries, bf16/fp16); all but "sdpa" on CUDA
    # only, SDPA elsewhere (ppi_dist/attention.py).
    encoder_attention: str = "sdpa"
    sync_batchnorm: bool = False
    # torch.compile the encoder's layers and the pair head (ppi_dist/speed.py): fewer
    # kernel launches and fused elementwise work, after a compilation at the first steps.
    compile: bool = False

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
    # Which evaluation's weights are kept: "auroc" (default: a constant or random predictor
    # gets 0.5, so the trivial "all positive" is never rewarded), "aupr", "mcc", or "score"
    # (the weighted Acc/P/R/F1 at the chosen threshold, which "all positive" games).
    best_metric: str = "auroc"
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
    # What the shipped validation threshold maximises: "mcc" (default: 0 for any constant
    # predictor, so a near-"all positive" threshold never wins), "weighted" (the seed's
    # weighted Acc/P/R/F1 score) or "accuracy". Every evaluation prints all three; a
    # threshold must predict both classes on validation (see ppi_dist.metrics).
    threshold_objective: str = "mcc"

    # ---- run folder and errors (docs/reliability.md) ------------------------------------
    # Clear output_dir first when it holds another run (checkpoints, model, train log);
    # without it such a folder is refused unless resume_from is given.
    overwrite: bool = False
    # Resume even though these settings differ from the checkpoint's (comma-separated
    # names, e.g. "learning_rate_head,max_steps"); the command line's values then win.
    resume_override: str | None = None
    debug: bool = False  # tracebacks for user errors too

    def __post_init__(self) -> None:
        choices = {
            "best_metric": ("score", "aupr", "auroc", "mcc"),
            "threshold_grid": ("fixed", "distinct", "both"),
            "lr_schedule": ("cosine", "linear", "constant_with_warmup"),
            "nonfinite_loss": ("stop", "skip"),
            "mixed_precision": ("auto", "no", "bf16", "fp16"),
            "report_to": ("tensorboard", "wandb", "all", "none"),
            "threshold_objective": ("weighted", "accuracy", "mcc"),
            "encoder_attention": ("sdpa", "cudnn", "flex", "varlen"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.encoder_shape not in (None, "tiny", "650M"):
            raise ConfigError(f"encoder_shape must be 'tiny' or '650M', got {self.encoder_shape!r}")
        if self.train_file is not None and self.valid_file is None:
            raise ConfigError("train_file needs a valid_file: the threshold is chosen on it")
        self._check_values()

    def _check_values(self) -> None:
        """Values that would fail deep inside training, or silently train something else."""
        at_least_one = [
            "lora_r",
            "epochs",
            "gradient_accumulation_steps",
            "log_every",
            "max_residues",
            "max_tokens",
            "cross_attention_heads",
            "head_hidden",
            "keep_checkpoints",
            "activation_checkpointing_every",
        ]
        at_least_one += [
            name
            for name in (
                "max_steps",
                "max_pairs",
                "batch_size",
                "eval_max_tokens",
                "eval_every",
                "checkpoint_every",
            )
            if getattr(self, name) is not None
        ]
        for name in at_least_one:
            if getattr(self, name) < 1:
                hint = (
                    " (the newest checkpoint is what --resume_from latest needs)"
                    if name == "keep_checkpoints"
                    else ""
                )
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}{hint}")
        for name in ("learning_rate_lora", "learning_rate_head"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number, got {value}")
        for name in ("head_dropout", "lora_dropout"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"{name} must lie in [0, 1), got {value}")
        for name in ("weight_decay", "max_grad_norm", "focal_gamma"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ConfigError(f"warmup_ratio must lie in [0, 1], got {self.warmup_ratio}")
        if self.focal_alpha is not None and not 0 <= self.focal_alpha <= 1:
            raise ConfigError(f"focal_alpha must lie in [0, 1], got {self.focal_alpha}")
        if self.batch_size is None and self.max_tokens < 2 * (self.max_residues + 2):
            raise ConfigError(
                f"max_tokens={self.max_tokens} cannot hold one pair of two "
                f"{self.max_residues}-residue sequences; use at least "
                f"{2 * (self.max_residues + 2)}, or lower max_residues"
            )

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
        shared -= {"decision_threshold", "threshold_objective"}  # chosen at the end of training
        return SECAIConfig(
            encoder=None if shape else self.encoder,
            encoder_config=shape,
            **{name: getattr(self, name) for name in shared},
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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


def _flags_given(argv: list[str]) -> set[str]:
    """Field names set on the command line (`--name value` or `--name=value`)."""
    return {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}


def load_config(argv: list[str] | None = None) -> TrainConfig:
    """`--config recipe.yaml` (optional) then `--key value` overrides -> TrainConfig.

    Every mistake is a `ConfigError` naming the flag, or the recipe file and line when the
    recipe holds the wrong key or value.
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(TrainConfig)
    parser.add_argument("--config", default=None, help="YAML recipe; flags override it")
    known, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = [a for a in unknown if a.startswith("-")] or unknown
        raise ConfigError(
            f"unknown flag {flags[0]!r} on the command line (the fields are in "
            "ppi_dist/config.py, or see --help)"
        )
    recipe: dict = {}
    lines: dict[str, int] = {}
    path = None
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
        config = parser.parse_args_into_dataclasses(args=argv)[0]
    except (ValueError, TypeError) as error:
        # Blame the recipe only for a key it holds that no flag overrode.
        from_recipe = set(recipe) - _flags_given(argv)
        bad = next((k for k in from_recipe if k in str(error)), None)
        if path is not None and bad is not None:
            raise ConfigError(f"{path}:{lines.get(bad, '?')}: {error}") from None
        raise ConfigError(str(error)) from None
    return config
