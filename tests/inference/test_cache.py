"""Embedding cache: states equal the encoder's, scoring from the cache equals `forward`."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from ppi_dist.data.batching import collate_pairs
from ppi_dist.data.pairs import sequences_of
from ppi_dist.data.sequences import tokenize
from ppi_dist.errors import CacheTooLargeError
from ppi_dist.inference.cache import DTYPES, EmbeddingCache, covering_cache
from ppi_dist.models.secai import residue_mask
from ppi_dist.models.windows import Windowing
from tests.helpers import random_pairs, random_sequence, tiny_model


def _proteins(n: int = 9, seed: int = 1) -> dict[str, str]:
    rng = random.Random(seed)
    return {f"Q{i}": random_sequence(rng, 5, 60) for i in range(n)}


def test_states_are_the_encoders_residue_states():
    model = tiny_model().eval()
    proteins = _proteins()
    cache = EmbeddingCache.build(model, proteins, dtype="float32", max_tokens=200)
    for protein, sequence in proteins.items():
        input_ids, attention_mask = tokenize([sequence])
        with torch.no_grad():
            expected = model.encode(input_ids, attention_mask)[0, 1 : len(sequence) + 1]
        assert torch.allclose(cache.states_of(protein), expected, atol=1e-5)
    states, mask = cache.get(["Q3", "Q0"])
    assert mask.sum(1).tolist() == [len(proteins["Q3"]), len(proteins["Q0"])]
    assert states.shape[:2] == mask.shape and torch.all(states[~mask] == 0)


def test_pair_logits_from_the_cache_equal_forward():
    model = tiny_model().eval()
    pairs = random_pairs(12, seed=3, proteins=8)
    batch = collate_pairs(pairs)
    expected = model.predict_proba(batch)
    proteins = sequences_of(pairs)
    cache = EmbeddingCache.build(model, proteins, dtype="float32")
    ids = list(proteins)
    states, mask = cache.get(ids)
    index_a = torch.tensor([ids.index(p.protein_a) for p in pairs])
    index_b = torch.tensor([ids.index(p.protein_b) for p in pairs])
    with torch.no_grad():
        got = torch.sigmoid(model.pair_logits((states, mask), (states, mask), index_a, index_b))
    assert torch.allclose(got, expected, atol=1e-5)
    # The layout differs from encode's (<cls> first) but the masks select the same residues.
    assert residue_mask(batch["attention_mask"]).sum().item() == sum(
        len(s) for s in {p.sequence_a for p in pairs} | {p.sequence_b for p in pairs}
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_close_and_takes_half_the_memory(dtype):
    model = tiny_model().eval()
    proteins = _proteins()
    full = EmbeddingCache.build(model, proteins, dtype="float32")
    half = EmbeddingCache.build(model, proteins, dtype=dtype)
    assert half.nbytes * 2 == full.nbytes
    a, _ = full.get(list(proteins))
    b, _ = half.get(list(proteins))
    assert b.dtype == torch.float32
    assert torch.allclose(a, b, rtol=1e-2, atol=1e-2)


def test_long_sequences_are_centre_cropped_with_crop_windowing():
    model = tiny_model().eval()
    sequence = random_sequence(random.Random(5), 50, 50)
    crop = Windowing(20, 0, "crop")
    cache = EmbeddingCache.build(model, {"long": sequence}, dtype="float32", windowing=crop)
    input_ids, attention_mask = tokenize([sequence[15:35]])
    with torch.no_grad():
        expected = model.encode(input_ids, attention_mask)[0, 1:21]
    assert cache.length("long") == 20
    assert torch.allclose(cache.states_of("long"), expected, atol=1e-5)


def test_disk_cache_round_trip_reuse_and_staleness(tmp_path):
    model = tiny_model().eval()
    proteins = _proteins()
    memory = EmbeddingCache.build(model, proteins, dtype="bfloat16")
    built = EmbeddingCache.build(model, proteins, dtype="bfloat16", directory=tmp_path / "c")
    assert isinstance(built.array, np.memmap)
    index = json.loads((tmp_path / "c" / "index.json").read_text())
    assert index["ids"] == list(proteins) and index["dtype"] == "bfloat16"
    reopened = EmbeddingCache.open(tmp_path / "c")
    assert reopened.matches(model) and not reopened.matches(tiny_model(seed=1))
    assert torch.equal(reopened.get(["Q2", "Q5"])[0], memory.get(["Q2", "Q5"])[0])
    # Same proteins and encoder: reused as it is (file untouched).
    before = (tmp_path / "c" / "states.bin").stat().st_mtime_ns
    EmbeddingCache.build(model, proteins, dtype="bfloat16", directory=tmp_path / "c")
    assert (tmp_path / "c" / "states.bin").stat().st_mtime_ns == before
    # Another encoder: rebuilt, not silently reused.
    other = tiny_model(seed=7).eval()
    rebuilt = EmbeddingCache.build(other, proteins, dtype="bfloat16", directory=tmp_path / "c")
    assert rebuilt.matches(other)
    # An in-memory cache saves to the same format.
    memory.save(tmp_path / "m")
    assert torch.equal(EmbeddingCache.open(tmp_path / "m").states_of("Q1"), memory.states_of("Q1"))


def test_memory_limit_refuses_or_goes_to_disk(tmp_path):
    model = tiny_model().eval()
    proteins = _proteins()
    with pytest.raises(CacheTooLargeError, match="directory"):
        EmbeddingCache.build(model, proteins, memory_limit=100)
    on_disk = EmbeddingCache.build(model, proteins, memory_limit=100, directory=tmp_path)
    assert len(on_disk) == len(proteins)


def test_truncated_states_file_is_refused(tmp_path):
    model = tiny_model().eval()
    EmbeddingCache.build(model, _proteins(), directory=tmp_path)
    with open(tmp_path / "states.bin", "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(ValueError, match="bytes, expected"):
        EmbeddingCache.open(tmp_path)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_states_kept_on_a_device_are_gathered_the_same(dtype):
    model = tiny_model().eval()
    proteins = _proteins()
    cache = EmbeddingCache.build(model, proteins, dtype=dtype)
    ids = ["Q3", "Q0", "Q3", "Q1"]
    expected_states, expected_mask = cache.get(ids)
    cache.keep_on("cpu")  # the GPU path, on the CPU: one flat copy, gathered by index
    states, mask = cache.get(ids)
    assert torch.equal(mask, expected_mask)
    assert torch.equal(states, expected_states)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_gather_by_rows_equals_get_by_ids(dtype, tmp_path):
    proteins = _proteins()
    cache = EmbeddingCache.build(tiny_model().eval(), proteins, dtype=dtype, directory=tmp_path)
    ids = ["Q4", "Q1", "Q4", "Q8"]
    states, mask = cache.gather(cache.index.rows(ids), dtype=None)
    assert states.dtype == DTYPES[dtype][0]
    for k, protein in enumerate(ids):
        n = cache.length(protein)
        assert mask[k].sum() == n and torch.equal(states[k, :n], cache.states_of(protein))
        assert torch.all(states[k, n:] == 0)


def test_gather_with_starts_reads_a_window_of_each_cached_protein():
    model = tiny_model().eval()
    proteins = _proteins()
    cache = EmbeddingCache.build(model, proteins, dtype="float32")
    ids = ["Q1", "Q4", "Q7"]
    rows = cache.index.rows(ids)
    window = 6
    starts = torch.tensor([max(cache.length(p) - window, 0) // 2 for p in ids])
    states, mask = cache.gather(rows, starts=starts, window=window)
    assert states.shape[1] == window
    for k, protein in enumerate(ids):
        n = min(window, cache.length(protein))
        whole = cache.states_of(protein)
        assert mask[k].sum() == n
        assert torch.equal(states[k, :n], whole[int(starts[k]) : int(starts[k]) + n])


def _flip_a_byte_of(folder, protein: str) -> None:
    """One byte of `protein`'s states changed on disk, the file's size as it was."""
    cache = EmbeddingCache.open(folder)
    i = cache.row[protein]
    at = int(cache.offsets[i] + cache.lengths[i] // 2) * cache.hidden * cache.array.itemsize
    with open(folder / "states.bin", "r+b") as handle:
        handle.seek(at)
        byte = handle.read(1)[0]
        handle.seek(at)
        handle.write(bytes([byte ^ 0x40]))


def _edit_lengths(folder, first: str, second: str) -> None:
    """index.json's lengths edited +1/-1: the same total, so the file's size still fits."""
    path = folder / "index.json"
    index = json.loads(path.read_text())
    index["lengths"][index["ids"].index(first)] += 1
    index["lengths"][index["ids"].index(second)] -= 1
    path.write_text(json.dumps(index))


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda folder: _flip_a_byte_of(folder, "Q4"), "the states of 'Q4' differ from their"),
        (lambda folder: _edit_lengths(folder, "Q2", "Q6"), "index.json gives 'Q2'"),
    ],
)
def test_a_changed_cache_is_found_said_and_encoded_again(tmp_path, caplog, damage, said):
    """A flipped byte in states.bin, or lengths moved within the same total, is not reused:
    the folder is encoded again, with a line saying why."""
    model, proteins = tiny_model().eval(), _proteins()
    folder = tmp_path / "c"
    built = EmbeddingCache.build(model, proteins, directory=folder)
    expected = {protein: built.states_of(protein) for protein in proteins}
    damage(folder)
    assert covering_cache(folder, model, proteins, built.windowing) is None
    assert said in caplog.text and "encoding again" in caplog.text
    again = EmbeddingCache.build(model, proteins, directory=folder)
    assert all(torch.equal(again.states_of(p), expected[p]) for p in proteins)
    assert EmbeddingCache.open(folder).find_damage(proteins) is None
    assert covering_cache(folder, model, proteins, built.windowing) is not None


def test_a_cache_of_an_older_format_is_encoded_again_saying_so(tmp_path, caplog):
    """Written before states had checksums: nothing to verify it by, so not reused."""
    model, proteins = tiny_model().eval(), _proteins()
    EmbeddingCache.build(model, proteins, directory=tmp_path)
    index = json.loads((tmp_path / "index.json").read_text())
    del index["states_sha1"]
    (tmp_path / "index.json").write_text(json.dumps({**index, "format_version": 2}))
    EmbeddingCache.build(model, proteins, directory=tmp_path)
    assert "unsupported cache format (version 2); encoding again" in caplog.text
    assert "states_sha1" in json.loads((tmp_path / "index.json").read_text())
