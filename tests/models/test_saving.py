"""Saving and loading a model's own files: no pickle, the same probabilities, portable folders."""

from __future__ import annotations

import errno
import shutil

import pytest
import torch
from peft import peft_model
from safetensors import SafetensorError

from ppi_dist import files
from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.saving import from_pretrained, save_pretrained
from ppi_dist.models.secai import SECAI
from tests.helpers import SHARED, sgd_step, tiny_model


def test_save_and_load_round_trip_without_unpickling(tmp_path, batch, monkeypatch):
    model = tiny_model().train()
    sgd_step(model, batch)
    sgd_step(model, batch)  # non-zero LoRA B, moved BatchNorm statistics
    model.config.decision_threshold = 0.37
    expected = model.predict_proba(batch)
    save_pretrained(model, tmp_path)

    saved = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert "adapter/adapter_model.safetensors" in saved
    assert "secai_head.safetensors" in saved
    assert not [name for name in saved if name.endswith((".bin", ".pt", ".pth", ".pkl"))]

    def refuse(*_args, **_kwargs):
        raise AssertionError("torch.load called: loading must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    loaded = from_pretrained(tmp_path)
    assert loaded.config.decision_threshold == 0.37
    assert torch.equal(loaded.predict_proba(batch), expected)


def test_frozen_encoder_has_no_lora_and_round_trips(tmp_path, batch):
    model = tiny_model(freeze_encoder=True)
    assert not [n for n, _ in model.named_parameters() if "lora_" in n]
    save_pretrained(model, tmp_path)
    assert torch.equal(from_pretrained(tmp_path).predict_proba(batch), model.predict_proba(batch))


ESM2_8M = SHARED / "models" / "esm2_t6_8M"


@pytest.mark.real_data
def test_real_8m_encoder_loads_by_path_like_a_hub_name(batch):
    model = SECAI(SECAIConfig(encoder=str(ESM2_8M), cross_attention_heads=4, head_hidden=16))
    assert model.encoder.config.hidden_size == 320
    assert model.encoder.config.num_hidden_layers == 6
    probabilities = model.predict_proba(batch)
    assert probabilities.shape == (6,) and torch.all((probabilities > 0) & (probabilities < 1))


def test_reloaded_model_saves_again_to_a_portable_folder(tmp_path, batch):
    model = tiny_model()
    save_pretrained(model, tmp_path / "first")
    reloaded = from_pretrained(tmp_path / "first")
    save_pretrained(reloaded, tmp_path / "second")

    shutil.rmtree(tmp_path / "first")
    again = from_pretrained(tmp_path / "second")
    assert torch.equal(again.predict_proba(batch), model.predict_proba(batch))


def test_the_adapter_records_the_configured_encoder_not_a_staging_folder(tmp_path):
    """The trainer saves to `model.partial`, reloads, then saves the model folder: the
    adapter must name the encoder the config names, not the staging folder's copy."""
    import json

    staged = save_pretrained(tiny_model(), tmp_path / "model.partial")
    shipped = save_pretrained(from_pretrained(staged), tmp_path / "model")
    shutil.rmtree(staged)
    adapter = json.loads((shipped / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "base_encoder"
    assert from_pretrained(shipped) is not None


FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


@pytest.mark.parametrize(
    ("writer", "written"),
    [
        ((files, "save_file"), "secai_head.safetensors"),
        ((peft_model, "safe_save_file"), "adapter/adapter_model.safetensors"),
    ],
)
def test_a_full_disk_names_the_file_being_written(tmp_path, monkeypatch, writer, written):
    """safetensors' own "os error 28", naming no file, becomes the OSError it is, naming
    the file, so the command line's one line says where and what to do."""

    def full(*args, **kwargs):
        raise SafetensorError(FULL)

    monkeypatch.setattr(*writer, full)
    with pytest.raises(OSError) as raised:
        save_pretrained(tiny_model(), tmp_path / "model")
    assert raised.value.errno == errno.ENOSPC and raised.value.strerror == FULL
    assert raised.value.filename == str(tmp_path / "model" / written)
