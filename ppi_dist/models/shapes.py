"""The one registry of ESM-2 shapes: an `EsmConfig` (as a dict) for random-weight encoders.

    encoder_config_of("650M")                      # the shape of facebook/esm2_t33_650M_UR50D
    encoder_config_of("tiny", hidden=64, heads=4)  # tests and the CPU default run

The released sizes (Lin et al., Science 2023) share the vocabulary, rotary positions, the
1,026 positions and token dropout; they differ in width, depth and heads. The trainer's
`encoder_shape`, the `ppi-dist parameters` command and the benchmarks take these names.
"""

from __future__ import annotations

from ppi_dist.errors import ConfigError

# name -> (hidden size, layers, attention heads) of the released ESM-2 models.
RELEASED = {
    "8M": (320, 6, 20),
    "35M": (480, 12, 20),
    "150M": (640, 30, 20),
    "650M": (1280, 33, 20),
    "3B": (2560, 36, 40),
    "15B": (5120, 48, 40),
}
SHAPES = ("tiny", *RELEASED)


def esm2_shape(hidden: int, layers: int, heads: int, **extra: object) -> dict:
    """An ESM-2 `EsmConfig` as a dict: the released models' vocabulary, rotary positions,
    1,026 positions and token dropout, with the given width and depth."""
    return {
        "vocab_size": 33,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 4 * hidden,
        "max_position_embeddings": 1026,
        "position_embedding_type": "rotary",
        "pad_token_id": 1,
        "mask_token_id": 32,
        "token_dropout": True,
        "emb_layer_norm_before": False,
        "layer_norm_eps": 1e-5,
        **extra,
    }


def tiny_esm2_config(hidden: int = 32, layers: int = 2, heads: int = 2) -> dict:
    """A tiny ESM-2 shape for tests and the CPU default run (no dropout: deterministic)."""
    return esm2_shape(
        hidden, layers, heads, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )


def encoder_config_of(shape: str, *, hidden: int = 32, layers: int = 2, heads: int = 2) -> dict:
    """The `EsmConfig` dict of a named shape; `hidden`, `layers`, `heads` size "tiny" only."""
    if shape == "tiny":
        return tiny_esm2_config(hidden, layers, heads)
    if shape not in RELEASED:
        raise ConfigError(f"encoder_shape must be one of {SHAPES}, got {shape!r}")
    return esm2_shape(*RELEASED[shape])
