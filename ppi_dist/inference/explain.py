"""Which residues of A and B drive a pair's score: hotspots and attention maps, from the model.

    explanation = explain_pair(model, "P1", seq_a, "P2", seq_b)
    explanation.probability          # == predict's for the pair (the same scoring path)
    explanation.raw_score            # the sigmoid before the model's calibration
    explanation.hotspots_a["attention_received"]   # (L_A,) per residue of A

The probability comes from `inference.scoring` (each protein through the cache, the pair
through `SECAI.pair_logits`), so it is `predict`'s. The maps then rerun the pair's
cross-attention from the same cached states:

- `attention_received` (the default): the head-averaged attention a residue of A receives
  from B's residues (B->A weights summed over B's residues, divided by L_B; B likewise):
  where the partner looks. The attention weights sum to 1 per query, so a protein's
  scores sum to 1.
- `maxpool_share`: the share of the d channels of Attn(A->B) whose max-pool a residue of A
  wins (B likewise). Half of v_A IS that max-pool, so it is literally what the head reads
  of A, and it needs no gradient or baseline.

Why that default: on the synthetic task, whose planted motifs are the truth
(`benchmarks/explain_motifs.py`, BENCHMARKS.md), the top-4 residues by attention received
fall in the motif about 17 times as often as chance, and an untrained model's do not;
max-pool shares barely beat an untrained model's (the winners of single channels scatter
over residues with extreme states, wherever the partner looks).

Attention maps are head-averaged softmax(Q K^T / sqrt(d_k)), (L_A x L_B) for A->B and
(L_B x L_A) for B->A, computed in chunks of query rows and averaged into at most
`max_bins` bins per axis, so a protein of any length is explained in bounded memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ppi_dist.data.pairs import Pair
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.scoring import encode_proteins, model_device, score_cached
from ppi_dist.models.calibration import calibrated
from ppi_dist.models.secai import ATTENTION_CHUNK, SECAI
from ppi_dist.models.windows import Windowing

HOTSPOT_SCORES = ("attention_received", "maxpool_share")
DEFAULT_SCORE = "attention_received"


@dataclass
class PairExplanation:
    """One pair, explained: its probability, per-residue hotspot scores and attention maps."""

    protein_a: str
    protein_b: str
    sequence_a: str
    """The residues that reached cross-attention (all of them with windows)."""
    sequence_b: str
    probability: float
    """P(interact): calibrated when the model ships a calibration, else `raw_score`."""
    raw_score: float
    """The model's sigmoid, the scale its decision threshold was chosen on."""
    hotspots_a: dict[str, np.ndarray]
    """Score name (`HOTSPOT_SCORES`) -> (L_A,) float64."""
    hotspots_b: dict[str, np.ndarray]
    attention_ab: np.ndarray
    """Head-averaged A->B weights, binned: (bins over A, bins over B)."""
    attention_ba: np.ndarray
    """Head-averaged B->A weights, binned: (bins over B, bins over A)."""

    def top_residues(self, side: str, k: int, score: str = DEFAULT_SCORE) -> list[tuple]:
        """The k residues of side "a" or "b" with the highest score: (position, residue, score),
        1-based positions, highest first (ties: earlier position)."""
        values = (self.hotspots_a if side == "a" else self.hotspots_b)[score]
        sequence = self.sequence_a if side == "a" else self.sequence_b
        order = np.argsort(-values, kind="stable")[:k]
        return [(int(i) + 1, sequence[i], float(values[i])) for i in order]

    def write_tsv(self, path: str | Path) -> Path:
        """protein, position (1-based), residue and every hotspot score, A's rows then B's."""
        lines = ["side\tprotein\tposition\tresidue\t" + "\t".join(HOTSPOT_SCORES)]
        for side, protein, sequence, scores in (
            ("a", self.protein_a, self.sequence_a, self.hotspots_a),
            ("b", self.protein_b, self.sequence_b, self.hotspots_b),
        ):
            for i, residue in enumerate(sequence):
                values = "\t".join(f"{scores[name][i]:.6g}" for name in HOTSPOT_SCORES)
                lines.append(f"{side}\t{protein}\t{i + 1}\t{residue}\t{values}")
        Path(path).write_text("\n".join(lines) + "\n")
        return Path(path)


def explain_pair(
    model: SECAI,
    protein_a: str,
    sequence_a: str,
    protein_b: str,
    sequence_b: str,
    *,
    windowing: Windowing | None = None,
    cache: EmbeddingCache | None = None,
    max_bins: int = 400,
) -> PairExplanation:
    """Explain one pair (see the module docstring). `cache`: one holding both proteins
    (e.g. for many pairs of one set); without it they are encoded here."""
    if model.cross_attention is None:
        raise ValueError("the pooled baseline has no cross-attention to explain")
    if cache is None:
        sequences = {protein_a: sequence_a, protein_b: sequence_b}
        cache = encode_proteins(model, sequences, windowing=windowing)
    raw = score_cached(model, cache, [Pair(protein_a, protein_b, sequence_a, sequence_b, None)])
    probability = calibrated(model, raw)
    probability = raw if probability is None else probability
    device, dtype = model_device(model), model.head.fc1.weight.dtype
    states_a, _ = cache.get([protein_a], dtype=dtype, device=device)  # (1, L_A, d), no padding
    states_b, _ = cache.get([protein_b], dtype=dtype, device=device)
    kept_a = _kept_residues(sequence_a, cache.length(protein_a), cache.windowing)
    kept_b = _kept_residues(sequence_b, cache.length(protein_b), cache.windowing)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            wins_a, received_b, map_ab = _one_direction(model, states_a, states_b, max_bins)
            wins_b, received_a, map_ba = _one_direction(model, states_b, states_a, max_bins)
    finally:
        model.train(was_training)
    return PairExplanation(
        protein_a=protein_a,
        protein_b=protein_b,
        sequence_a=kept_a,
        sequence_b=kept_b,
        probability=float(probability[0]),
        raw_score=float(raw[0]),
        hotspots_a={"attention_received": received_a, "maxpool_share": wins_a},
        hotspots_b={"attention_received": received_b, "maxpool_share": wins_b},
        attention_ab=map_ab,
        attention_ba=map_ba,
    )


def _kept_residues(sequence: str, stored: int, windowing: Windowing) -> str:
    """The residues the cache holds for `sequence`: all, or the centred crop."""
    start = windowing.windows(len(sequence))[0].keep_start
    return sequence[start : start + stored]


def _one_direction(
    model: SECAI, query_states: torch.Tensor, key_states: torch.Tensor, max_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query residues reading key residues, for one pair: (1, Lq, d), (1, Lk, d) ->
    (max-pool shares (Lq,), attention received per key residue (Lk,), binned map)."""
    attention = model.cross_attention
    q, _, _ = attention.project(query_states)  # (1, Lq, d)
    _, k, v = attention.project(key_states)
    key_mask = torch.ones(1, k.shape[1], dtype=torch.bool, device=k.device)
    attended = attention.attend(q, k, v, key_mask)[0]  # (Lq, d): what the head pools
    q, k = attention.split_heads(q), attention.split_heads(k)  # (1, h, L, d_k)
    winners = attended.argmax(dim=0)  # per channel, the residue that wins its max-pool
    shares = torch.bincount(winners, minlength=attended.shape[0]).double() / attended.shape[1]
    heads, queries, keys = q.shape[1], q.shape[2], k.shape[2]
    bins_q, bins_k = min(queries, max_bins), min(keys, max_bins)
    row_bin = torch.arange(queries, device=q.device) * bins_q // queries
    col_bin = torch.arange(keys, device=q.device) * bins_k // keys
    binned = torch.zeros(bins_q, bins_k, dtype=torch.float64, device=q.device)
    received = torch.zeros(keys, dtype=torch.float64, device=q.device)
    rows = max(ATTENTION_CHUNK // (heads * keys), 1)
    scale = 1.0 / math.sqrt(q.shape[-1])
    for start in range(0, queries, rows):
        chunk = q[0, :, start : start + rows]  # (h, c, d_k)
        weights = torch.softmax((chunk @ k[0].transpose(-1, -2)) * scale, dim=-1).mean(0)
        weights = weights.double()  # (c, Lk), head-averaged
        received += weights.sum(0)
        by_column = torch.zeros(weights.shape[0], bins_k, dtype=torch.float64, device=q.device)
        by_column.index_add_(1, col_bin, weights)
        binned.index_add_(0, row_bin[start : start + rows], by_column)
    row_counts = torch.bincount(row_bin, minlength=bins_q).double()
    col_counts = torch.bincount(col_bin, minlength=bins_k).double()
    binned /= row_counts[:, None] * col_counts[None, :]
    return shares.cpu().numpy(), (received / queries).cpu().numpy(), binned.cpu().numpy()
