"""ESM-2 alphabet, cleaning and the fast tokeniser."""

from __future__ import annotations

import pytest
import torch

from ppi_dist.data.sequences import (
    ESM2_MAX_RESIDUES,
    RESIDUES,
    clean_sequence,
    esm2_tokenizer,
    tokenize,
)
from ppi_dist.errors import InvalidSequenceError


def test_clean_sequence_accepts_lowercase_rare_residues_and_one_stop():
    assert clean_sequence("mkt uoBZx*\n") == "MKTUOBZX"
    assert len(RESIDUES) == 25 and ESM2_MAX_RESIDUES == 1022


@pytest.mark.parametrize(
    ("sequence", "problem"),
    [
        ("", "empty"),
        ("*", "empty"),
        ("MKJ", "'J'"),
        ("MK*T", "'*'"),
        ("MK-T", "'-'"),
        ("M1", "'1'"),
    ],
)
def test_clean_sequence_refuses(sequence, problem):
    with pytest.raises(InvalidSequenceError, match=problem):
        clean_sequence(sequence)


def test_tokenize_matches_the_esm2_tokenizer():
    sequences = ["MKTAYIAK", "UOBZX", "L"]
    input_ids, attention_mask = tokenize(sequences)
    expected = esm2_tokenizer()(sequences, padding=True, return_tensors="pt")
    assert torch.equal(input_ids, expected["input_ids"])
    assert torch.equal(attention_mask, expected["attention_mask"])
