"""The trunk cache: rows equal the trunk's states, reused under the same settings, extended by
the windows it lacks, refused (naming the setting) under others, a stopped build resumed, and
scoring through it equal to scoring through the whole encoder."""

from __future__ import annotations

import json
import random

import pytest
import torch

from ppi_dist.data.sequences import tokenize
from ppi_dist.errors import ConfigError
from ppi_dist.inference import trunk as trunk_module
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.trunk import BUILD_NAME, STATES_NAME, TrunkCache, trunk_windows
from ppi_dist.models.shapes import tiny_esm2_config
from ppi_dist.models.windows import Windowing
from tests.helpers import random_sequence, tiny_model

WINDOWS = Windowing(max_residues=24, overlap=6, mode="all")


def _model(seed: int = 0, lora_layers: int = 2):
    config = tiny_esm2_config(layers=4)
    model = tiny_model(seed, encoder_config=config, lora_layers=lora_layers)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)
    return model.eval()


def _proteins(n: int = 10, seed: int = 1) -> dict[str, str]:
    rng = random.Random(seed)
    return {f"Q{i}": random_sequence(rng, 5, 70) for i in range(n)}


def test_rows_hold_each_windows_trunk_states(tmp_path):
    model, proteins = _model(), _proteins()
    trunk = TrunkCache.build(model, proteins, tmp_path / "trunk", WINDOWS, max_tokens=120)
    windows = list(trunk_windows(proteins, [WINDOWS]).values())
    assert len(trunk) == len(windows) > len(proteins)  # long proteins: several windows
    assert trunk.covers(windows) and not trunk.covers(["MKV"])
    picked = [windows[3], windows[0], windows[-1]]
    gathered = trunk.window_states(picked, "cpu")
    input_ids, attention_mask = tokenize(picked)
    with torch.no_grad():
        expected = model.encode_trunk(input_ids, attention_mask)[attention_mask.bool()]
    torch.testing.assert_close(gathered, expected, atol=1e-6, rtol=1e-5)
    reopened = TrunkCache.open(tmp_path / "trunk")
    assert torch.equal(reopened.window_states(picked, "cpu"), gathered)


def test_scoring_through_the_trunk_equals_the_whole_encoder(tmp_path):
    model, proteins = _model(), _proteins()
    whole = EmbeddingCache.build(model, proteins, dtype="float32", windowing=WINDOWS)
    model.trunk = TrunkCache.build(model, proteins, tmp_path / "trunk", WINDOWS)
    calls = []
    real_encode = model.encode

    def encode(*args, **kwargs):
        calls.append("trunk_states" in kwargs)
        return real_encode(*args, **kwargs)

    model.encode = encode
    through = EmbeddingCache.build(model, proteins, dtype="float32", windowing=WINDOWS)
    assert calls and all(calls)  # every batch started from the trunk
    for protein in proteins:
        torch.testing.assert_close(
            through.states_of(protein), whole.states_of(protein), atol=1e-6, rtol=1e-5
        )


def test_a_complete_cache_is_reused(tmp_path, monkeypatch):
    model, proteins = _model(), _proteins()
    TrunkCache.build(model, proteins, tmp_path / "trunk", WINDOWS)
    monkeypatch.setattr(model, "encode_trunk", lambda *a: pytest.fail("encoded again"))
    subset = dict(list(proteins.items())[:4])
    assert len(TrunkCache.build(model, subset, tmp_path / "trunk", WINDOWS)) > 0


def test_a_cache_lacking_windows_is_extended_by_those_only(tmp_path, monkeypatch):
    model, proteins = _model(), _proteins(12)
    names = list(proteins)
    first = {name: proteins[name] for name in names[:7]}
    later = {name: proteins[name] for name in names[4:]}  # 3 proteins shared, 5 new
    built = TrunkCache.build(model, first, tmp_path / "trunk", WINDOWS, max_tokens=120)
    kept = {
        key: built.window_states([residues], "cpu")
        for key, residues in trunk_windows(first, [WINDOWS]).items()
    }
    new_windows = [r for k, r in trunk_windows(later, [WINDOWS]).items() if k not in kept]
    assert new_windows
    encoded, real_encode = [], model.encode_trunk

    def encode_trunk(input_ids, attention_mask):
        encoded.append(int(input_ids.shape[0]))
        return real_encode(input_ids, attention_mask)

    monkeypatch.setattr(model, "encode_trunk", encode_trunk)
    extended = TrunkCache.build(model, later, tmp_path / "trunk", WINDOWS, max_tokens=120)
    assert sum(encoded) == len(new_windows)  # the windows it lacked, and no others
    assert len(extended) == len(kept) + len(new_windows)
    reopened = TrunkCache.open(tmp_path / "trunk")
    assert reopened.find_damage() is None
    for key, states in kept.items():  # the earlier rows, unchanged
        assert torch.equal(
            reopened.token_states(torch.tensor([reopened.index.row[key]]), "cpu"), states
        )
    fresh = TrunkCache.build(model, later, tmp_path / "fresh", WINDOWS, max_tokens=120)
    windows = list(trunk_windows(later, [WINDOWS]).values())
    torch.testing.assert_close(
        reopened.window_states(windows, "cpu"),
        fresh.window_states(windows, "cpu"),
        atol=1e-6,
        rtol=1e-5,
    )


def test_a_changed_cache_is_found_said_and_encoded_again(tmp_path, caplog):
    model, proteins = _model(), _proteins()
    built = TrunkCache.build(model, proteins, tmp_path / "trunk", WINDOWS)
    expected = torch.from_numpy(built.array[:].copy())
    with open(tmp_path / "trunk" / STATES_NAME, "r+b") as handle:  # one byte flipped
        handle.seek(1234)
        byte = handle.read(1)
        handle.seek(1234)
        handle.write(bytes([byte[0] ^ 0x40]))
    rebuilt = TrunkCache.build(model, proteins, tmp_path / "trunk", WINDOWS)
    assert "differ from their checksum (changed on disk?); encoding again" in caplog.text
    torch.testing.assert_close(torch.from_numpy(rebuilt.array[:]), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("other", "named"),
    [
        ({"model": _model(seed=1)}, "encoder"),
        ({"model": _model(lora_layers=1)}, "depth"),
        ({"windowing": Windowing(32, 6, "all")}, "max_residues"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_a_cache_of_other_settings_is_refused_by_name(tmp_path, other, named):
    model, proteins = _model(), _proteins()
    TrunkCache.build(model, proteins, tmp_path / "trunk", WINDOWS)
    settings = {"model": model, "windowing": WINDOWS, "dtype": "float32", **other}
    with pytest.raises(ConfigError, match=rf"trunk cache of other settings \({named}: "):
        TrunkCache.build(
            settings["model"],
            proteins,
            tmp_path / "trunk",
            settings["windowing"],
            dtype=settings["dtype"],
        )


def test_a_stopped_build_resumes_where_it_was(tmp_path, monkeypatch):
    model, proteins = _model(), _proteins(14)
    fresh = TrunkCache.build(model, proteins, tmp_path / "fresh", WINDOWS, max_tokens=100)
    monkeypatch.setattr(trunk_module, "FLUSH_EVERY_S", 0.0)  # record progress every batch
    real_fill, filled = TrunkCache._fill, []

    def stop_after_three(self, model, residues, first_row):
        if len(filled) == 3:
            raise KeyboardInterrupt  # Ctrl-C during the build
        filled.append(len(residues))
        real_fill(self, model, residues, first_row)

    monkeypatch.setattr(TrunkCache, "_fill", stop_after_three)
    with pytest.raises(KeyboardInterrupt):
        TrunkCache.build(model, proteins, tmp_path / "stopped", WINDOWS, max_tokens=100)
    done = json.loads((tmp_path / "stopped" / BUILD_NAME).read_text())["done"]
    assert done == sum(filled) > 0

    encoded = []
    monkeypatch.setattr(
        TrunkCache,
        "_fill",
        lambda self, m, r, f: (encoded.append(len(r)), real_fill(self, m, r, f)),
    )
    resumed = TrunkCache.build(model, proteins, tmp_path / "stopped", WINDOWS, max_tokens=100)
    assert sum(encoded) == len(fresh) - done  # only what was left
    assert not (tmp_path / "stopped" / BUILD_NAME).exists()
    assert resumed.keys == fresh.keys
    torch.testing.assert_close(
        torch.from_numpy(resumed.array[:]), torch.from_numpy(fresh.array[:]), atol=1e-6, rtol=0
    )
