"""SE-CAI: Siamese ESM-2 Cross-Attention Interaction model.

Read top to bottom, a batch goes:

1. `encode`: ONE call of the shared ESM-2 on the batch's distinct sequences -> per-residue
   states. One call (not one for A and one for B) is what keeps DeepSpeed ZeRO-2 and
   activation checkpointing correct for a siamese model, and encodes a protein that occurs
   in several pairs only once. The sequences are packed several to a row (`packing`), so
   short partners of long proteins cost no padding.
2. `CrossAttention`: A's residues attend to B's (A->B) and B's to A's (B->A) with shared
   W_Q, W_K, W_V, through `F.scaled_dot_product_attention` (with the padding mask, the GPU
   runs its memory-efficient or cuDNN kernel; tests/gpu checks it is never the math one).
3. `masked_max_mean`: max- and mean-pool each direction over real residues only.
4. `PairHead`: v = [v_A, v_B, v_A - v_B, v_A * v_B] -> Linear -> BatchNorm -> GELU ->
   Dropout -> Linear -> one logit per pair.

Residues only: `<cls>`, `<eos>` and padding are masked out of cross-attention keys and of
pooling. They carry no residue of the partner protein, and counting them would let the
sequence length leak into the pooled vector.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import EsmConfig, EsmModel

from ppi_dist import attention
from ppi_dist.packing import LAYOUT_FIELDS, pack_batch, packed_inputs_from_layout, unpack_states

CONFIG_NAME = "secai_config.json"
HEAD_WEIGHTS_NAME = "secai_head.safetensors"
ADAPTER_DIR = "adapter"
BASE_ENCODER_DIR = "base_encoder"


@dataclass
class SECAIConfig:
    """Everything needed to rebuild the model; saved as JSON beside the weights.

    `encoder` is a Hub name or local path of an ESM-2 checkpoint (`EsmModel` weights);
    `encoder_config` is used instead when the encoder is built from a config (tests, or
    random-weight shapes for benchmarks).
    """

    encoder: str | None = "facebook/esm2_t33_650M_UR50D"
    encoder_config: dict | None = None
    cross_attention_heads: int = 8
    head_hidden: int = 512
    head_dropout: float = 0.1
    # "average": logits of (A,B) and (B,A) averaged, so score(A,B) == score(B,A) exactly.
    # "none": the raw order-dependent head (v_A - v_B is antisymmetric).
    symmetric: str = "average"
    # "cross_attention" (SE-CAI) or "pooled": the classic baseline that max- and mean-pools
    # each protein's own residue states into the same head; only the interaction differs.
    interaction: str = "cross_attention"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    freeze_encoder: bool = False  # no LoRA; only cross-attention and head train
    activation_checkpointing: bool = False
    # With checkpointing: recompute every n-th encoder layer only (1: all), the others keep
    # their activations; memory against recompute, between all and none.
    activation_checkpointing_every: int = 1
    # How the packed encoder rows attend: "sdpa" (dense block-diagonal mask), "cudnn" (the
    # same, cuDNN's kernel first), "flex" (FlexAttention, masked tiles skipped) or "varlen"
    # (flash attention over cumulative sequence lengths); all but "sdpa" run on CUDA only,
    # "sdpa" elsewhere (`attention`).
    encoder_attention: str = "sdpa"
    sync_batchnorm: bool = False
    decision_threshold: float = 0.5
    # What the threshold maximised on validation ("mcc", "weighted", "accuracy"), when chosen.
    threshold_objective: str | None = None

    def __post_init__(self) -> None:
        if self.symmetric not in ("average", "none"):
            raise ValueError(f"symmetric must be 'average' or 'none', got {self.symmetric!r}")
        if self.interaction == "mean_pool":  # the old name of the pooled baseline
            self.interaction = "pooled"
        if self.interaction not in ("cross_attention", "pooled"):
            raise ValueError(
                f"interaction must be 'cross_attention' or 'pooled', got {self.interaction!r}"
            )
        if self.encoder_attention not in attention.ENCODER_ATTENTION:
            raise ValueError(
                f"encoder_attention must be one of {attention.ENCODER_ATTENTION}, "
                f"got {self.encoder_attention!r}"
            )
        if self.activation_checkpointing_every < 1:
            raise ValueError(
                "activation_checkpointing_every must be at least 1, "
                f"got {self.activation_checkpointing_every}"
            )
        if (self.encoder is None) == (self.encoder_config is None):
            raise ValueError("give exactly one of `encoder` (name or path) or `encoder_config`")


def residue_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """True at residue positions: the attention mask less `<cls>` (first) and `<eos>` (last)."""
    mask = attention_mask.bool().clone()
    lengths = mask.sum(dim=1)
    mask[:, 0] = False
    mask[torch.arange(mask.shape[0], device=mask.device), lengths - 1] = False
    return mask


class CrossAttention(nn.Module):
    """Multi-head attention from a query protein's residues to a key protein's residues.

    The same W_Q, W_K, W_V serve both directions (A->B and B->A): the model is siamese here
    too. d_k = d / heads. Padding (and `<cls>`/`<eos>`) of the key protein is masked.
    `project` and `attend` are the two halves of `forward`: the projections act per residue,
    so `SECAI.pair_logits` projects each distinct protein once and attends per pair.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"encoder width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.w_q = nn.Linear(dim, dim)
        # No key bias: it adds the same q.b to every logit of a query, which softmax ignores.
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def project(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(U, L, d) -> Q, K, V, each (U, heads, L, d_k)."""
        return tuple(self._split_heads(w(states)) for w in (self.w_q, self.w_k, self.w_v))

    @staticmethod
    def attend(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor
    ) -> torch.Tensor:
        """Query residues read key residues: (P, h, Lq, d_k) x2 + (P, Lk) bool -> (P, Lq, d)."""
        # Boolean mask, True = attend; broadcast over heads and query positions.
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        pairs, _, length, _ = attended.shape
        return attended.transpose(1, 2).reshape(pairs, length, -1)

    def forward(
        self, query_states: torch.Tensor, key_states: torch.Tensor, key_mask: torch.Tensor
    ) -> torch.Tensor:
        """(P, Lq, d), (P, Lk, d), (P, Lk) bool -> (P, Lq, d)."""
        q, _, _ = self.project(query_states)
        _, k, v = self.project(key_states)
        return self.attend(q, k, v, key_mask)


def masked_max_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[max, mean] over the positions where `mask` is True: (P, L, d), (P, L) -> (P, 2d).

    The mean is summed and divided in fp32: in bf16 a count of 529 residues rounds to 528
    and 1,022 to 1,024, and a long sum of bf16 values loses its low digits.
    """
    mask = mask.unsqueeze(-1)
    lowest = torch.finfo(states.dtype).min
    maxed = states.masked_fill(~mask, lowest).amax(dim=1)
    count = mask.sum(dim=1).clamp(min=1).float()
    mean = states.masked_fill(~mask, 0.0).float().sum(dim=1) / count
    return torch.cat([maxed, mean.to(states.dtype)], dim=-1)


class PairHead(nn.Module):
    """Linear -> BatchNorm1d -> GELU -> Dropout -> Linear on v = [v_A, v_B, v_A-v_B, v_A*v_B].

    BatchNorm rule: in training, a batch of fewer than two rows (one pair, not symmetrised)
    has no batch variance, so it is normalised with the running statistics instead, and the
    running statistics are left unchanged. Each rank normalises its own micro-batch (uneven
    sizes are fine); `sync_batchnorm=True` makes statistics global across GPUs.
    """

    def __init__(self, pooled_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4 * pooled_dim, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, v_a: torch.Tensor, v_b: torch.Tensor) -> torch.Tensor:
        pair_vector = torch.cat([v_a, v_b, v_a - v_b, v_a * v_b], dim=-1)
        hidden = self.fc1(pair_vector)
        if self.training and hidden.shape[0] < 2:
            hidden = F.batch_norm(
                hidden,
                self.norm.running_mean,
                self.norm.running_var,
                self.norm.weight,
                self.norm.bias,
                training=False,
                eps=self.norm.eps,
            )
        else:
            hidden = self.norm(hidden)
        return self.fc2(self.dropout(F.gelu(hidden))).squeeze(-1)


def base_encoder(encoder: nn.Module) -> nn.Module:
    """The ESM-2 model itself, under peft's LoRA wrapper when there is one."""
    return encoder.get_base_model() if isinstance(encoder, PeftModel) else encoder


def encoder_layers(encoder: nn.Module) -> list[nn.Module]:
    """ESM-2's transformer layers in order (`encoder.layer`), LoRA-wrapped or not."""
    layers = getattr(getattr(base_encoder(encoder), "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"no transformer layers (encoder.layer) in {type(encoder).__name__}")
    return list(layers)


def build_encoder(config: SECAIConfig) -> nn.Module:
    """The ESM-2 encoder, with LoRA on `config.lora_target_modules` unless frozen.

    The base weights are always frozen; LoRA (peft) adds the only trainable encoder weights.
    """
    if config.encoder_config is not None:
        encoder = EsmModel(EsmConfig(**config.encoder_config), add_pooling_layer=False)
    else:
        # Same call for a Hub name and a local folder; weights load from safetensors.
        encoder = EsmModel.from_pretrained(
            config.encoder, add_pooling_layer=False, use_safetensors=True
        )
    encoder.requires_grad_(False)
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
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        bias="none",
    )
    return get_peft_model(encoder, lora)


class SECAI(nn.Module):
    """Siamese ESM-2 encoder + bidirectional cross-attention + pair head. Returns logits."""

    def __init__(self, config: SECAIConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else build_encoder(config)
        dim = self.encoder.config.hidden_size
        # The pooled baseline has no cross-attention at all: an unused module would make DDP
        # fail ("parameters that were not used in producing loss").
        self.cross_attention = (
            CrossAttention(dim, config.cross_attention_heads)
            if config.interaction == "cross_attention"
            else None
        )
        self.head = PairHead(2 * dim, config.head_hidden, config.head_dropout)
        if config.sync_batchnorm:
            self.head = nn.SyncBatchNorm.convert_sync_batchnorm(self.head)

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        layout: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Last-layer per-residue states of the distinct sequences: (U, L, d).

        One encoder call. The sequences are packed several to a row (`packing`), each
        attending only to itself, so the encoder runs on little padding; the states come
        back one sequence per row, zero at padding. Encoders that cannot take a packed
        layout (absolute positions, kernels without a 4D mask) run the padded rows as given.
        `layout` (the batch's `pack_*` tensors, computed by the data loader on the CPU) spares
        the device a host synchronisation; without it the layout is computed here.
        """
        if not self._can_pack():
            output = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
            return output.last_hidden_state
        base = base_encoder(self.encoder)
        pad_id = base.config.pad_token_id
        packed = (
            packed_inputs_from_layout(input_ids, layout, pad_id)
            if layout is not None
            else pack_batch(input_ids, attention_mask, pad_id)
        )
        # Embedding here, with the 2D token mask: ESM-2's embedding layer reads the mask as
        # (rows, tokens), while the layers below get the packed layout.
        embeddings = base.embeddings(input_ids=packed.input_ids, attention_mask=packed.token_mask)
        attend, extra = attention.packed_attention_inputs(
            packed, embeddings, self.config.encoder_attention, base.config._attn_implementation
        )
        packed_states = self.encoder(
            inputs_embeds=embeddings,
            attention_mask=attend,
            position_ids=packed.position_ids,
            **extra,
        ).last_hidden_state
        return unpack_states(packed_states, packed, attention_mask.shape)

    def _can_pack(self) -> bool:
        config = self.encoder.config
        return getattr(config, "position_embedding_type", None) == "rotary" and (
            config._attn_implementation in ("sdpa", "eager", attention.IMPLEMENTATION)
        )

    def pair_logits(
        self,
        side_a: tuple[torch.Tensor, torch.Tensor],
        side_b: tuple[torch.Tensor, torch.Tensor],
        index_a: torch.Tensor,
        index_b: torch.Tensor,
    ) -> torch.Tensor:
        """Logits of pairs (side_a row index_a[i], side_b row index_b[i]): THE pair scoring.

        Each side is `(states (U, L, d), mask (U, L) True at residues)` of distinct proteins,
        from `encode` (training: both sides are the same tuple) or from an embedding cache
        (`scoring`, frozen-encoder training). W_Q, W_K, W_V act per residue, so each
        distinct protein is projected once and the pairs index the projections: an
        all-vs-all tile of t x t pairs needs 2t projections, not 2t^2.
        """
        (states_a, mask_a), (states_b, mask_b) = side_a, side_b
        # Cached states may be stored in another precision than the weights (fp16 cache,
        # fp32 or bf16 weights): compute in the weights' precision.
        dtype = self.head.fc1.weight.dtype
        states_a = states_a.to(dtype)
        states_b = states_a if side_b is side_a else states_b.to(dtype)
        pair_mask_a, pair_mask_b = mask_a[index_a], mask_b[index_b]
        if self.cross_attention is not None:
            q_a, k_a, v_a = self.cross_attention.project(states_a)
            q_b, k_b, v_b = (
                (q_a, k_a, v_a) if side_b is side_a else self.cross_attention.project(states_b)
            )
            attend = self.cross_attention.attend
            # A's residues read B, and B's residues read A.
            a_to_b = attend(q_a[index_a], k_b[index_b], v_b[index_b], pair_mask_b)
            b_to_a = attend(q_b[index_b], k_a[index_a], v_a[index_a], pair_mask_a)
            pooled_a = masked_max_mean(a_to_b, pair_mask_a)
            pooled_b = masked_max_mean(b_to_a, pair_mask_b)
        else:  # pooled baseline: each protein's own residues, pooled the same way
            pooled_a = masked_max_mean(states_a, mask_a)[index_a]
            pooled_b = masked_max_mean(states_b, mask_b)[index_b]
        if self.config.symmetric == "none":
            return self.head(pooled_a, pooled_b)
        # Both orders in one head call (BatchNorm sees the same rows either way), then the
        # mean of the two logits: addition commutes, so score(A,B) == score(B,A) exactly.
        both = self.head(torch.cat([pooled_a, pooled_b]), torch.cat([pooled_b, pooled_a]))
        forward, backward = both.chunk(2)
        return (forward + backward) / 2

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        index_a: torch.Tensor | None = None,
        index_b: torch.Tensor | None = None,
        states: torch.Tensor | None = None,
        states_mask: torch.Tensor | None = None,
        **batch: object,
    ) -> torch.Tensor:
        """Batch from `data.collate_pairs` -> one logit per pair (P,).

        Frozen-encoder training passes precomputed per-residue `states` and their
        `states_mask` (from `embeddings.EmbeddingCache`) instead of tokens.
        """
        if states is None:
            has_layout = all(name in batch for name in LAYOUT_FIELDS)
            layout = {name: batch[name] for name in LAYOUT_FIELDS} if has_layout else None
            states = self.encode(input_ids, attention_mask, layout)
            states_mask = residue_mask(attention_mask)
        side = (states, states_mask)
        return self.pair_logits(side, side, index_a, index_b)

    @torch.no_grad()
    def predict_proba(self, batch: dict) -> torch.Tensor:
        """P(interact) per pair, in eval mode (dropout off, BatchNorm running statistics)."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(**batch).float())
        finally:
            self.train(was_training)

    # ---- what trains, and how it is saved ---------------------------------------------

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Cross-attention and head weights (+ BatchNorm buffers): what is not the encoder."""
        return {
            f"{name}.{key}": value
            for name in ("cross_attention", "head")
            if getattr(self, name) is not None
            for key, value in getattr(self, name).state_dict().items()
        }

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the peft adapter, cross-attention + head (safetensors) and the JSON config.

        A model whose encoder was built from a config (no pretrained checkpoint to name) also
        gets its base encoder weights saved, so the folder reloads anywhere.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.trainable_state_dict().items()}
        save_file(tensors, directory / HEAD_WEIGHTS_NAME)
        if isinstance(self.encoder, PeftModel):
            self.encoder.save_pretrained(directory / ADAPTER_DIR)
        config = asdict(self.config)
        if config["encoder_config"] is not None:
            base = base_encoder(self.encoder)
            # Save the base without LoRA layers: unload() would merge, so save a clean copy.
            clean = EsmModel(EsmConfig(**config["encoder_config"]), add_pooling_layer=False)
            clean.load_state_dict(_base_weights(base), strict=True)
            clean.save_pretrained(directory / BASE_ENCODER_DIR)
            config["encoder"], config["encoder_config"] = BASE_ENCODER_DIR, None
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, is_trainable: bool = False) -> SECAI:
        """Rebuild a saved model. Reads JSON and safetensors only; nothing is unpickled.

        The model is built exactly as for training (`build_encoder`), then the adapter and
        head weights are loaded into it; `is_trainable=False` returns it in eval mode.
        """
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path}: no SE-CAI config here")
        config = SECAIConfig(**json.loads(config_path.read_text()))
        bundled_base = config.encoder == BASE_ENCODER_DIR
        if bundled_base:
            config.encoder = str(directory / BASE_ENCODER_DIR)
        model = cls(config)
        if bundled_base:  # re-saving must bundle the base again, not point into this folder
            model.config.encoder_config = json.loads(model.encoder.config.to_json_string())
            model.config.encoder = None
        if not config.freeze_encoder:
            adapter = load_file(directory / ADAPTER_DIR / "adapter_model.safetensors")
            result = set_peft_model_state_dict(model.encoder, adapter)
            if result.unexpected_keys:
                raise ValueError(
                    f"{directory / ADAPTER_DIR}: unexpected adapter weights "
                    f"{result.unexpected_keys[:3]}"
                )
        weights = load_file(directory / HEAD_WEIGHTS_NAME)
        for name in ("cross_attention", "head"):
            if getattr(model, name) is None:
                continue
            prefix = f"{name}."
            part = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
            getattr(model, name).load_state_dict(part, strict=True)
        if not is_trainable:
            model.requires_grad_(False)
            model.eval()
        return model


def _base_weights(base: nn.Module) -> dict[str, torch.Tensor]:
    """The plain EsmModel state dict of a (possibly LoRA-wrapped) base: LoRA tensors dropped."""
    weights = {}
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        weights[key.replace(".base_layer.", ".")] = value
    return weights


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def lora_parameter_count(config: EsmConfig, r: int, target_modules: list[str]) -> int:
    """Closed form: each targeted d x d projection in each layer gets A (r x d) + B (d x r)."""
    d = config.hidden_size
    per_layer = sum(r * (d + d) for name in target_modules if name in ("query", "key", "value"))
    return config.num_hidden_layers * per_layer


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


def esm2_650m_config() -> dict:
    """The shape of facebook/esm2_t33_650M_UR50D (no weights)."""
    return esm2_shape(1280, 33, 20)


def tiny_esm2_config(hidden: int = 32, layers: int = 2, heads: int = 2) -> dict:
    """A tiny ESM-2 shape for tests and the CPU default run (no dropout: deterministic)."""
    return esm2_shape(
        hidden, layers, heads, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )


def _fmt_share(part: int, whole: int) -> str:
    return f"{part:,} ({100 * part / whole:.3f}% of {whole:,})"


def parameter_report(
    encoder_config: dict, lora_r: int = 8, cross_attention_heads: int = 20, head_hidden: int = 512
) -> str:
    """Trainable-parameter table for a shape, built on the meta device (no weights)."""
    config = SECAIConfig(
        encoder=None,
        encoder_config=encoder_config,
        lora_r=lora_r,
        cross_attention_heads=cross_attention_heads,
        head_hidden=head_hidden,
    )
    with torch.device("meta"):
        model = SECAI(config)
    esm_total = sum(p.numel() for n, p in model.encoder.named_parameters() if "lora_" not in n)
    lora = sum(p.numel() for n, p in model.encoder.named_parameters() if "lora_" in n)
    closed_form = lora_parameter_count(
        EsmConfig(**encoder_config), lora_r, config.lora_target_modules
    )
    cross = sum(p.numel() for p in model.cross_attention.parameters())  # SE-CAI: not None
    head = sum(p.numel() for p in model.head.parameters())
    trainable, total = count_parameters(model)
    lines = [
        f"ESM-2 base (frozen):        {esm_total:,}",
        f"LoRA r={lora_r} on {'/'.join(config.lora_target_modules)}:  "
        f"{_fmt_share(lora, esm_total)} of ESM-2; closed form {closed_form:,}",
        f"cross-attention:            {cross:,}",
        f"pair head:                  {head:,}",
        f"trainable total:            {_fmt_share(trainable, total)}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description="Print SE-CAI's trainable parameters for an ESM-2 shape (meta device)."
    )
    parser.add_argument("--shape", choices=["650M", "tiny"], default="650M")
    parser.add_argument("--lora_r", type=int, default=8)
    parser.add_argument("--cross_attention_heads", type=int, default=None)
    args = parser.parse_args(argv)
    shape = esm2_650m_config() if args.shape == "650M" else tiny_esm2_config()
    heads = args.cross_attention_heads or shape["num_attention_heads"]
    print(f"SE-CAI on the ESM-2 {args.shape} shape")
    print(parameter_report(shape, lora_r=args.lora_r, cross_attention_heads=heads))


if __name__ == "__main__":
    main()
