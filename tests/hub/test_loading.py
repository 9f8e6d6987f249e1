"""Issue 14 items 4, 5 and 7: predict never writes meaningless output; model identity is
checked; every damaged file is named."""

from __future__ import annotations

import json
import logging
import random

import pytest
import torch
from transformers import EsmConfig, EsmModel

from ppi_dist.errors import CorruptFileError, UserError
from ppi_dist.files import write_manifest
from ppi_dist.hub.folder import ALLOWED_PATTERNS, IDENTITY_NAME, save_for_hub
from ppi_dist.hub.loading import load_model
from ppi_dist.inference.predict import PredictFiles, PredictOptions, PredictRun, predict
from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.secai import SECAI
from ppi_dist.models.shapes import tiny_esm2_config
from tests.helpers import random_sequence, tiny_model


def _fasta(path, n: int = 5):
    rng = random.Random(0)
    path.write_text("".join(f">P{i}\n{random_sequence(rng, 6, 20)}\n" for i in range(n)))
    return path


def _spoil_data(path, byte: bytes = b"\xff") -> None:
    """Overwrite a safetensors file's tensor bytes, keeping its header (0xFF.. is NaN)."""
    data = path.read_bytes()
    start = 8 + int.from_bytes(data[:8], "little")
    path.write_bytes(data[:start] + byte * (len(data) - start))


@pytest.fixture
def saved(tmp_path):
    return save_for_hub(tiny_model(), tmp_path / "model")


def test_overwritten_adapter_is_named_not_scored_as_nan(saved):
    _spoil_data(saved / "adapter" / "adapter_model.safetensors")
    write_manifest(saved, ALLOWED_PATTERNS)  # remade: the value check below it still names it
    with pytest.raises(CorruptFileError, match=r"adapter_model\.safetensors.*NaN"):
        load_model(saved)


@pytest.mark.parametrize("name", ["secai_head.safetensors", "adapter/adapter_model.safetensors"])
def test_truncated_weight_file_is_named(saved, name):
    path = saved / name
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CorruptFileError, match=name.split("/")[-1].replace(".", r"\.")):
        load_model(saved)


def test_truncated_bundled_encoder_is_named(saved):
    path = saved / "base_encoder" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CorruptFileError, match=r"base_encoder/model\.safetensors"):
        load_model(saved)


def test_nonfinite_scores_stop_predict_naming_the_model(saved, tmp_path):
    model = load_model(saved)
    with torch.no_grad():
        model.head.fc2.weight.fill_(float("nan"))  # finite files, diverged numbers
    with pytest.raises(UserError, match=f"{saved}: scores are not finite"):
        predict(
            model,
            PredictFiles(tmp_path / "out.tsv", fasta=_fasta(tmp_path / "p.fasta")),
            PredictOptions(),
            PredictRun(progress=False),
        )
    assert not (tmp_path / "out.tsv").exists()


@pytest.mark.parametrize("bad", [1.7, float("nan"), -0.1])
def test_threshold_outside_0_1_is_refused(saved, tmp_path, bad):
    fasta = _fasta(tmp_path / "p.fasta")
    model = load_model(saved)
    with pytest.raises(UserError, match=r"--threshold must lie in \[0, 1\]"):
        predict(
            model,
            PredictFiles(tmp_path / "out.tsv", fasta=fasta),
            PredictOptions(threshold=bad),
            PredictRun(progress=False),
        )
    config = json.loads((saved / "secai_config.json").read_text())
    config["decision_threshold"] = bad
    (saved / "secai_config.json").write_text(json.dumps(config))
    write_manifest(saved, ALLOWED_PATTERNS)
    with pytest.raises(UserError, match=r"saved decision_threshold .* not in \[0, 1\]"):
        predict(
            load_model(saved),
            PredictFiles(tmp_path / "out.tsv", fasta=fasta),
            PredictOptions(),
            PredictRun(progress=False),
        )


def test_missing_threshold_is_an_error_not_half(saved, tmp_path):
    config = json.loads((saved / "secai_config.json").read_text())
    del config["decision_threshold"]
    (saved / "secai_config.json").write_text(json.dumps(config))
    write_manifest(saved, ALLOWED_PATTERNS)
    fasta = _fasta(tmp_path / "p.fasta")
    with pytest.raises(UserError, match="no decision_threshold saved; pass --threshold"):
        predict(
            load_model(saved),
            PredictFiles(tmp_path / "out.tsv", fasta=fasta),
            PredictOptions(),
            PredictRun(progress=False),
        )
    summary = predict(
        load_model(saved),
        PredictFiles(tmp_path / "out.tsv", fasta=fasta),
        PredictOptions(threshold=0.3),
        PredictRun(progress=False),
    )
    assert summary["rows_written"] == 10


def _model_on_encoder_path(tmp_path):
    torch.manual_seed(0)
    encoder_dir = tmp_path / "esm"
    EsmModel(EsmConfig(**tiny_esm2_config()), add_pooling_layer=False).save_pretrained(encoder_dir)
    config = SECAIConfig(
        encoder=str(encoder_dir), cross_attention_heads=4, head_hidden=16, lora_r=4
    )
    folder = save_for_hub(SECAI(config), tmp_path / "model")
    return folder, encoder_dir


def test_encoder_with_other_weights_at_its_path_is_refused(tmp_path, caplog):
    folder, encoder_dir = _model_on_encoder_path(tmp_path)
    identity = json.loads((folder / IDENTITY_NAME).read_text())
    assert identity["encoder"] == str(encoder_dir) and len(identity["fingerprint"]) == 32
    reference = load_model(folder)  # same weights: loads
    torch.manual_seed(1)  # same shape, other weights, same path
    EsmModel(EsmConfig(**tiny_esm2_config()), add_pooling_layer=False).save_pretrained(encoder_dir)
    with pytest.raises(UserError, match="other weights than the model was trained on"):
        load_model(folder)
    with caplog.at_level(logging.WARNING):
        swapped = load_model(folder, allow_encoder_mismatch=True)
    assert "allowed by --allow_encoder_mismatch" in caplog.text
    assert swapped.config.encoder == reference.config.encoder


def test_adapter_naming_another_encoder_is_reported(tmp_path, caplog):
    folder, _ = _model_on_encoder_path(tmp_path)
    path = folder / "adapter" / "adapter_config.json"
    adapter = json.loads(path.read_text())
    adapter["base_model_name_or_path"] = "facebook/esm2_t33_650M_UR50D"
    path.write_text(json.dumps(adapter))
    write_manifest(folder, ALLOWED_PATTERNS)
    with caplog.at_level(logging.WARNING):
        load_model(folder)
    assert "names the encoder 'facebook/esm2_t33_650M_UR50D'" in caplog.text


def test_missing_local_encoder_path_is_not_called_a_repo_id(tmp_path):
    folder, encoder_dir = _model_on_encoder_path(tmp_path)
    for path in encoder_dir.iterdir():
        path.unlink()
    encoder_dir.rmdir()
    with pytest.raises(UserError, match="is a local folder that does not exist here"):
        load_model(folder)


def test_second_predict_on_one_output_is_refused(saved, tmp_path):
    from ppi_dist.errors import RunFolderError
    from ppi_dist.files import acquire_lock

    out = tmp_path / "out.tsv"
    with (
        acquire_lock(out.with_name("out.tsv.lock"), what="predict"),
        pytest.raises(RunFolderError, match="in use by another predict"),
    ):
        predict(
            load_model(saved),
            PredictFiles(out, fasta=_fasta(tmp_path / "p.fasta")),
            PredictOptions(),
            PredictRun(progress=False),
        )
    assert predict(
        load_model(saved),
        PredictFiles(out, fasta=tmp_path / "p.fasta"),
        PredictOptions(),
        PredictRun(progress=False),
    )["complete"]
    assert not out.with_name("out.tsv.lock").exists()
