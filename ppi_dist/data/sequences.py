"""Protein sequences: the ESM-2 alphabet, cleaning, tokenisation and random sequences of the
standard residues (windows and crops of long proteins: `models.windows`).

ESM-2 reads `<cls> residues <eos>`; its vocabulary already holds the rare residues
U (selenocysteine), O (pyrrolysine), B, Z and X, so they are kept as they are.
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
from transformers import EsmTokenizer

from ppi_dist.errors import InvalidSequenceError

# The 25 residue letters of the ESM-2 vocabulary (20 standard + X B U Z O).
RESIDUES = frozenset("LAGVSERTIDPKQNFYMHWCXBUZO")
# The 20 standard residues, alphabetical.
STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
# ESM-2 position embeddings cover 1,026 tokens; minus <cls> and <eos> and the model's
# own margin this is the 1,022 residues the ESM-2 papers use.
ESM2_MAX_RESIDUES = 1022


def clean_sequence(sequence: str) -> str:
    """Upper-case, strip whitespace and one trailing stop `*`; raise on anything else odd."""
    cleaned = "".join(sequence.split()).upper()
    if cleaned.endswith("*"):
        cleaned = cleaned[:-1]
    if not cleaned:
        raise InvalidSequenceError("empty sequence")
    bad = sorted(set(cleaned) - RESIDUES)
    if bad:
        position = min(cleaned.index(letter) for letter in bad) + 1
        raise InvalidSequenceError(
            f"invalid residue {', '.join(repr(b) for b in bad)} (first at position {position}); "
            f"ESM-2 reads only {''.join(sorted(RESIDUES))}"
        )
    return cleaned


def random_residues(rng: random.Random, length: int) -> str:
    """`length` standard residues drawn uniformly, one `rng.choice` each (tests, benchmarks)."""
    return "".join(rng.choice(STANDARD_RESIDUES) for _ in range(length))


def sequence_digest(sequence: str) -> str:
    """A short content key of a sequence (or of one window of it): caches key states by it."""
    return hashlib.sha1(sequence.encode("ascii")).hexdigest()[:16]


@lru_cache(maxsize=1)
def esm2_tokenizer() -> EsmTokenizer:
    """The ESM-2 tokenizer built from the 33-token vocabulary shipped with the package.

    Token ids are the ones of every released ESM-2 checkpoint, so this needs no Hub access.
    """
    vocab = resources.files("ppi_dist.data").joinpath("esm2_vocab.txt")
    with resources.as_file(vocab) as path:
        return EsmTokenizer(vocab_file=str(path))


@lru_cache(maxsize=1)
def _residue_lookup() -> np.ndarray:
    """Byte -> token id table for the residue letters, taken from the tokenizer's vocabulary."""
    vocab = esm2_tokenizer().get_vocab()
    table = np.full(256, vocab["<unk>"], dtype=np.int64)
    for letter in RESIDUES:
        table[ord(letter)] = vocab[letter]
    return table


def tokenize(sequences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask for cleaned sequences, right-padded to the longest.

    Returns `(input_ids, attention_mask)`, both `(len(sequences), longest + 2)` int64,
    exactly what `EsmTokenizer(sequences, padding=True)` gives. The tokenizer's Python loop
    is too slow to feed a GPU, so ids come from a byte lookup table built from its
    vocabulary.
    """
    tokenizer = esm2_tokenizer()
    width = max(len(s) for s in sequences) + 2
    input_ids = np.full((len(sequences), width), tokenizer.pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), width), dtype=np.int64)
    lookup = _residue_lookup()
    for row, sequence in enumerate(sequences):
        n = len(sequence)
        input_ids[row, 0] = tokenizer.cls_token_id
        input_ids[row, 1 : n + 1] = lookup[np.frombuffer(sequence.encode("ascii"), np.uint8)]
        input_ids[row, n + 1] = tokenizer.eos_token_id
        attention_mask[row, : n + 2] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
