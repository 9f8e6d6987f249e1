"""The ESM-2 encoder: built (weights or a shape), with LoRA, and recognised by its weights.

`build_encoder` is the one way an encoder is made, for training and for loading a saved
model alike. `base_encoder` and `encoder_layers` see through peft's LoRA wrapper (for
checkpointing, compile, saving and the kernel switch). A fingerprint says which weights an
encoder holds: `encoder_fingerprint` (LoRA included: were these cached states computed by
these weights?) and `base_encoder_fingerprint` (LoRA excluded: is this the encoder a saved
adapter was trained on?), both from `weights_fingerprint`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import EsmConfig, EsmModel

from ppi_dist.errors import ConfigError, CorruptFileError, UserError
from ppi_dist.models import attention
from ppi_dist.models.config import SECAIConfig


def build_encoder(config: SECAIConfig) -> nn.Module:
    """The ESM-2 encoder, with LoRA on `config.lora_target_modules` unless frozen.

    The base weights are always frozen; LoRA (peft) adds the only trainable encoder weights.
    """
    if config.encoder_config is not None:
        encoder = EsmModel(EsmConfig(**config.encoder_config), add_pooling_layer=False)
    else:
        check_local_encoder(config.encoder)
        # Same call for a Hub name and a local folder; weights load from safetensors.
        encoder = EsmModel.from_pretrained(
            config.encoder, add_pooling_layer=False, use_safetensors=True
        )
    encoder.requires_grad_(False)
    for layer in encoder_layers(encoder):
        layer.intermediate = ErfGeluIntermediate(layer.intermediate.dense)
    rotary = getattr(encoder.config, "position_embedding_type", None) == "rotary"
    if config.encoder_attention != "sdpa" and rotary:
        # One attention function that runs SDPA, cuDNN-first SDPA, flex or varlen per call.
        encoder.set_attn_implementation(attention.IMPLEMENTATION)
    if config.activation_checkpointing:
        # Non-reentrant: correct with frozen inputs and with ZeRO-2's gradient hooks.
        # transformers 5 renamed gradient_checkpointing_enable (the old name still works,
        # with a deprecation warning); 4.x has only the old one.
        kwargs = {"use_reentrant": False}
        if hasattr(encoder, "activation_checkpointing_enable"):
            encoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        every = config.activation_checkpointing_every
        for index, layer in enumerate(encoder_layers(encoder)):
            layer.gradient_checkpointing = index % every == 0
    if config.freeze_encoder:
        return encoder
    layers = len(encoder_layers(encoder))
    if config.lora_layers is not None and config.lora_layers > layers:
        raise ConfigError(f"lora_layers {config.lora_layers}: the encoder has {layers} layers")
    adapted = config.lora_layer_indices(layers)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        bias="none",
        # peft finds the layer number after `layers_pattern` in each module's name
        # (encoder.layer.5.attention.self.query).
        layers_to_transform=adapted,
        layers_pattern="layer" if adapted is not None else None,
    )
    return get_peft_model(encoder, lora)


class ErfGeluIntermediate(nn.Module):
    """ESM-2's feed-forward up-projection and GELU, the GELU as one `F.gelu` call.

    transformers' ESM writes GELU as `x * 0.5 * (1 + erf(x / sqrt 2))`: four operators on the
    widest tensor of every layer (4d per token) forward, a dozen backward, and one saved
    activation each. `F.gelu` is the same function (the exact erf form, not the tanh
    approximation) in one kernel each way. The two agree to float32 rounding
    (tests/models/test_secai.py), and in bf16 `F.gelu` rounds once where the composed form
    rounds per operator.
    The weights stay where transformers put them (`intermediate.dense`), so checkpoints,
    LoRA targets and fingerprints are unchanged.
    """

    def __init__(self, dense: nn.Linear) -> None:
        super().__init__()
        self.dense = dense

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(hidden_states))


def looks_local(name: str) -> bool:
    """A path, not a Hub name: it starts like one, or exists here."""
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def check_local_encoder(name: str) -> None:
    """An encoder given as a local folder exists, holds safetensors weights, and they open;
    otherwise a `UserError` naming the folder or file (the Hub client would call a missing
    folder an invalid repo id, and transformers would say no file named model.safetensors)."""
    if not looks_local(name):
        return
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise UserError(
            f"encoder {name!r}: no such local folder; give the folder holding the ESM-2 "
            "weights (config.json + model.safetensors), or a Hub name"
        )
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        found = (
            f"only {', '.join(pickled)} (pickled weights, never loaded here)" if pickled else "none"
        )
        raise UserError(
            f"{folder}: no model.safetensors (found {found}); save the encoder with "
            "`save_pretrained(..., safe_serialization=True)` or convert it to safetensors"
        )
    for path in weights:
        try:
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as error:
            raise CorruptFileError(
                f"{path}: not a readable safetensors file ({error}); the file is truncated or "
                "damaged: copy or download it again"
            ) from None


def base_encoder(encoder: nn.Module) -> nn.Module:
    """The ESM-2 model itself, under peft's LoRA wrapper when there is one."""
    return encoder.get_base_model() if isinstance(encoder, PeftModel) else encoder


def encoder_layers(encoder: nn.Module) -> list[nn.Module]:
    """ESM-2's transformer layers in order (`encoder.layer`), LoRA-wrapped or not."""
    layers = getattr(getattr(base_encoder(encoder), "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"no transformer layers (encoder.layer) in {type(encoder).__name__}")
    return list(layers)


@contextmanager
def running_layers(encoder: nn.Module, start: int, stop: int, final_norm: bool) -> Iterator[None]:
    """Within the block, the encoder's forward runs its layers `start:stop` only, and its
    final layer norm only if `final_norm`.

    What the trunk cache needs (`inference.trunk`): layers 0..D-1 without the norm give the
    states entering layer D, and layers D..L-1 with the norm, fed those states as
    `inputs_embeds`, give the last-layer states. transformers' own forward does the rest
    (attention masks, rotary positions, checkpointing) as for the whole encoder, so the
    two halves compute exactly what one pass computes.
    """
    esm = base_encoder(encoder).encoder
    layers, norm = esm.layer, esm.emb_layer_norm_after
    esm.layer = nn.ModuleList(list(layers)[start:stop])
    if not final_norm:
        esm.emb_layer_norm_after = None
    try:
        yield
    finally:
        esm.layer, esm.emb_layer_norm_after = layers, norm


def base_weights(base: nn.Module) -> dict[str, torch.Tensor]:
    """The plain EsmModel state dict of a (possibly LoRA-wrapped) base: LoRA tensors dropped."""
    weights = {}
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        weights[key.replace(".base_layer.", ".")] = value
    return weights


# ---- fingerprints ----------------------------------------------------------------------


def weights_fingerprint(
    tensors: Mapping[str, torch.Tensor], *, samples: int, digest: str, length: int
) -> str:
    """Hash of every tensor's name, shape and a strided sample of at most `samples` values:
    milliseconds to a second even for ESM-2 650M, and any trained matrix changes it."""
    hasher = hashlib.new(digest)
    for name, tensor in sorted(tensors.items()):
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // samples)].float().cpu().numpy()
        hasher.update(f"{name}:{tuple(tensor.shape)}".encode())
        hasher.update(sample.tobytes())
    return hasher.hexdigest()[:length]


def encoder_fingerprint(encoder: nn.Module) -> str:
    """The encoder's weights, LoRA included: an embedding cache records it, so states from
    other weights are never reused."""
    return weights_fingerprint(encoder.state_dict(), samples=4096, digest="sha1", length=20)


def base_encoder_fingerprint(encoder: nn.Module) -> str:
    """The BASE encoder's weights: LoRA excluded, names unwrapped. The same pretrained ESM-2
    gives the same fingerprint with or without an adapter on it, so a saved model can say
    which encoder weights its adapter and head were trained on."""
    base = base_weights(base_encoder(encoder))
    return weights_fingerprint(base, samples=65536, digest="sha256", length=32)
