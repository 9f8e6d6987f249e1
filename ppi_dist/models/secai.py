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
5. `FirstPass` (beside 2-4, optional): a symmetric score of each protein's own pooled
   states, trained on the same pairs, that a proteome screen ranks every pair by before
   cross-attention scores the best (`models.first_pass`).

Its settings are `models.config.SECAIConfig`; the encoder is built by `models.encoder`;
saving and loading are `models.saving`.

Residues only: `<cls>`, `<eos>` and padding are masked out of cross-attention keys and of
pooling. They carry no residue of the partner protein, and counting them would let the
sequence length leak into the pooled vector.

A batch reaches the model two ways, both through `model(**batch)` (what DDP and DeepSpeed
call): tokens (encoded by `residue_states`; over the trunk cache with `trunk_states` beside
them) or the per-residue states of an embedding cache (frozen-encoder training).

The shape letters, here and in every docstring of the package:

    P        pairs of a batch
    U        distinct proteins (sequences) of a batch or a cache gather, one row each
    L        residues (tokens) of the longest of them, the rows padded to it; Lq and Lk
             the query and key proteins' in cross-attention
    d        the encoder's width; heads and d_k = d / heads in cross-attention, H and D
             (heads, head width) inside the encoder's attention
    R, W     packed encoder rows and their width in tokens (`models.packing`)
    T        tokens of a flat stream: every row's real tokens one after another (the
             varlen kernels, the trunk cache)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ppi_dist.models import attention
from ppi_dist.models.calibration import Calibration
from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.cross_attention import packed_cross_pooling, pairs_kernel
from ppi_dist.models.encoder import base_encoder, build_encoder, encoder_layers, running_layers
from ppi_dist.models.first_pass import FirstPass
from ppi_dist.models.packing import (
    LAYOUT_FIELDS,
    PackedBatch,
    pack_batch,
    pack_states,
    packed_inputs_from_layout,
    unpack_states,
)
from ppi_dist.models.windows import stitch_states

# The modules that train beside the encoder's LoRA: saved in secai_head.safetensors.
TRAINED_MODULES = ("cross_attention", "head", "first_pass")

# Attention weights one SDPA call may form (pairs x heads x queries x keys; fp32: 512 MiB).
# A longer query side runs in chunks of query rows: each row's softmax is its own, so the
# result is the same, and a 34,350-residue protein fits in memory.
ATTENTION_CHUNK = 2**27


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

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(P, L, d) -> (P, heads, L, d_k), a view."""
        batch, length, dim = x.shape
        return x.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def project(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(U, L, d) -> Q, K, V, each (U, L, d): heads are split after the pairs gather them,
        so a gather's backward adds contiguous rows (on the heads-first view it is a
        scatter over strided memory)."""
        return self.w_q(states), self.w_k(states), self.w_v(states)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor
    ) -> torch.Tensor:
        """Query residues read key residues: (P, Lq, d), (P, Lk, d) x2, (P, Lk) bool -> (P, Lq, d)
        (the heads split and merged here)."""
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        # Boolean mask, True = attend; broadcast over heads and query positions.
        mask = key_mask[:, None, None, :]
        pairs, heads, length, _ = q.shape
        rows = max(ATTENTION_CHUNK // (pairs * heads * k.shape[2]), 1)
        if rows >= length:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            parts = [
                F.scaled_dot_product_attention(q[:, :, i : i + rows], k, v, attn_mask=mask)
                for i in range(0, length, rows)
            ]
            attended = torch.cat(parts, dim=2)
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


class TokenInputs(NamedTuple):
    """A batch's distinct sequences as the encoder reads them (`data.batching.collate_pairs`).

    `input_ids`, `attention_mask`: one row per sequence, or per window of a long one.
    `layout`: the packed layout's `pack_*` tensors, computed on the CPU (None: computed
    here). `stitch`: `(stitch_index, stitch_mask)` when proteins were read as windows.
    `trunk_states`: the trunk cache's states of every real token (see `SECAI.encode`).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    layout: dict[str, torch.Tensor] | None = None
    stitch: tuple[torch.Tensor, torch.Tensor] | None = None
    trunk_states: torch.Tensor | None = None


class PairLogits(NamedTuple):
    """A batch's logits from both scorers, (P,) each: SE-CAI's and the first pass's."""

    interaction: torch.Tensor
    first_pass: torch.Tensor


def _token_inputs(batch: dict) -> TokenInputs:
    """A token batch's fields (`data.batching.collate_pairs`) as `TokenInputs`."""
    has_layout = all(name in batch for name in LAYOUT_FIELDS)
    stitch = (batch["stitch_index"], batch["stitch_mask"]) if "stitch_index" in batch else None
    return TokenInputs(
        batch["input_ids"],
        batch["attention_mask"],
        {name: batch[name] for name in LAYOUT_FIELDS} if has_layout else None,
        stitch,
        batch.get("trunk_states"),
    )


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
        # Drawn from a fork of the random state: the rest of the run (dropout, crops) draws
        # the same numbers with or without a first pass, so SE-CAI trains the same.
        width = config.first_pass_width
        self.first_pass = None
        if width is not None:
            with torch.random.fork_rng(devices=[]):
                self.first_pass = FirstPass(2 * dim, width)
        # Raw score -> probability, fitted on validation when training ends; saved and
        # loaded with the model (models/calibration.py). None until then.
        self.calibration: Calibration | None = None
        # While training with LoRA on the top layers: the trunk cache (`inference.trunk`),
        # which scoring's embedding cache reads its windows' lower-layer states from.
        self.trunk = None

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        layout: dict[str, torch.Tensor] | None = None,
        trunk_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last-layer per-residue states of the distinct sequences: (U, L, d).

        One encoder call. The sequences are packed several to a row (`packing`), each
        attending only to itself, so the encoder runs on little padding; the states come
        back one sequence per row, zero at padding. Encoders that cannot take a packed
        layout (absolute positions, kernels without a 4D mask) run the padded rows as given.
        `layout` (the batch's `pack_*` tensors, computed by the data loader on the CPU) spares
        the device a host synchronisation; without it the layout is computed here.

        `trunk_states`: the states entering layer `trunk_depth` of every real token, flat
        (tokens, d) in the batch's row-major order (the trunk cache, `inference.trunk`): the
        encoder then runs its top layers only, from there.
        """
        if not self._can_pack():
            if trunk_states is not None:
                raise ValueError("the trunk cache needs a rotary encoder it can pack")
            output = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
            return output.last_hidden_state
        packed = self._packed(input_ids, attention_mask, layout)
        layers = len(encoder_layers(self.encoder))
        if trunk_states is None:
            hidden, start = self._embed(packed), 0
        else:
            # Cached in their storage precision; the layers take their own.
            dtype = base_encoder(self.encoder).embeddings.word_embeddings.weight.dtype
            hidden, start = pack_states(trunk_states.to(dtype), packed), self.trunk_depth
        packed_states = self._run_layers(hidden, packed, range(start, layers))
        return unpack_states(packed_states, packed, attention_mask.shape)

    def encode_trunk(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The states entering layer `trunk_depth` (the first with LoRA) of every token:
        (U, L, d), zero at padding. What the trunk cache stores; `encode` goes on from it."""
        if not self._can_pack():
            raise ValueError("the trunk cache needs a rotary encoder it can pack")
        packed = self._packed(input_ids, attention_mask, None)
        packed_states = self._run_layers(self._embed(packed), packed, range(self.trunk_depth))
        return unpack_states(packed_states, packed, attention_mask.shape)

    @property
    def trunk_depth(self) -> int:
        """Encoder layers below every trainable weight (`SECAIConfig.trunk_depth`)."""
        return self.config.trunk_depth(len(encoder_layers(self.encoder)))

    def _packed(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        layout: dict[str, torch.Tensor] | None,
    ) -> PackedBatch:
        pad_id = base_encoder(self.encoder).config.pad_token_id
        if layout is not None:
            return packed_inputs_from_layout(input_ids, layout, pad_id)
        return pack_batch(input_ids, attention_mask, pad_id)

    def _embed(self, packed: PackedBatch) -> torch.Tensor:
        # Embedding here, with the 2D token mask: ESM-2's embedding layer reads the mask as
        # (rows, tokens), while the layers below get the packed layout.
        base = base_encoder(self.encoder)
        return base.embeddings(input_ids=packed.input_ids, attention_mask=packed.token_mask)

    def _run_layers(self, hidden: torch.Tensor, packed: PackedBatch, layers: range) -> torch.Tensor:
        """The encoder's `layers` on packed rows of hidden states (R, W, d) -> (R, W, d); the
        final layer norm when they end at the last layer."""
        base = base_encoder(self.encoder)
        attend, extra = attention.packed_attention_inputs(
            packed, hidden, self.config.encoder_attention, base.config._attn_implementation
        )
        last = len(encoder_layers(self.encoder))
        with running_layers(self.encoder, layers.start, layers.stop, layers.stop == last):
            return self.encoder(
                inputs_embeds=hidden,
                attention_mask=attend,
                position_ids=packed.position_ids,
                **extra,
            ).last_hidden_state

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
        one_side = side_b is side_a  # training batches: both sides are the same proteins
        return self.pair_path(states_a, mask_a, states_b, mask_b, index_a, index_b, one_side)

    def pair_path(
        self,
        states_a: torch.Tensor,
        mask_a: torch.Tensor,
        states_b: torch.Tensor,
        mask_b: torch.Tensor,
        index_a: torch.Tensor,
        index_b: torch.Tensor,
        one_side: bool,
    ) -> torch.Tensor:
        """`pair_logits` on tensors alone (what `compile_model` compiles as one region);
        `one_side`: side B is side A, projected once."""
        # Cached states may be stored in another precision than the weights (fp16 cache,
        # fp32 or bf16 weights): compute in the weights' precision.
        dtype = self.head.fc1.weight.dtype
        states_a = states_a.to(dtype)
        states_b = states_a if one_side else states_b.to(dtype)

        # index_select, not x[index]: its backward is one index_add, where x[index]'s is an
        # accumulating index_put (serial on the CPU, sorted on CUDA).
        def on_a(x: torch.Tensor) -> torch.Tensor:
            return x.index_select(0, index_a)

        def on_b(x: torch.Tensor) -> torch.Tensor:
            return x.index_select(0, index_b)

        pair_mask_a, pair_mask_b = on_a(mask_a), on_b(mask_b)
        if self.cross_attention is not None:
            q_a, k_a, v_a = self.cross_attention.project(states_a)
            q_b, k_b, v_b = (q_a, k_a, v_a) if one_side else self.cross_attention.project(states_b)
            if pairs_kernel(self.config.cross_attention_kernel, q_a) == "varlen":
                sides = (q_a, k_a, v_a, mask_a), (q_b, k_b, v_b, mask_b)
                heads = self.cross_attention.heads
                pooled_a, pooled_b = packed_cross_pooling(*sides, index_a, index_b, heads)
            else:
                attend = self.cross_attention.attend
                # A's residues read B, and B's residues read A.
                a_to_b = attend(on_a(q_a), on_b(k_b), on_b(v_b), pair_mask_b)
                b_to_a = attend(on_b(q_b), on_a(k_a), on_a(v_a), pair_mask_a)
                pooled_a = masked_max_mean(a_to_b, pair_mask_a)
                pooled_b = masked_max_mean(b_to_a, pair_mask_b)
        else:  # pooled baseline: each protein's own residues, pooled the same way
            pooled_a = on_a(masked_max_mean(states_a, mask_a))
            pooled_b = on_b(masked_max_mean(states_b, mask_b))
        if self.config.symmetric == "none":
            return self.head(pooled_a, pooled_b)
        # Both orders in one head call (BatchNorm sees the same rows either way), then the
        # mean of the two logits: addition commutes, so score(A,B) == score(B,A) exactly.
        both = self.head(torch.cat([pooled_a, pooled_b]), torch.cat([pooled_b, pooled_a]))
        forward, backward = both.chunk(2)
        return (forward + backward) / 2

    def forward(
        self,
        index_a: torch.Tensor,
        index_b: torch.Tensor,
        with_first_pass: bool = False,
        **batch: object,
    ) -> torch.Tensor | PairLogits:
        """`model(**batch)` -> one logit per pair (P,), from a batch of cached `states` and
        their `states_mask` (frozen-encoder training, `training.frozen`; the encoder does not
        run) or of tokens (`data.batching.collate_pairs`, with `trunk_states` over the trunk
        cache; `residue_states`). Identifiers, labels and weights are not read.
        `with_first_pass`: `PairLogits`, the first pass's logits of the same pairs beside."""
        if "states" in batch:
            side = (batch["states"], batch["states_mask"])
        else:
            side = self.residue_states(_token_inputs(batch))
        logits = self.pair_logits(side, side, index_a, index_b)
        if not with_first_pass:
            return logits
        # The first pass learns from the states, never shapes them: its loss would otherwise
        # pull LoRA towards what pooled vectors can say, away from what cross-attention needs.
        states = (side[0].detach(), side[1])
        return PairLogits(logits, self.first_pass_logits(states, states, index_a, index_b))

    def first_pass_logits(
        self,
        side_a: tuple[torch.Tensor, torch.Tensor],
        side_b: tuple[torch.Tensor, torch.Tensor],
        index_a: torch.Tensor,
        index_b: torch.Tensor,
    ) -> torch.Tensor:
        """The first pass's logits of the pairs `pair_logits` would score: (P,)."""
        vectors_a = self.protein_vectors(*side_a)
        vectors_b = vectors_a if side_b is side_a else self.protein_vectors(*side_b)
        return self.first_pass.pair_logits(
            vectors_a.index_select(0, index_a), vectors_b.index_select(0, index_b)
        )

    def protein_vectors(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Each protein's first-pass vector: (U, L, d) states, (U, L) mask -> (U, k + 1)."""
        if self.first_pass is None:
            raise ValueError("this model has no first pass (first_pass_width is None)")
        dtype = self.first_pass.fc1.weight.dtype
        return self.first_pass.vectors(masked_max_mean(states.to(dtype), mask))

    def residue_states(self, tokens: TokenInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The distinct proteins' last-layer states and residue mask, (U, L, d) and (U, L).

        A batch whose long proteins were read as windows (`models.windows`) has one encoder
        row per window, and `tokens.stitch` puts each protein's kept residues back together.
        """
        states = self.encode(
            tokens.input_ids, tokens.attention_mask, tokens.layout, tokens.trunk_states
        )
        if tokens.stitch is None:
            return states, residue_mask(tokens.attention_mask)
        stitch_index, stitch_mask = tokens.stitch
        return stitch_states(states, stitch_index, stitch_mask), stitch_mask

    @torch.no_grad()
    def predict_proba(self, batch: dict) -> torch.Tensor:
        """P(interact) per pair, in eval mode (dropout off, BatchNorm running statistics)."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(**batch).float())
        finally:
            self.train(was_training)

    # ---- what trains (saved by `models.saving`) ------------------------------------

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Cross-attention, head and first-pass weights (+ BatchNorm buffers): what is not
        the encoder."""
        return {
            f"{name}.{key}": value
            for name in TRAINED_MODULES
            if getattr(self, name) is not None
            for key, value in getattr(self, name).state_dict().items()
        }
