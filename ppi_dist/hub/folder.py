"""The model folder users download: the model's files, its card, settings, metrics, identity.

A folder written by `save_for_hub`::

    secai_config.json          model config (decision_threshold included)   } the model's own
    secai_head.safetensors     cross-attention + pair head                  } files
    adapter/                   LoRA adapter (peft), unless the encoder was frozen
    base_encoder/              ESM-2 weights, when the encoder was built from a config
                               or merged (`export_merged`)
    training_config.json       the run's settings (credentials removed)
    metrics.json               the run's metrics per split
    README.md                  model card with Hub metadata (YAML front matter)
    encoder_identity.json      the encoder's name or path AND a fingerprint of its base
                               weights (LoRA excluded), checked on loading (`loading`)
    plots/                     the run's PR, ROC and threshold plots
    manifest.json              written last: the SHA-256 of every file above, checked on
                               loading, so a changed weight file is named (`files`)
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from peft import PeftModel

from ppi_dist.files import safe_join, write_manifest
from ppi_dist.hub.card import CARD_NAME, ModelCard, scrub_secrets
from ppi_dist.models.encoder import base_encoder_fingerprint
from ppi_dist.models.saving import BASE_ENCODER_DIR, save_pretrained
from ppi_dist.models.secai import SECAI

TRAINING_CONFIG_NAME = "training_config.json"
METRICS_NAME = "metrics.json"
IDENTITY_NAME = "encoder_identity.json"
# What a model folder may hold; downloads fetch nothing else (no pickles, no code).
ALLOWED_PATTERNS = ["*.json", "*.safetensors", "*.md", "*.txt", "*.png"]


def save_for_hub(
    model: SECAI,
    folder: str | Path,
    card: ModelCard | None = None,
    *,
    training_config: dict[str, Any] | None = None,
    images: list[str | Path] | None = None,
    merged: bool = False,
) -> Path:
    """Save the model, its card, training settings, metrics and identity into `folder`
    (ready to push; see the module docstring).

    `card` says what the card shows (its `base_model` defaults to the model's encoder when
    that is a Hub name, `threshold_objective` to the model's). `training_config`: the run's
    settings (credential-like keys dropped). `images`: PNGs (e.g. from
    `evaluation.plots.plot_evaluation`) copied to `plots/` and shown. `merged`:
    `export_merged` instead of `save_pretrained` (LoRA merged, no peft needed to load).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    card = card or ModelCard()
    if merged:
        export_merged(model, folder)
    else:
        save_pretrained(model, folder)
    write_encoder_identity(model, folder)
    calibration = getattr(model, "calibration", None)
    if calibration is not None:  # fitted on validation at the end of training
        calibration.save(folder)
    metrics = {split: dict(values) for split, values in card.metrics.items()}
    (folder / METRICS_NAME).write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    clean_config = scrub_secrets(dict(training_config or {}))
    config_text = json.dumps(clean_config, indent=2, default=str) + "\n"
    (folder / TRAINING_CONFIG_NAME).write_text(config_text)
    card = replace(
        card,
        base_model=card.base_model or _base_model_of(model),
        threshold_objective=card.threshold_objective or model.config.threshold_objective,
        calibration=card.calibration or (calibration and calibration.describe()),
        metrics=metrics,
        training_config=clean_config,
        merged=merged,
        lora_layers=None if model.config.freeze_encoder else model.config.lora_layers,
        images=[*card.images, *_copy_images(images or [], folder)],
    )
    (folder / CARD_NAME).write_text(card.render())
    write_manifest(folder, ALLOWED_PATTERNS)  # last: it covers everything written above
    return folder


def _copy_images(images: list[str | Path], folder: Path) -> list[str]:
    """Copy the PNGs into `folder/plots`; their names there, as the card links them."""
    images = [Path(image) for image in images]
    # Plots of several splits share file names (valid/pr_curve.png, test/pr_curve.png).
    clash = len({image.name for image in images}) < len(images)
    names = []
    for image in images:
        name = f"plots/{image.parent.name}_{image.name}" if clash else f"plots/{image.name}"
        target = safe_join(folder, name)
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(image, target)
        names.append(name)
    return names


def _base_model_of(model: SECAI) -> str | None:
    """The encoder's Hub name, when the model was built from one (not a local path)."""
    name = model.config.encoder
    if name and not Path(name).exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return name
    return None


def export_merged(model: SECAI, folder: str | Path) -> Path:
    """Save `model` with its LoRA merged into the encoder: loads without peft.

    The merged encoder is saved as `base_encoder/` (safetensors) and the config says
    `freeze_encoder`, so `from_pretrained` builds a plain EsmModel and loads no adapter.
    Probabilities match the LoRA model to float rounding (tests: 1e-5). `model` is unchanged.
    """
    encoder = copy.deepcopy(model.encoder)
    if isinstance(encoder, PeftModel):
        encoder = encoder.merge_and_unload()
    encoder_config = json.loads(encoder.config.to_json_string())
    config = replace(
        model.config,
        encoder=None,
        encoder_config=encoder_config,
        freeze_encoder=True,
        activation_checkpointing=False,
    )
    merged = SECAI(config, encoder=encoder)
    merged.load_state_dict(model.trainable_state_dict(), strict=False)  # cross-attention, head
    return save_pretrained(merged, folder)


def write_encoder_identity(model: SECAI, folder: str | Path) -> Path:
    """Record which encoder `model` was built on (name or path + weight fingerprint)."""
    path = Path(folder) / IDENTITY_NAME
    identity = {
        "encoder": model.config.encoder or BASE_ENCODER_DIR,
        "fingerprint": base_encoder_fingerprint(model.encoder),
    }
    path.write_text(json.dumps(identity, indent=2) + "\n")
    return path
