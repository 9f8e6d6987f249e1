"""An SE-CAI model's own files: its config, adapter, cross-attention and head (and base).

A folder written by `save_pretrained`::

    secai_config.json          `SECAIConfig` (the decision threshold included)
    secai_head.safetensors     cross-attention + pair head, BatchNorm statistics
    adapter/                   the peft LoRA adapter, unless the encoder was frozen
    base_encoder/              the ESM-2 weights, when the encoder was built from a config
                               (no pretrained checkpoint to name) or merged

`from_pretrained` reads JSON and safetensors only: nothing is unpickled. The model folder
users download adds a card, metrics and an encoder fingerprint around these
(`ppi_dist.hub`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import EsmConfig, EsmModel

from ppi_dist.errors import ConfigError
from ppi_dist.files import read_json, safetensors_writes, save_safetensors
from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.encoder import base_encoder, base_weights
from ppi_dist.models.secai import SECAI, TRAINED_MODULES

CONFIG_NAME = "secai_config.json"
HEAD_WEIGHTS_NAME = "secai_head.safetensors"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = f"{ADAPTER_DIR}/adapter_model.safetensors"
BASE_ENCODER_DIR = "base_encoder"


def save_pretrained(model: SECAI, directory: str | Path) -> Path:
    """Write the peft adapter, cross-attention + head (safetensors) and the JSON config.

    A model whose encoder was built from a config (no pretrained checkpoint to name) also
    gets its base encoder weights saved, so the folder reloads anywhere.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
    save_safetensors(tensors, directory / HEAD_WEIGHTS_NAME)
    if isinstance(model.encoder, PeftModel):
        with safetensors_writes(directory / ADAPTER_WEIGHTS):
            model.encoder.save_pretrained(directory / ADAPTER_DIR)
    config = asdict(model.config)
    if config["encoder_config"] is not None:
        # Save the base without LoRA layers: unload() would merge, so save a clean copy.
        clean = EsmModel(EsmConfig(**config["encoder_config"]), add_pooling_layer=False)
        clean.load_state_dict(base_weights(base_encoder(model.encoder)), strict=True)
        with safetensors_writes(directory / BASE_ENCODER_DIR):
            clean.save_pretrained(directory / BASE_ENCODER_DIR)
        config["encoder"], config["encoder_config"] = BASE_ENCODER_DIR, None
    if isinstance(model.encoder, PeftModel):
        # peft records the path the base was loaded from, which may be a staging folder
        # (`model.partial/base_encoder`) gone by now: record the encoder the config names.
        adapter_config = directory / ADAPTER_DIR / "adapter_config.json"
        settings = read_json(adapter_config)
        settings["base_model_name_or_path"] = config["encoder"]
        adapter_config.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def config_from_file(path: Path) -> SECAIConfig:
    """The `SECAIConfig` saved at `path`; a damaged file, an unknown key or a value of the
    wrong kind is a `ConfigError` naming the file and the field."""
    saved = read_json(path)
    known = {f.name for f in fields(SECAIConfig)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r} (saved by a newer version?)")
    # Saved before the first pass existed: the model has none (its weights are not there).
    saved.setdefault("first_pass_width", None)
    try:
        return SECAIConfig(**saved)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def from_pretrained(directory: str | Path, *, is_trainable: bool = False) -> SECAI:
    """Rebuild a saved model. Reads JSON and safetensors only; nothing is unpickled.

    The model is built exactly as for training (`build_encoder`), then the adapter and head
    weights are loaded into it; `is_trainable=False` returns it in eval mode.
    """
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: no SE-CAI config here")
    config = config_from_file(config_path)
    bundled_base = config.encoder == BASE_ENCODER_DIR
    if bundled_base:
        config.encoder = str(directory / BASE_ENCODER_DIR)
    model = SECAI(config)
    if bundled_base:  # re-saving must bundle the base again, not point into this folder
        model.config.encoder_config = json.loads(model.encoder.config.to_json_string())
        model.config.encoder = None
    if not config.freeze_encoder:
        result = set_peft_model_state_dict(model.encoder, load_file(directory / ADAPTER_WEIGHTS))
        if result.unexpected_keys:
            raise ValueError(
                f"{directory / ADAPTER_DIR}: unexpected adapter weights "
                f"{result.unexpected_keys[:3]}"
            )
    weights = load_file(directory / HEAD_WEIGHTS_NAME)
    for name in TRAINED_MODULES:
        if getattr(model, name) is None:
            continue
        prefix = f"{name}."
        part = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        getattr(model, name).load_state_dict(part, strict=True)
    if not is_trainable:
        model.requires_grad_(False)
        model.eval()
    return model
