"""The encoder's attention over packed rows: which kernel, told which tokens belong together.

`SECAI.encode` packs several sequences to a row (`packing`); each must attend only to its
own tokens. `SECAIConfig.encoder_attention` says how ESM-2's self-attention is told so:

- "sdpa" (default): a dense block-diagonal (R, 1, W, W) mask to
  `scaled_dot_product_attention`, as additive logit offsets made once for all layers
  (`additive_mask`). Runs everywhere. On a GPU the memory-efficient or cuDNN
  kernel still computes every masked block: with four sequences to a row, three quarters of
  the attention arithmetic is thrown away.
- "cudnn": the same dense mask, with cuDNN's attention tried first (PyTorch prefers the
  memory-efficient kernel; BENCHMARKS.md compares the two). CUDA only.
- "flex": FlexAttention with a document mask (a `BlockMask`): 128 x 128 tiles in which no
  query shares a sequence with a key are skipped, the others masked inside the kernel.
  Compiled (Triton) by transformers' own "flex_attention" function. CUDA only here:
  FlexAttention has no backward on the CPU.
- "varlen": the rows read as one stream of tokens cut at cumulative sequence lengths
  (`packing_layout`'s `pack_cu_seqlens`) through flash attention
  (`torch.nn.attention.varlen.varlen_attn`): no mask and no masked work. CUDA only, in
  bf16/fp16.

All four compute the same function (tests: packed equals each sequence alone). Which one
runs is decided per call from where the call runs (`kernel_for`): "cudnn", "flex" and
"varlen" fall back to "sdpa" where they cannot run, so a model trained with any of them
loads and predicts on a CPU, like any adapter.

The encoder gets one attention function for all four ("ppi_packed", registered with
transformers' `AttentionInterface`); it dispatches on what `encode` hands it: a `BlockMask`
goes to flex, `packed_cu_seqlens` to varlen, a tensor mask to SDPA (cuDNN first with
`packed_prefer_cudnn`). Switching kernels per call therefore needs no change to the model.
"""

from __future__ import annotations

import inspect

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, create_block_mask
from transformers import AttentionInterface
from transformers.integrations.flex_attention import flex_attention_forward
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from ppi_dist.models.packing import PackedBatch

try:
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # pragma: no cover - a torch without it: "varlen" falls back to "sdpa"
    varlen_attn = None
# Where varlen_attn takes no `scale`, it is fixed at 1/sqrt(dim).
_VARLEN_TAKES_SCALE = varlen_attn is not None and (
    "scale" in inspect.signature(varlen_attn).parameters
)

ENCODER_ATTENTION = ("sdpa", "cudnn", "flex", "varlen")
# SDPA's backends in the order "cudnn" tries them (the rest as PyTorch would).
CUDNN_FIRST = [
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.MATH,
]
IMPLEMENTATION = "ppi_packed"  # the name the encoder's config carries


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | BlockMask | None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """ESM-2's attention on (R, H, W, D) query/key/value -> ((R, W, H, D), None)."""
    cu_seqlens = kwargs.pop("packed_cu_seqlens", None)
    if cu_seqlens is not None:
        return varlen_attention(module, query, key, value, cu_seqlens, **kwargs)
    if isinstance(attention_mask, BlockMask):
        return flex_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if kwargs.pop("packed_prefer_cudnn", False):
        with sdpa_kernel(CUDNN_FIRST, set_priority=True):
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(IMPLEMENTATION, packed_attention)
# Unpacked calls (a 2D padding mask, e.g. one sequence alone) get SDPA's 4D mask.
AttentionMaskInterface.register(IMPLEMENTATION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seqlens: torch.Tensor,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Flash attention over the packed rows read as one stream cut at `cu_seqlens` (int32).

    Padding tails are segments of their own (`packing_layout`), so no segment mixes
    sequences and every query has keys; their outputs are thrown away by `unpack_states`.
    """
    if dropout > 0 and module.training:
        raise ValueError("encoder_attention 'varlen' has no attention dropout; use 'sdpa'")
    rows, heads, width, dim = query.shape
    device = query.device.type
    # Rotary position embeddings promote bf16 queries to fp32 under autocast; flash attention
    # takes bf16/fp16 only, so run in autocast's precision.
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else query.dtype
    if _VARLEN_TAKES_SCALE:
        scale_kwargs = {"scale": scaling}
    elif scaling is not None:  # older signature: fixed 1/sqrt(dim), folded into the query
        query, scale_kwargs = query * (scaling * dim**0.5), {}
    else:
        scale_kwargs = {}

    def stream(x: torch.Tensor) -> torch.Tensor:  # (R, H, W, D) -> (R * W, H, D)
        return x.transpose(1, 2).reshape(rows * width, heads, dim).to(dtype)

    out = varlen_attn(
        stream(query),
        stream(key),
        stream(value),
        cu_seqlens,
        cu_seqlens,
        width,
        width,
        **scale_kwargs,
    )
    return out.view(rows, width, heads, dim), None


def packed_attention_inputs(
    packed: PackedBatch, embeddings: torch.Tensor, choice: str, implementation: str
) -> tuple[torch.Tensor | BlockMask | None, dict]:
    """What the encoder's layers get for packed rows: `(attention_mask, extra kwargs)`.

    `choice` is `encoder_attention`; `implementation` the encoder's transformers attention
    ("sdpa", "eager", or `IMPLEMENTATION`, the only one that takes flex and varlen inputs).
    """
    if implementation == "eager":  # eager adds the mask to the logits
        blocked = torch.finfo(embeddings.dtype).min
        additive = torch.zeros(
            packed.same_sequence.shape, dtype=embeddings.dtype, device=embeddings.device
        )
        return additive.masked_fill(~packed.same_sequence, blocked), {}
    kernel = kernel_for(choice, embeddings) if implementation == IMPLEMENTATION else "sdpa"
    if kernel == "flex":
        return document_block_mask(packed.sequence_ids), {}
    if kernel == "varlen":
        return None, {"packed_cu_seqlens": packed.cu_seqlens}
    if kernel == "cudnn":
        return packed.same_sequence, {"packed_prefer_cudnn": True}
    return additive_mask(packed.same_sequence, embeddings), {}


def additive_mask(attend: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """The boolean mask as SDPA turns it into logit offsets (0 where True, -inf elsewhere),
    once for all layers and in the dtype the layers compute in (autocast's, else the
    embeddings'): given the boolean mask, SDPA converts it in every layer, and each layer's
    backward keeps its own converted copy."""
    device = embeddings.device.type
    on = torch.is_autocast_enabled(device)
    dtype = torch.get_autocast_dtype(device) if on else embeddings.dtype
    offsets = torch.zeros(attend.shape, dtype=dtype, device=embeddings.device)
    return offsets.masked_fill(~attend, float("-inf"))


def kernel_for(choice: str, states: torch.Tensor) -> str:
    """The kernel `choice` runs as for the encoder's input `states` (embeddings)."""
    if choice not in ENCODER_ATTENTION:
        raise ValueError(f"encoder_attention must be one of {ENCODER_ATTENTION}, got {choice!r}")
    return choice if runs_here(choice, states) else "sdpa"


def runs_here(choice: str, states: torch.Tensor) -> bool:
    """Whether `choice` can run on `states`' device and precision."""
    device = states.device.type
    if choice == "sdpa":
        return True
    if device != "cuda":
        return False
    if choice in ("cudnn", "flex"):
        return True
    half = (torch.float16, torch.bfloat16)
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else states.dtype
    return varlen_attn is not None and dtype in half


def document_block_mask(sequence_ids: torch.Tensor) -> BlockMask:
    """FlexAttention mask of packed rows: query and key in the same sequence (or both padding).

    `sequence_ids` (R, W): the sequence at each packed token, -1 at padding.
    """
    rows, width = sequence_ids.shape

    def same_sequence(row, head, q, kv):  # FlexAttention's mask_mod signature
        return sequence_ids[row, q] == sequence_ids[row, kv]

    return create_block_mask(same_sequence, rows, None, width, width, device=sequence_ids.device)
