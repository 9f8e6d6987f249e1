"""Packing several sequences to an encoder row: the layout, and that ESM-2 sees no difference."""

from __future__ import annotations

import random

import pytest
import torch

from ppi_dist.data.batching import collate_pairs
from ppi_dist.data.sequences import esm2_tokenizer, tokenize
from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.packing import (
    encoder_tokens,
    pack_batch,
    pack_rows,
    packed_inputs_from_layout,
    packed_tokens,
    packing_layout,
    unpack_states,
)
from ppi_dist.models.secai import SECAI
from ppi_dist.models.shapes import tiny_esm2_config
from tests.helpers import SHARED, random_pairs, random_sequence, states_alone, tiny_model


@pytest.mark.parametrize("seed", range(5))
def test_pack_rows_places_every_sequence_once_without_overlap(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(3, 60) for _ in range(rng.randint(1, 40))]
    width = max(lengths)
    row, start, n_rows = pack_rows(lengths, width)
    occupied: dict[int, set[int]] = {}
    for r, s, n in zip(row, start, lengths, strict=True):
        assert 0 <= r < n_rows and s >= 0 and s + n <= width
        columns = set(range(s, s + n))
        assert not occupied.setdefault(r, set()) & columns  # no two sequences share a slot
        occupied[r] |= columns
    assert len(occupied) == n_rows  # no empty row
    assert n_rows >= -(-sum(lengths) // width)
    assert n_rows <= len(lengths)  # never more rows than one per sequence
    assert packed_tokens(lengths) == n_rows * width
    assert pack_rows(lengths, width) == (row, start, n_rows)


def test_pack_rows_fills_gaps_with_shorter_sequences():
    # Decreasing first fit: 10 | 7 + 3 | 6 + 4 -> three rows, none wasted.
    row, start, n_rows = pack_rows([3, 10, 6, 7, 4], width=10)
    assert n_rows == 3
    assert row == [1, 0, 2, 1, 2] and start == [7, 0, 0, 0, 6]
    with pytest.raises(ValueError, match="11-token sequence does not fit rows of 10"):
        pack_rows([11], width=10)


def test_packed_layout_blocks_attention_between_sequences():
    input_ids, attention_mask = tokenize(["ACDEFGHIK", "MK", "WY"])  # 11, 4, 4 tokens
    packed = pack_batch(input_ids, attention_mask, pad_id=esm2_tokenizer().pad_token_id)
    assert packed.input_ids.shape == (2, 11)  # "MK" and "WY" share the second row
    assert encoder_tokens(attention_mask) == packed.input_ids.numel()  # the budget's count
    assert packed.position_ids[1].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 0]
    assert packed.token_mask[1].tolist() == [1] * 8 + [0] * 3
    same = packed.same_sequence[1, 0]
    assert same[0, :4].all() and not same[0, 4:].any()  # MK's tokens see only MK
    assert same[4, 4:8].all() and not same[4, :4].any()
    assert same[8:, 8:].all()  # padding sees padding: no empty softmax row


def _reference_pack(input_ids, attention_mask, pad_id):
    """The layout computed from the mask on the tensors' device (the code before layouts)."""
    lengths = attention_mask.sum(dim=1)
    width = int(lengths.max())
    row_of, start_of, n_rows = pack_rows(lengths.tolist(), width)
    sequence, column = attention_mask.bool().nonzero(as_tuple=True)
    row, packed_column = torch.tensor(row_of)[sequence], torch.tensor(start_of)[sequence] + column
    ids = input_ids.new_full((n_rows, width), pad_id)
    ids[row, packed_column] = input_ids[sequence, column]
    position = torch.zeros_like(ids)
    position[row, packed_column] = column
    owner = torch.full_like(ids, -1)
    owner[row, packed_column] = sequence
    return ids, position, owner, sequence, column, row, packed_column


@pytest.mark.parametrize("seed", range(5))
def test_precomputed_layout_gives_the_reference_packing(seed):
    rng = random.Random(seed)
    sequences = [random_sequence(rng, 1, 80) for _ in range(rng.randint(1, 30))]
    input_ids, attention_mask = tokenize(sequences)
    pad = esm2_tokenizer().pad_token_id
    layout = packing_layout([len(s) + 2 for s in sequences])
    for packed in (
        packed_inputs_from_layout(input_ids, layout, pad),
        pack_batch(input_ids, attention_mask, pad),
    ):
        ids, position, owner, sequence, column, row, packed_column = _reference_pack(
            input_ids, attention_mask, pad
        )
        assert torch.equal(packed.input_ids, ids) and torch.equal(packed.position_ids, position)
        assert torch.equal(packed.token_mask, (owner >= 0).long())
        assert torch.equal(packed.same_sequence[:, 0], owner[:, :, None] == owner[:, None, :])
        for got, want in zip(
            (packed.sequence, packed.column, packed.row, packed.packed_column),
            (sequence, column, row, packed_column),
            strict=True,
        ):
            assert torch.equal(got, want)


def test_layout_path_needs_no_values_on_the_host():
    """Meta tensors have no values: any .tolist()/.item()/nonzero (a host sync on a GPU)
    fails on them. The layout path and unpacking run; the mask path does not."""
    input_ids, attention_mask = tokenize(["ACDEFGHIK", "MK", "WY"])
    layout = {k: v.to("meta") for k, v in packing_layout([11, 4, 4]).items()}
    packed = packed_inputs_from_layout(input_ids.to("meta"), layout, pad_id=1)
    assert packed.input_ids.shape == (2, 11) and packed.same_sequence.shape == (2, 1, 11, 11)
    states = unpack_states(torch.zeros(2, 11, 8, device="meta"), packed, input_ids.shape)
    assert states.shape == (3, 11, 8)
    with pytest.raises((RuntimeError, NotImplementedError)):
        pack_batch(input_ids.to("meta"), attention_mask.to("meta"), pad_id=1)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_encoding_equals_each_sequence_alone(attention):
    model = tiny_model().eval()
    model.encoder.get_base_model().set_attn_implementation(attention)
    assert model._can_pack()
    rng = random.Random(1)
    sequences = [random_sequence(rng, 3, 50) for _ in range(9)]
    input_ids, attention_mask = tokenize(sequences)
    with torch.no_grad():
        states = model.encode(input_ids, attention_mask)
        for row, alone in enumerate(states_alone(model, sequences)):
            n = len(sequences[row]) + 2
            assert torch.allclose(states[row, :n], alone, atol=1e-5)
            assert torch.all(states[row, n:] == 0)


def test_packed_and_padded_steps_give_the_same_loss_and_gradients():
    batch = collate_pairs(random_pairs(8, seed=2))
    results = []
    for pack in (True, False):
        model = tiny_model(seed=4, lora_dropout=0.0)  # dropout masks would differ by layout
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # non-zero B, so LoRA A gets a gradient on this first step
                torch.nn.init.normal_(
                    parameter, std=0.1, generator=torch.Generator().manual_seed(0)
                )
        model._can_pack = lambda pack=pack: pack  # type: ignore[method-assign]
        logits, first_pass = model(**batch, with_first_pass=True)
        both = torch.cat([logits, first_pass])  # the first pass reads the same states
        labels = batch["labels"].repeat(2)
        torch.nn.functional.binary_cross_entropy_with_logits(both, labels).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        results.append((logits.detach(), grads))
    (packed_logits, packed_grads), (padded_logits, padded_grads) = results
    assert torch.allclose(packed_logits, padded_logits, atol=1e-5)
    lora = [n for n in packed_grads if "lora_A" in n]
    assert lora and all(packed_grads[n].abs().sum() > 0 for n in lora)
    for name, grad in packed_grads.items():
        assert torch.allclose(grad, padded_grads[name], atol=1e-5, rtol=1e-4), name


def test_absolute_position_encoders_run_padded():
    config = {**tiny_esm2_config(), "position_embedding_type": "absolute"}
    model = SECAI(SECAIConfig(encoder=None, encoder_config=config, lora_r=4, head_hidden=8))
    model.eval()
    assert not model._can_pack()  # a packed row would shift the absolute positions
    sequences = ["ACDEFGHIKLMN", "MK", "WYWYW"]
    with torch.no_grad():
        states = model.encode(*tokenize(sequences))
        for row, alone in enumerate(states_alone(model, sequences)):
            assert torch.allclose(states[row, : len(sequences[row]) + 2], alone, atol=1e-5)


def test_real_8m_encoder_packed_equals_alone():
    encoder = SHARED / "models" / "esm2_t6_8M"
    if not encoder.exists():
        pytest.skip(f"the 8M ESM-2 is not at {encoder}")
    model = SECAI(SECAIConfig(encoder=str(encoder))).eval()
    rng = random.Random(5)
    sequences = [random_sequence(rng, 5, 150) for _ in range(7)]
    with torch.no_grad():
        states = model.encode(*tokenize(sequences))
        for row, alone in enumerate(states_alone(model, sequences)):
            n = len(sequences[row]) + 2
            assert (states[row, :n] - alone).abs().max() <= 1e-4 * alone.abs().max()
